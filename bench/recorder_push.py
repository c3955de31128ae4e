"""How cheap is recording a call? Prints per-chunk cost of CallRecorder.push
on the event-loop side, and the whole cost (push + writes + fsync each second)
as calls one core can record in real time.

    .venv/bin/python bench/recorder_push.py [--calls 20] [--seconds 30]

Short by default: the machine is shared.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from audio.frames import AudioChunk
from audio.recorder import CallRecorder

RATE = 8000
CHUNK = 160  # 20 ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="audio seconds per call")
    args = parser.parse_args()
    chunks = int(args.seconds * RATE / CHUNK)
    rng = np.random.default_rng(1)
    customer = rng.integers(-8000, 8000, CHUNK, dtype=np.int16)
    partner = rng.integers(-8000, 8000, CHUNK, dtype=np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recorder")
        recs = [CallRecorder(Path(tmp) / f"c{n}.wav", RATE, executor=pool) for n in range(args.calls)]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        push_time = 0.0
        for i in range(chunks):
            start = i * CHUNK
            t = time.perf_counter()
            for rec in recs:
                rec.push(AudioChunk("customer", customer, RATE, start))
                rec.push(AudioChunk("partner", partner, RATE, start))
            push_time += time.perf_counter() - t
        infos = [rec.close() for rec in recs]
        pool.shutdown()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    pushes = 2 * chunks * args.calls
    audio = args.calls * args.seconds
    print(f"calls={args.calls} audio={audio:.0f} s ({sum(i.bytes for i in infos) / 1e6:.1f} MB written, fsync every 1 s of audio)")
    print(f"push (event-loop side): {push_time / pushes * 1e6:.1f} us per 20 ms chunk")
    print(f"total CPU (push + write + fsync + final hash): {cpu:.2f} s for {audio:.0f} s of audio "
          f"= {audio / max(cpu, 1e-9):.0f}x real time per core (~{audio / max(cpu, 1e-9):.0f} calls recorded per core)")
    print(f"wall: {wall:.2f} s = {audio / wall:.0f}x real time")


if __name__ == "__main__":
    main()
