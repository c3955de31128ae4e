"""The ``[audio]`` section of the config file.

Example (every key optional; these are the defaults)::

    [audio]
    channels = ["customer", "partner"]  # speaker of each channel, in order; "none" ignores a channel
    chunk_ms = 20                       # source chunk length, ms
    loudness_window_ms = 100            # loudness meter window, ms

    [audio.vad]
    frame_ms = 30          # webrtcvad frame: 10, 20 or 30 ms
    aggressiveness = 2     # 0 (clean line) .. 3 (noisy line)
    hangover_ms = 300      # this much non-speech ends a segment
    min_speech_ms = 200    # shorter voiced blips (clicks, coughs) are dropped
    pre_roll_ms = 150      # audio kept before speech starts
    post_roll_ms = 150     # audio kept after speech ends (<= hangover_ms)

Unknown keys are an error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernel.sections import read_section, setting
from audio.errors import AudioConfigError
from audio.frames import SPEAKERS, Speaker
from audio.vad import VadConfig

__all__ = ["AudioConfig"]

_IGNORE = ("none", "", "-")


def _channel_map(channels: Any) -> tuple[Speaker | None, ...]:
    """``channels = ["customer", "partner"]``: the speaker of each channel; "none" ignores one."""
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ValueError('channels must be a list of strings like ["customer", "partner"]')
    return tuple(None if c.strip().lower() in _IGNORE else c.strip().lower() for c in channels)


@dataclass(frozen=True)
class AudioConfig:
    """Settings for sources, voice activity and loudness.

    Attributes:
        channel_map: the speaker of each channel of a stereo (or wider)
            source, in channel order; ``None`` ignores that channel. A mono
            source's channel takes the first entry.
        chunk_ms: length of the chunks a source delivers, ms.
        loudness_window_ms: window of the loudness meter, ms.
        vad: voice activity settings (see :class:`~audio.vad.VadConfig`).
    """

    channel_map: tuple[Speaker | None, ...] = setting(default=("customer", "partner"), key="channels", read=_channel_map)
    chunk_ms: int = 20
    loudness_window_ms: int = 100
    vad: VadConfig = field(default_factory=VadConfig)

    def __post_init__(self) -> None:
        if not self.channel_map or len(self.channel_map) > 8:
            raise AudioConfigError(f"audio channels must list 1 to 8 channels, not {self.channel_map!r}")
        named = [s for s in self.channel_map if s is not None]
        for speaker in named:
            if speaker not in SPEAKERS:
                raise AudioConfigError(f"audio channels: {speaker!r} is not one of {', '.join(SPEAKERS)} or 'none'")
        if not named:
            raise AudioConfigError("audio channels: every channel is ignored")
        if len(set(named)) != len(named):
            raise AudioConfigError(f"audio channels: a speaker appears twice in {list(self.channel_map)}")
        for name, low, high in (("chunk_ms", 1, 10_000), ("loudness_window_ms", 1, 60_000)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise AudioConfigError(f"audio {name} must be a whole number from {low} to {high}, not {value!r}")

    @classmethod
    def from_section(cls, section: Mapping[str, Any], *, where: str = "[audio]") -> AudioConfig:
        """Build from the ``[audio]`` table of a parsed config file (``[audio.vad]`` within it); ``where`` names it in errors."""
        return read_section(cls, section, section=where, error=AudioConfigError)
