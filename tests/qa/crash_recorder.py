"""A call being recorded, to be killed with SIGKILL by ``test_recorder``.

Run as ``python crash_recorder.py OUT.wav``: pushes 20 ms chunks of both
speakers in real time (a known signal per channel, see :func:`signal`) and
prints ``pushed N`` (frames per channel pushed so far) after each push, until
it is killed.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from audio.frames import AudioChunk
from audio.recorder import CallRecorder

RATE = 8000
CHUNK = 160  # 20 ms


def signal(start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The customer's and the partner's samples ``start .. start + n``."""
    i = np.arange(start, start + n, dtype=np.int64)
    customer = ((i * 7) % 30000 - 15000).astype(np.int16)
    partner = ((i * 3) % 20000 - 10000).astype(np.int16)
    return customer, partner


def main(path: str) -> None:
    recorder = CallRecorder(path, RATE, sync_interval_s=1.0)
    t0 = time.monotonic()
    pushed = 0
    while True:
        customer, partner = signal(pushed, CHUNK)
        recorder.push(AudioChunk("customer", customer, RATE, pushed))
        recorder.push(AudioChunk("partner", partner, RATE, pushed))
        pushed += CHUNK
        print(f"pushed {pushed}", flush=True)
        delay = t0 + pushed / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)


if __name__ == "__main__":
    main(sys.argv[1])
