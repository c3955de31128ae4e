"""The [audio] config section, read through the real config file loader."""

from __future__ import annotations

import pytest

from kernel.config import load_config
from audio.config import AudioConfig
from audio.errors import AudioError
from audio.vad import VadConfig


def _load(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return AudioConfig.from_section(load_config(path).section("audio"))


def test_defaults_when_the_section_is_missing(tmp_path):
    cfg = _load(tmp_path, "[models]\nlanguage = 'ko'\n")
    assert cfg == AudioConfig()
    assert cfg.channel_map == ("customer", "partner") and cfg.chunk_ms == 20 and cfg.loudness_window_ms == 100
    assert cfg.vad == VadConfig()


def test_every_setting_is_read(tmp_path):
    cfg = _load(tmp_path, """
[audio]
channels = ["Partner", "none", "customer"]
chunk_ms = 30
loudness_window_ms = 250

[audio.vad]
frame_ms = 10
aggressiveness = 3
hangover_ms = 500
min_speech_ms = 120
pre_roll_ms = 60
post_roll_ms = 90
""")
    assert cfg.channel_map == ("partner", None, "customer")
    assert (cfg.chunk_ms, cfg.loudness_window_ms) == (30, 250)
    assert cfg.vad == VadConfig(frame_ms=10, aggressiveness=3, hangover_ms=500, min_speech_ms=120, pre_roll_ms=60, post_roll_ms=90)


@pytest.mark.parametrize("text", [
    "[audio]\nchanels = ['customer']\n",
    "[audio]\nchannels = ['customer', 'customer']\n",
    "[audio]\nchannels = ['caller']\n",
    "[audio]\nchannels = ['none']\n",
    "[audio]\nchannels = 'customer'\n",
    "[audio]\nchunk_ms = 0\n",
    "[audio]\nloudness_window_ms = '100'\n",
    "[audio]\nvad = 3\n",
    "[audio.vad]\nframe_ms = 40\n",
    "[audio.vad]\nagressiveness = 1\n",
])
def test_mistakes_are_one_line_errors(tmp_path, text):
    with pytest.raises(AudioError) as err:
        _load(tmp_path, text)
    assert err.value.code == "bad_config"
    assert "\n" not in str(err.value) and "[audio" in str(err.value)
