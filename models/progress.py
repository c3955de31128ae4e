"""Progress of the model installer's long steps (download, hashing, unpacking), and its printer."""

from __future__ import annotations

import sys
from typing import IO, Protocol

_MIB = 1 << 20  # a terminal's bar without a total moves every MiB


class Progress(Protocol):
    """Receives progress of a long step (download, hashing, unpacking)."""

    def start(self, label: str, total: int | None) -> None: ...
    def advance(self, done: int) -> None: ...  # bytes done so far in this step
    def finish(self) -> None: ...


class ProgressPrinter:
    """Progress on a text stream: a redrawn bar on a terminal, percent lines otherwise.

    Lines (not a TTY) come at every ``step_percent`` percent, or every
    ``step_bytes`` when the total is unknown, so a log file stays short.
    """

    def __init__(self, stream: IO[str] | None = None, *, tty: bool | None = None, width: int = 30,
                 step_percent: int = 10, step_bytes: int = 10 * _MIB) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.width = width
        self.step_percent = step_percent
        self.step_bytes = step_bytes
        self._label = ""
        self._total: int | None = None
        self._last_mark = -1
        self._done = 0

    def start(self, label: str, total: int | None) -> None:
        self._label, self._total, self._last_mark, self._done = label, total or None, -1, 0
        self.advance(0)

    def advance(self, done: int) -> None:
        self._done = done
        if self._total:
            percent = min(100, done * 100 // self._total)
            mark = percent if self.tty else percent - percent % self.step_percent
        else:
            mark = done // (_MIB if self.tty else self.step_bytes)
        if mark == self._last_mark:
            return
        self._last_mark = mark
        if self.tty:
            if self._total:
                filled = self.width * percent // 100
                bar = "#" * filled + "." * (self.width - filled)
                text = f"\r{self._label} [{bar}] {percent:3d}% {_mb(done)}/{_mb(self._total)} MB"
            else:
                text = f"\r{self._label} {_mb(done)} MB"
            self.stream.write(text)
        elif self._total:
            self.stream.write(f"{self._label}: {mark}% ({_mb(done)} of {_mb(self._total)} MB)\n")
        else:
            self.stream.write(f"{self._label}: {_mb(done)} MB\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
        elif self._total and self._last_mark < 100:
            self.stream.write(f"{self._label}: 100% ({_mb(self._total)} of {_mb(self._total)} MB)\n")
        self.stream.flush()


class Silent:
    """Progress nobody watches."""

    def start(self, label: str, total: int | None) -> None:
        pass

    def advance(self, done: int) -> None:
        pass

    def finish(self) -> None:
        pass


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"
