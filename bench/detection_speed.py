"""Detection speed: utterances screened per second on one core.

Screens the development utterances and ConvAbuse validation messages (the
open part, when the shared data is there; a built-in sample otherwise) in
one thread, pinned
to one core, with ``OPENBLAS_NUM_THREADS=1`` (set by this script before numpy
is imported, so the encoder's matrix products use one thread, as in the
agent's "detect" executor). It measures:

(a) the rules alone (``Detector()``): utterances per second, microseconds per
    utterance (mean, median, 99th percentile, worst, and best-of-5) and what
    one whole call (CallScreen with repetition and the ladder) costs;
(b) the full detector as the commands build it
    (``load_settings(None).detector()``: rules + semantic stage);
(c) the sentence encoder alone (``embed``, one utterance);
(d) the semantic stage alone (``SemanticStage.judge``) on the labelled
    harassment lines, every category wanted: when it fires, its evidence is
    found by occlusion (one more embedding per word), so a finding costs most
    (in (b)'s mix it rarely fires: the rules have usually found the category);

and sets the full detector's cost beside speech recognition's (real-time
factor 0.18 per speaker stream, ``bench/asr_throughput.py``). Targets: the
rules well under 1 ms per utterance; the semantic stage a few per cent of
the recognizer's CPU.

    .venv/bin/python bench/detection_speed.py [--seconds 3]
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy is imported: one core, one BLAS thread

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from shared_data import convabuse, labelled, shared_path  # noqa: E402
from detection import CallScreen, Detector  # noqa: E402
from detection.semantic import SemanticStage  # noqa: E402

ASR_RTF = 0.18  # recognizer CPU seconds per audio second, one speaker stream (README, bench/asr_throughput.py)
UTTERANCE_S = 3.0  # the utterance the comparison is made for
WORDS_PER_S = 2.5  # conversational speech: a 3 s utterance is 6 to 9 words

SAMPLE = [
    "i want a refund for the three days without service",
    "you're a stupid idiot and i'm going to come down there and hurt you",
    "my internet has been out since tuesday and nobody called me back",
    "can i talk to a supervisor please",
    "what are you wearing right now",
    "i'll post your name on twitter tonight",
    "this bill is killing me",
    "when does your shift end",
]


def utterances() -> list[str]:
    shared = shared_path()
    texts: list[str] = []
    dev = shared / "detection" / "dev_utterances.tsv"
    if dev.is_file():
        texts += [text for _, text in labelled(dev.read_text(encoding="utf-8").splitlines())]
    valid = shared / "datasets" / "convabuse" / "ConvAbuseEMNLPvalid.csv"
    if valid.is_file():  # the open part only: the sealed conversations are never read (docs/detection-quality.md)
        texts += [m.text for m in convabuse(valid, "validation")]
    return texts or SAMPLE


def harassment_lines() -> list[str]:
    """The labelled harassment lines (development and held-out), shuffled; the sample when there are none."""
    lines = (shared_path() / "detection" / "dev_utterances.tsv", ROOT / "tests" / "detection" / "heldout.tsv")
    texts = [text for path in lines if path.is_file()
             for label, text in labelled(path.read_text(encoding="utf-8").splitlines()) if label != "none"]
    random.Random(1).shuffle(texts)
    return texts or SAMPLE


class CountingStage(SemanticStage):
    """The semantic stage, noting whether its last judgement fired (and so ran occlusion)."""

    fired = False

    def judge(self, words, wanted, **kwargs):
        verdicts = super().judge(words, wanted, **kwargs)
        self.fired = any(v.fired for v in verdicts)
        return verdicts


def _timed(detector: Detector, text: str) -> float:
    t0 = time.perf_counter()
    detector.screen(text)
    return time.perf_counter() - t0


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "n/a"
    return (f"median {_quantile(ordered, 0.5) * 1e3:.1f} ms, p99 {_quantile(ordered, 0.99) * 1e3:.1f} ms, "
            f"worst {ordered[-1] * 1e3:.1f} ms (n={len(ordered)})")


def rules_alone(texts: list[str], seconds: float) -> None:
    started = time.perf_counter()
    detector = Detector()
    load = time.perf_counter() - started
    mean_words = statistics.mean(len(t.split()) for t in texts)
    for text in texts:  # warm up
        detector.screen(text)

    timings: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < deadline:
        for text in texts:
            t0 = time.perf_counter()
            detector.screen(text)
            timings.append(time.perf_counter() - t0)
        count += len(texts)
    elapsed = time.perf_counter() - began
    # per-utterance cost without other processes' noise: best of 5 runs each
    best = sorted(min(_timed(detector, text) for _ in range(5)) for text in texts)
    timings.sort()

    calls = 0
    call_began = time.perf_counter()
    while time.perf_counter() < call_began + seconds:
        call = CallScreen(detector)
        for i, text in enumerate(texts):
            call.hear("customer" if i % 2 == 0 else "partner", text, float(i), float(i) + 1.0)
        calls += len(texts)
    call_elapsed = time.perf_counter() - call_began

    us = 1e6
    print(f"(a) rules alone: Detector() load {load * 1000:.0f} ms ({len(detector.rules)} rules)")
    print(f"    utterances: {len(texts)} distinct, {mean_words:.1f} words on average, {count} screened in {elapsed:.2f} s")
    print(f"    Detector.screen: {count / elapsed:,.0f} utterances/s; per utterance: mean {statistics.mean(timings) * us:.0f} us, "
          f"median {_quantile(timings, 0.5) * us:.0f} us, p99 {_quantile(timings, 0.99) * us:.0f} us, worst {timings[-1] * us:.0f} us")
    print(f"    per utterance, best of 5 (the CPU is shared): median {_quantile(best, 0.5) * us:.0f} us, "
          f"p99 {_quantile(best, 0.99) * us:.0f} us, worst {best[-1] * us:.0f} us")
    print(f"    CallScreen.hear (repetition + ladder, half partner lines): {calls / call_elapsed:,.0f} utterances/s, "
          f"{call_elapsed / calls * us:.0f} us per utterance")


def full_detector(texts: list[str], seconds: float) -> None:
    from cli.settings import load_settings

    started = time.perf_counter()
    detector = load_settings(None).detector()
    load = time.perf_counter() - started
    stage = detector.semantic
    if stage is None:
        print("(b) the configured detector has no semantic stage ([detection] semantic = false): nothing more to measure")
        return
    counting = CountingStage(stage.encoder, stage.head, stage.threshold)
    detector.semantic = counting
    order = texts[:]
    random.Random(0).shuffle(order)  # a time-limited pass is a fair sample of both sources
    for text in order[:20]:  # warm up
        detector.screen(text)

    screened: list[tuple[float, bool, int]] = []  # (seconds, the stage fired, words)
    began = time.perf_counter()
    for text in order:
        counting.fired = False
        t0 = time.perf_counter()
        detector.screen(text)
        screened.append((time.perf_counter() - t0, counting.fired, text))
        if time.perf_counter() - began >= seconds:
            break
    elapsed = time.perf_counter() - began
    screened = [(t, f, len(detector.normalized(text).tokens)) for t, f, text in screened]
    everything = [t for t, _, _ in screened]
    fired = [t for t, f, _ in screened if f]
    silent = [t for t, f, _ in screened if not f]
    print(f"\n(b) full detector as commands build it (rules + semantic stage, encoder {stage.encoder.name}, "
          f"threshold {stage.threshold}): load {load * 1000:.0f} ms")
    print(f"    Detector.screen: {len(screened) / elapsed:,.0f} utterances/s ({len(screened)} of {len(order)} in {elapsed:.2f} s); "
          f"per utterance: {_ms(everything)}")
    print(f"    in this mix the semantic stage fired on {len(fired)} of {len(screened)} "
          f"({100 * len(fired) / len(screened):.1f}%): {_ms(fired)}; silent: {_ms(silent)}")

    embeds: list[float] = []
    began = time.perf_counter()
    for text in order:
        t0 = time.perf_counter()
        stage.encoder.embed(text)
        embeds.append(time.perf_counter() - t0)
        if time.perf_counter() - began >= seconds:
            break
    print(f"(c) encoder alone (embed, one utterance): {len(embeds) / (time.perf_counter() - began):,.0f} utterances/s; "
          f"per utterance: {_ms(embeds)}")

    # (d) firing is rare in the mix, so time the stage itself on harassment lines, every category wanted
    judged: list[tuple[float, bool, int]] = []
    began = time.perf_counter()
    for text in harassment_lines():
        words = detector.normalized(text).tokens
        if not words:
            continue
        t0 = time.perf_counter()
        verdicts = stage.judge(words, stage.categories)
        judged.append((time.perf_counter() - t0, any(v.fired for v in verdicts), len(words)))
        if time.perf_counter() - began >= seconds:
            break
    fired = [t for t, f, _ in judged if f]
    print("(d) semantic stage alone on harassment lines, every category wanted (SemanticStage.judge):")
    print(f"    fired, evidence by occlusion ({len(fired)} of {len(judged)}): {_ms(fired)}")
    print(f"    did not fire: {_ms([t for t, f, _ in judged if not f])}")

    # a 3 s utterance: the screened ones of about as many words
    low, high = round(UTTERANCE_S * WORDS_PER_S * 0.8), round(UTTERANCE_S * WORDS_PER_S * 1.2)
    sized_silent = sorted(t for t, f, n in screened if not f and low <= n <= high) or sorted(silent)
    sized_fired = sorted(t for t, f, n in judged if f and low <= n <= high) or sorted(fired)
    asr_ms = UTTERANCE_S * ASR_RTF * 1000
    print(f"\nagainst speech recognition (real-time factor {ASR_RTF} per stream): a {UTTERANCE_S:.0f} s utterance "
          f"({low}-{high} words) costs about {asr_ms:.0f} ms of recognizer CPU;")
    if sized_silent:
        cost = _quantile(sized_silent, 0.5) * 1000
        print(f"    screening it costs {cost:.1f} ms ({100 * cost / asr_ms:.1f}%) when the semantic stage stays silent "
              f"(median of {len(sized_silent)})")
    if sized_fired:
        cost = _quantile(sized_fired, 0.5) * 1000
        print(f"    and {cost:.1f} ms ({100 * cost / asr_ms:.1f}%) when the stage fires (SemanticStage.judge as in (d), "
              f"median of {len(sized_fired)}; the rules add about 0.1 ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to run each measurement (s)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    texts = utterances()
    rules_alone(texts, args.seconds)
    full_detector(texts, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
