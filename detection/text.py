"""Speech-recognizer text, made uniform for matching.

The recognizer writes lowercase words without punctuation, but other sources
(a typed transcript, a test) may not. :func:`normalize` lowercases, drops
apostrophes (``you're`` and ``youre`` become the same word), turns every other
non-word character into a space, and keeps a map back to the original
characters so a finding's span points into the text the caller gave.
"""

from __future__ import annotations

from dataclasses import dataclass

_APOSTROPHES = frozenset("'\u2019\u2018`\u00b4")


@dataclass(frozen=True)
class Normalized:
    """An utterance ready for the rules.

    Attributes:
        text: the words joined by single spaces, with one trailing space
            (every word, the last included, is followed by a space).
        origin: for each character of ``text``, the index of the character
            of the original text it came from (``len(original)`` for the
            trailing space).
        tokens: the words.
        starts: the offset in ``text`` of each word.
    """

    text: str
    origin: tuple[int, ...]
    tokens: tuple[str, ...]
    starts: tuple[int, ...]

    def token_index(self, offset: int) -> int:
        """Index of the word that starts at or contains ``offset`` of ``text``."""
        lo, hi = 0, len(self.starts)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.starts[mid] <= offset:
                lo = mid + 1
            else:
                hi = mid
        return max(lo - 1, 0)

    def original_span(self, first: int, last: int) -> tuple[int, int]:
        """The ``[first, last)`` range of ``text`` as offsets into the original."""
        if last <= first:
            return (self.origin[first], self.origin[first])
        return (self.origin[first], self.origin[last - 1] + 1)


def normalize(raw: str) -> Normalized:
    out: list[str] = []
    origin: list[int] = []
    pending_space = False
    for index, char in enumerate(raw):
        if char in _APOSTROPHES:
            continue
        if char.isalnum():
            if pending_space and out:
                out.append(" ")
                origin.append(index)
            pending_space = False
            for low in char.lower():
                out.append(low)
                origin.append(index)
        else:
            pending_space = True
    out.append(" ")
    origin.append(len(raw))
    text = "".join(out) if len(out) > 1 else ""
    if not text:
        return Normalized("", (), (), ())
    tokens = tuple(text.split())
    starts = []
    pos = 0
    for token in tokens:
        starts.append(pos)
        pos += len(token) + 1
    return Normalized(text, tuple(origin), tokens, tuple(starts))
