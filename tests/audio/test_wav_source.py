"""WAV files as a call source: formats, channel map, time continuity, pacing, bad input."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from audio_kit import extensible_body, fmt_body, pcm16_wav, riff, rms, sox, tone, two_tone_stereo, write_encoded

from cli.main import _one_line
from audio.errors import AudioError
from kernel.errors import CallshieldError
from audio.g711 import decode_alaw, decode_ulaw
from audio.wav import WavSource, read_info, read_wav
from speech import write_pcm16


def _by_speaker(chunks):
    out: dict[str, list] = {}
    for c in chunks:
        out.setdefault(c.speaker, []).append(c)
    return out


def _joined(chunks):
    return np.concatenate([c.samples for c in chunks])


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("encoding", ["pcm16", "mu-law", "a-law"])
@pytest.mark.parametrize("channels", [1, 2])
def test_encodings_mono_and_stereo_at_8k(tmp_path, encoding, channels):
    stereo = two_tone_stereo(0.5, 8000)
    samples = stereo if channels == 2 else stereo[:, 0]
    path = write_encoded(tmp_path / "call.wav", samples, 8000, encoding)
    info, data = read_wav(path)
    assert (info.encoding, info.sample_rate, info.channels, info.frames, info.truncated) == (encoding, 8000, channels, 4000, False)
    assert info.duration == pytest.approx(0.5)
    expected = samples.reshape(len(samples), -1)
    if encoding == "pcm16":
        np.testing.assert_array_equal(data, expected)
    else:  # G.711 is lossy: within its quantization (3 % of the level, plus the smallest step)
        assert np.all(np.abs(data.astype(int) - expected) <= 0.035 * np.abs(expected) + 16)

    src = WavSource(path)
    assert src.sample_rate == 8000 and src.info == info
    got = _by_speaker(src.chunks())
    if channels == 1:
        assert src.speakers == ("customer",) and set(got) == {"customer"}
    else:
        assert src.speakers == ("customer", "partner")
        np.testing.assert_array_equal(_joined(got["partner"]), data[:, 1])
    np.testing.assert_array_equal(_joined(got["customer"]), data[:, 0])


def test_g711_source_matches_decoding_the_raw_bytes(tmp_path):
    samples = tone(440, 0.3, 8000, 12000)
    for law, decode in (("mu-law", decode_ulaw), ("a-law", decode_alaw)):
        path = write_encoded(tmp_path / f"{law}.wav", samples, 8000, law)
        raw = path.read_bytes()
        at = raw.index(b"data")
        expected = decode(raw[at + 8:at + 8 + struct.unpack("<I", raw[at + 4:at + 8])[0]])
        np.testing.assert_array_equal(_joined(list(WavSource(path).chunks())), expected)


@pytest.mark.parametrize(("rate", "delivered"), [(8000, 8000), (16000, 16000), (22050, 16000), (44100, 48000), (48000, 48000)])
def test_rates_are_kept_or_converted_once_at_the_edge(tmp_path, rate, delivered):
    path = write_pcm16(tmp_path / "call.wav", two_tone_stereo(0.5, rate), rate)
    src = WavSource(path, chunk_ms=20)
    assert src.info.sample_rate == rate and src.sample_rate == delivered
    assert src.converted == (rate != delivered)
    chunks = list(src.chunks())
    assert all(c.sample_rate == delivered for c in chunks)
    assert chunks[0].samples.size == delivered * 20 // 1000
    got = _by_speaker(chunks)
    left, right = _joined(got["customer"]), _joined(got["partner"])
    assert len(left) == len(right) == -(-int(0.5 * rate) * delivered // rate)
    # the same tones, at the delivered rate (edges aside)
    inner = slice(200, -200)
    np.testing.assert_allclose(left[inner], tone(300, 0.5, delivered, 8000)[: len(left)][inner], atol=40)
    np.testing.assert_allclose(right[inner], tone(700, 0.5, delivered, 2000)[: len(right)][inner], atol=40)


def test_extensible_pcm16_and_unknown_chunks_are_read(tmp_path):
    samples = two_tone_stereo(0.2, 16000)
    body = riff([
        (b"fmt ", extensible_body(1, 2, 16000, 16)),
        (b"LIST", b"INFOISFT\x05\x00\x00\x00sox!\x00"),  # odd size: one pad byte follows
        (b"fact", struct.pack("<I", len(samples))),
        (b"data", samples.tobytes()),
        (b"id3 ", b"trailing metadata"),
    ])
    path = tmp_path / "ext.wav"
    path.write_bytes(body)
    info, data = read_wav(path)
    assert (info.encoding, info.channels, info.frames, info.truncated) == ("pcm16", 2, len(samples), False)
    np.testing.assert_array_equal(data, samples)


def test_shared_recordings_are_read(shared_dir):
    info16, data16 = read_wav(shared_dir / "audio" / "digits-16k.wav")
    info8, data8 = read_wav(shared_dir / "audio" / "digits-8k.wav")
    assert (info16.sample_rate, info16.channels, info16.frames) == (16000, 1, 132928)
    assert (info8.sample_rate, info8.channels, info8.frames) == (8000, 1, 66464)
    assert data16.dtype == np.int16 and rms(data16) > 100


# --------------------------------------------------------------------------- channel map


def test_channel_map_swap_and_ignore(tmp_path):
    path = write_pcm16(tmp_path / "call.wav", two_tone_stereo(0.3, 8000), 8000)
    default = _by_speaker(WavSource(path).chunks())
    assert rms(_joined(default["customer"])) > 3 * rms(_joined(default["partner"]))  # left (loud) = customer

    swapped = WavSource(path, channel_map=("partner", "customer"))
    assert swapped.speakers == ("partner", "customer")
    got = _by_speaker(swapped.chunks())
    np.testing.assert_array_equal(_joined(got["customer"]), _joined(default["partner"]))
    np.testing.assert_array_equal(_joined(got["partner"]), _joined(default["customer"]))

    only_partner = WavSource(path, channel_map=(None, "partner"))
    assert only_partner.speakers == ("partner",)
    got = _by_speaker(only_partner.chunks())
    assert set(got) == {"partner"}
    np.testing.assert_array_equal(_joined(got["partner"]), _joined(default["partner"]))

    assert WavSource(path, channel_map=("customer",)).speakers == ("customer",)  # channels beyond the map are ignored


def test_mono_is_the_customer_unless_the_map_says_otherwise(tmp_path):
    path = write_pcm16(tmp_path / "mono.wav", tone(300, 0.2, 8000, 5000), 8000)
    assert {c.speaker for c in WavSource(path).chunks()} == {"customer"}
    assert {c.speaker for c in WavSource(path, channel_map=("partner", "customer")).chunks()} == {"partner"}


@pytest.mark.parametrize("channel_map", [("customer", "customer"), (None, None), ("caller", "partner")])
def test_bad_channel_maps(tmp_path, channel_map):
    path = write_pcm16(tmp_path / "call.wav", two_tone_stereo(0.1, 8000), 8000)
    with pytest.raises(AudioError) as err:
        WavSource(path, channel_map=channel_map)
    assert err.value.code == "bad_channel_map"


# --------------------------------------------------------------------------- time


@pytest.mark.parametrize(("rate", "chunk_ms"), [(8000, 20), (8000, 30), (44100, 20), (16000, 7)])
def test_time_is_contiguous_and_interleaved(tmp_path, rate, chunk_ms):
    seconds = 0.513
    path = write_pcm16(tmp_path / "call.wav", two_tone_stereo(seconds, rate), rate)
    src = WavSource(path, chunk_ms=chunk_ms)
    chunks = list(src.chunks())
    starts = [c.start_sample for c in chunks]
    assert starts == sorted(starts)  # time order across speakers
    for speaker, mine in _by_speaker(chunks).items():
        assert mine[0].start_sample == 0
        for a, b in zip(mine, mine[1:]):
            assert b.start_sample == a.end_sample  # no gaps, no overlaps
        assert mine[-1].end_sample == src.frames
        assert all(len(c.samples) == src.chunk_samples for c in mine[:-1])
    for a, b in zip(chunks[0::2], chunks[1::2]):  # one chunk per speaker per period, same span
        assert (a.speaker, b.speaker) == ("customer", "partner")
        assert (a.start_sample, a.end_sample) == (b.start_sample, b.end_sample)


def test_async_iteration_gives_the_same_chunks_without_sleeping(tmp_path):
    path = write_pcm16(tmp_path / "call.wav", two_tone_stereo(0.3, 8000), 8000)
    slept: list[float] = []

    async def fake_sleep(delay):
        slept.append(delay)

    async def collect():
        return [c async for c in WavSource(path, sleep=fake_sleep)]

    got = asyncio.run(collect())
    expected = list(WavSource(path).chunks())
    assert [(c.speaker, c.start_sample) for c in got] == [(c.speaker, c.start_sample) for c in expected]
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(got, expected))
    assert slept == []  # not realtime: never paced


def test_realtime_schedule_has_no_drift(tmp_path):
    """A fake clock and a sleep that always oversleeps by 7 ms: chunk k still comes at k*20 ms (+ one oversleep)."""
    path = write_pcm16(tmp_path / "call.wav", two_tone_stereo(1.0, 8000), 8000)
    now = [100.0]
    requested: list[float] = []
    delivered: list[tuple[float, int]] = []

    async def late_sleep(delay):
        requested.append(delay)
        now[0] += delay + 0.007

    async def run():
        src = WavSource(path, chunk_ms=20, realtime=True, sleep=late_sleep, clock=lambda: now[0])
        async for c in src:
            delivered.append((now[0] - 100.0, c.start_sample))

    asyncio.run(run())
    periods = sorted({start for _, start in delivered})
    assert len(periods) == 50 and len(delivered) == 100
    for at, start in delivered:
        target = start / 8000
        assert target <= at <= target + 0.0071  # never early, never more than one oversleep late
    # the first wait is a whole period; each later one is shortened by the previous oversleep
    assert requested[0] == pytest.approx(0.020)
    assert requested[1:] == pytest.approx([0.013] * 48)


def test_realtime_run_takes_about_the_audio_time(tmp_path):
    path = write_pcm16(tmp_path / "call.wav", tone(300, 0.5, 8000, 3000), 8000)

    async def run():
        loop = asyncio.get_running_loop()
        started = loop.time()
        count = 0
        async for _ in WavSource(path, chunk_ms=20, realtime=True):
            count += 1
        return count, loop.time() - started

    count, elapsed = asyncio.run(run())
    assert count == 25
    assert elapsed >= 0.4  # paced: the last chunk is due at 0.48 s, not delivered instantly


# --------------------------------------------------------------------------- bad input


def _valid(tmp_path) -> bytes:
    return pcm16_wav(tone(300, 0.1, 8000, 3000), 8000)


BAD_INPUTS = {
    "missing": ("not_found", None),
    "empty": ("empty", lambda v: b""),
    "text": ("not_wav", lambda v: b"this is a text file, not audio\n"),
    "mp3-like": ("not_wav", lambda v: b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(200)),
    "riff-avi": ("not_wav", lambda v: b"RIFF" + struct.pack("<I", 100) + b"AVI " + bytes(100)),
    "cut-in-riff-header": ("truncated", lambda v: v[:10]),
    "cut-in-fmt": ("truncated", lambda v: v[:30]),
    "cut-before-data": ("truncated", lambda v: v[:36]),
    "cut-in-data-header": ("truncated", lambda v: v[:40]),
    "24-bit": ("unsupported_encoding", lambda v: riff([(b"fmt ", fmt_body(1, 1, 8000, 24)), (b"data", bytes(300))])),
    "8-bit-pcm": ("unsupported_encoding", lambda v: riff([(b"fmt ", fmt_body(1, 1, 8000, 8)), (b"data", bytes(300))])),
    "float": ("unsupported_encoding", lambda v: riff([(b"fmt ", fmt_body(3, 1, 8000, 32)), (b"data", bytes(400))])),
    "adpcm": ("unsupported_encoding", lambda v: riff([(b"fmt ", fmt_body(0x11, 1, 8000, 4) + b"\x02\x00\xf9\x01"), (b"data", bytes(256))])),
    "extensible-24": ("unsupported_encoding", lambda v: riff([(b"fmt ", extensible_body(1, 2, 48000, 24)), (b"data", bytes(600))])),
    "extensible-float": ("unsupported_encoding", lambda v: riff([(b"fmt ", extensible_body(3, 1, 8000, 32)), (b"data", bytes(400))])),
    "rifx": ("unsupported_encoding", lambda v: b"RIFX" + v[4:]),
    "rate-96k": ("unsupported_rate", lambda v: riff([(b"fmt ", fmt_body(1, 1, 96000, 16)), (b"data", bytes(400))])),
    "rate-4k": ("unsupported_rate", lambda v: riff([(b"fmt ", fmt_body(1, 1, 4000, 16)), (b"data", bytes(400))])),
    "zero-channels": ("bad_header", lambda v: riff([(b"fmt ", fmt_body(1, 0, 8000, 16)), (b"data", bytes(400))])),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_a_one_line_error_with_a_code(tmp_path, case):
    code, make = BAD_INPUTS[case]
    path = tmp_path / f"{case}.wav"
    if make is not None:
        path.write_bytes(make(_valid(tmp_path)))
    for attempt in (read_info, read_wav, WavSource):
        with pytest.raises(AudioError) as err:
            attempt(path)
        assert isinstance(err.value, CallshieldError)
        assert err.value.code == code, (case, err.value)
        line = _one_line(err.value)  # what the CLI prints after "callshield: error: "
        assert "\n" not in line and str(path) in line


@pytest.mark.parametrize("sox_args", [("-b", "24"), ("-e", "floating-point", "-b", "32"), ("-e", "ima-adpcm"), ("-e", "ms-adpcm"), ("-b", "8")])
def test_sox_written_unsupported_encodings(tmp_path, sox_args):
    src = write_pcm16(tmp_path / "in.wav", two_tone_stereo(0.1, 8000), 8000)
    sox(src, *sox_args, tmp_path / "out.wav")
    with pytest.raises(AudioError) as err:
        read_info(tmp_path / "out.wav")
    assert err.value.code == "unsupported_encoding"


def test_a_directory_is_not_found(tmp_path):
    with pytest.raises(AudioError) as err:
        read_info(tmp_path)
    assert err.value.code == "not_found"


# --------------------------------------------------------------------------- recordings cut off by a crash


def test_short_data_chunk_keeps_the_samples_present(tmp_path):
    samples = two_tone_stereo(0.25, 8000)
    whole = pcm16_wav(samples, 8000)
    path = tmp_path / "cut.wav"
    path.write_bytes(whole[:-1000])  # 250 stereo frames missing
    info, data = read_wav(path)
    assert info.truncated and info.frames == len(samples) - 250
    np.testing.assert_array_equal(data, samples[: info.frames])
    chunks = _by_speaker(WavSource(path).chunks())
    np.testing.assert_array_equal(_joined(chunks["customer"]), samples[: info.frames, 0])


def test_data_cut_inside_a_frame_keeps_the_whole_frames(tmp_path):
    samples = two_tone_stereo(0.1, 8000)
    path = tmp_path / "cut.wav"
    path.write_bytes(pcm16_wav(samples, 8000)[:-3])
    info, data = read_wav(path)
    assert info.truncated and info.frames == len(samples) - 1
    np.testing.assert_array_equal(data, samples[:-1])


def test_header_never_updated_after_a_crash(tmp_path):
    """Writers put size 0 in the header first and fill it in on close; a crash leaves 0 with samples after it."""
    samples = tone(300, 0.2, 8000, 4000)
    body = riff([(b"fmt ", fmt_body(1, 1, 8000, 16)), (b"data", samples.tobytes())], riff_size=36, sizes={b"data": 0})
    path = tmp_path / "crash.wav"
    path.write_bytes(body)
    info, data = read_wav(path)
    assert info.truncated and info.frames == len(samples)
    np.testing.assert_array_equal(data[:, 0], samples)


def test_streaming_size_placeholder_reads_everything(tmp_path):
    samples = tone(300, 0.2, 8000, 4000)
    body = riff([(b"fmt ", fmt_body(1, 1, 8000, 16)), (b"data", samples.tobytes())], riff_size=0xFFFFFFFF, sizes={b"data": 0xFFFFFFFF})
    path = tmp_path / "stream.wav"
    path.write_bytes(body)
    info, data = read_wav(path)
    assert not info.truncated and info.frames == len(samples)
    np.testing.assert_array_equal(data[:, 0], samples)


def test_empty_data_chunk_is_zero_frames_not_an_error(tmp_path):
    path = tmp_path / "silent.wav"
    path.write_bytes(riff([(b"fmt ", fmt_body(7, 1, 8000, 8)), (b"data", b""), (b"LIST", b"INFO")]))
    info = read_info(path)
    assert (info.encoding, info.frames, info.truncated) == ("mu-law", 0, False)
    assert list(WavSource(path).chunks()) == []


def test_g711_sox_file_cut_short(tmp_path):
    path = write_encoded(tmp_path / "mu.wav", two_tone_stereo(0.2, 8000), 8000, "mu-law")
    full_info, full = read_wav(path)
    path.write_bytes(path.read_bytes()[:-101])
    info, data = read_wav(path)
    assert info.truncated and info.frames == full_info.frames - 51
    np.testing.assert_array_equal(data, full[: info.frames])
