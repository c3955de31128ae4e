"""How many seconds of call audio the voice-activity segmenter handles per CPU-second.

Feeds a real human recording (shared/audio/digits-*.wav, repeated to
``--seconds``) through :class:`audio.vad.Segmenter` in 20 ms chunks, as a
live call would, for each frame length, and prints audio-seconds per
CPU-second (process time, so other load on the machine does not count).
A figure of 1000 means one core can segment 1000 simultaneous call legs in
real time. The loudness meter and the WAV + mu-law + edge-resample path are
measured the same way for comparison.

    .venv/bin/python bench/vad_speed.py [--seconds 60] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from audio.frames import AudioChunk
from audio.g711 import encode_ulaw
from audio.loudness import LoudnessMeter
from audio.resample import resample
from audio.vad import Endpoint, Segmenter, VadConfig
from audio.wav import WavSource, read_wav

ROOT = Path(__file__).resolve().parents[1]


def _chunks(samples: np.ndarray, rate: int, chunk_ms: int = 20) -> list[AudioChunk]:
    n = rate * chunk_ms // 1000
    return [AudioChunk("customer", samples[i:i + n], rate, i) for i in range(0, len(samples), n)]


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio seconds per measurement (default 60)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the team's shared/ folder")
    args = parser.parse_args()

    print(f"audio seconds per CPU-second ({args.seconds:.0f} s of real speech per run, 20 ms chunks)")
    for name in ("digits-8k.wav", "digits-16k.wav"):
        _, data = read_wav(args.shared / "audio" / name)
        rate = 8000 if "8k" in name else 16000
        reps = int(np.ceil(args.seconds * rate / len(data)))
        samples = np.tile(data[:, 0], reps)[: int(args.seconds * rate)]
        chunks = _chunks(samples, rate)
        seconds = len(samples) / rate
        for frame_ms in (10, 20, 30):
            segmenter = Segmenter("customer", rate, VadConfig(frame_ms=frame_ms))
            found: list[Endpoint] = []

            def run() -> None:
                for c in chunks:
                    found.extend(x for x in segmenter.push(c) if isinstance(x, Endpoint))
                found.extend(x for x in segmenter.flush() if isinstance(x, Endpoint))

            cpu = _cpu(run)
            print(f"  vad       {rate // 1000:2d} kHz frame {frame_ms} ms: {seconds / cpu:8.0f} x   ({len(found)} segments)")
        meter = LoudnessMeter("customer", rate, 100)
        cpu = _cpu(lambda: [meter.push(c) for c in chunks])
        print(f"  loudness  {rate // 1000:2d} kHz window 100 ms: {seconds / cpu:8.0f} x")

    with tempfile.TemporaryDirectory() as tmp:
        rate = 44100
        seconds = args.seconds
        stereo = (np.random.default_rng(1).normal(0, 3000, (int(seconds * rate), 2))).clip(-32768, 32767).astype(np.int16)
        path = Path(tmp) / "mu.wav"
        header = (b"RIFF" + (50 + stereo.size).to_bytes(4, "little") + b"WAVEfmt " + (18).to_bytes(4, "little")
                  + (7).to_bytes(2, "little") + (2).to_bytes(2, "little") + rate.to_bytes(4, "little")
                  + (2 * rate).to_bytes(4, "little") + (2).to_bytes(2, "little") + (8).to_bytes(2, "little") + bytes(2)
                  + b"data" + stereo.size.to_bytes(4, "little"))
        path.write_bytes(header + encode_ulaw(stereo))
        cpu = _cpu(lambda: sum(1 for _ in WavSource(path).chunks()))
        print(f"  wav source mu-law stereo 44.1 kHz -> 48 kHz (read, decode, resample, chunk): {seconds / cpu:6.0f} x")
        mono = np.ascontiguousarray(stereo[:, 0])
        for src, dst in ((44100, 48000), (22050, 16000), (11025, 8000)):
            x = mono[: int(seconds * src)]
            cpu = _cpu(lambda: resample(x, src, dst))
            print(f"  resample {src} -> {dst} Hz mono: {len(x) / src / cpu:8.0f} x")


if __name__ == "__main__":
    main()
