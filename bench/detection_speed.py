"""Detection speed: utterances screened per second on one core.

Screens every development utterance and ConvAbuse validation message (when
the shared data is there; a built-in sample otherwise) repeatedly in one
thread and prints utterances per second, microseconds per utterance (mean,
median, 99th percentile, worst) and what one whole call (CallScreen with
repetition and the ladder) costs per utterance. The target: well under 1 ms
per utterance, so a finding is never the slow part of the pipeline.

    .venv/bin/python bench/detection_speed.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from shared_data import labelled, shared_path  # noqa: E402
from detection import CallScreen, Detector  # noqa: E402

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
    if valid.is_file():
        with valid.open(encoding="utf-8") as fh:
            texts += [" ".join(row["user"].lower().split()) for row in csv.DictReader(fh) if row["user"].strip()]
    return texts or SAMPLE


def _timed(detector: Detector, text: str) -> float:
    t0 = time.perf_counter()
    detector.screen(text)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to run each measurement (s)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    started = time.perf_counter()
    detector = Detector()
    load = time.perf_counter() - started
    texts = utterances()
    mean_words = statistics.mean(len(t.split()) for t in texts)
    for text in texts:  # warm up
        detector.screen(text)

    timings: list[float] = []
    count = 0
    deadline = time.perf_counter() + args.seconds
    began = time.perf_counter()
    while time.perf_counter() < deadline:
        for text in texts:
            t0 = time.perf_counter()
            detector.screen(text)
            timings.append(time.perf_counter() - t0)
        count += len(texts)
    # per-utterance cost without other processes' noise: best of 5 runs each
    best = sorted(min(_timed(detector, text) for _ in range(5)) for text in texts)
    elapsed = time.perf_counter() - began
    timings.sort()

    calls = 0
    call_began = time.perf_counter()
    call_deadline = call_began + args.seconds
    while time.perf_counter() < call_deadline:
        call = CallScreen(detector)
        for i, text in enumerate(texts):
            call.hear("customer" if i % 2 == 0 else "partner", text, float(i), float(i) + 1.0)
        calls += len(texts)
    call_elapsed = time.perf_counter() - call_began

    us = 1e6
    print(f"detector load: {load * 1000:.0f} ms ({len(detector.rules)} rules)")
    print(f"utterances: {len(texts)} distinct, {mean_words:.1f} words on average, {count} screened in {elapsed:.2f} s on one core")
    print(f"Detector.screen: {count / elapsed:,.0f} utterances/s; per utterance: mean {statistics.mean(timings) * us:.0f} us, "
          f"median {timings[len(timings) // 2] * us:.0f} us, p99 {timings[int(len(timings) * 0.99)] * us:.0f} us, worst {timings[-1] * us:.0f} us")
    print(f"per utterance, best of 5 (the CPU is shared): median {best[len(best) // 2] * us:.0f} us, "
          f"p99 {best[int(len(best) * 0.99)] * us:.0f} us, worst {best[-1] * us:.0f} us")
    print(f"CallScreen.hear (repetition + ladder, half partner lines): {calls / call_elapsed:,.0f} utterances/s, "
          f"{call_elapsed / calls * us:.0f} us per utterance")

    from detection import DetectionConfig

    started = time.perf_counter()
    both = Detector(DetectionConfig(classifier=True))
    load = time.perf_counter() - started
    for text in texts:
        both.screen(text)
    best_both = sorted(min(_timed(both, text) for _ in range(5)) for text in texts)
    count = 0
    began = time.perf_counter()
    while time.perf_counter() < began + args.seconds:
        for text in texts:
            both.screen(text)
        count += len(texts)
    elapsed = time.perf_counter() - began
    print(f"Detector.screen with classifier = true (load {load * 1000:.0f} ms): {count / elapsed:,.0f} utterances/s; "
          f"per utterance, best of 5: median {best_both[len(best_both) // 2] * us:.0f} us, "
          f"p99 {best_both[int(len(best_both) * 0.99)] * us:.0f} us, worst {best_both[-1] * us:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
