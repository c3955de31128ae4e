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
    return Normalized(text, tuple(origin), tokens, _starts(tokens))


def _starts(tokens: tuple[str, ...]) -> tuple[int, ...]:
    """The offset of each word in the words joined by single spaces."""
    starts = []
    pos = 0
    for token in tokens:
        starts.append(pos)
        pos += len(token) + 1
    return tuple(starts)


def _drop_restarts(tokens: tuple[str, ...], keep: list[bool]) -> None:
    """Mark the first saying of a word, or a pair of words, said twice in a row
    (among the kept ones: "i uh i will") as dropped."""
    kept = [i for i, k in enumerate(keep) if k]
    n = 0
    while n < len(kept):
        if n + 1 < len(kept) and tokens[kept[n]] == tokens[kept[n + 1]]:
            keep[kept[n]] = False
        elif n + 3 < len(kept) and (tokens[kept[n]], tokens[kept[n + 1]]) == (tokens[kept[n + 2]], tokens[kept[n + 3]]):
            keep[kept[n]] = keep[kept[n + 1]] = False
            n += 1
        n += 1


def without_hesitations(
    norm: Normalized,
    fillers: frozenset[str],
    like_after: frozenset[str],
    tails: tuple[tuple[str, ...], ...] = (),
    like_not_before: frozenset[str] = frozenset(),
) -> Normalized:
    """``norm`` without the hesitations a recognizer writes down ("uh", "um"),
    so a pattern reads "are you uh stupid" as "are you stupid".

    ``fillers``: words that are never content, dropped wherever they stand.
    ``like_after``: one or two words after which "like" is a filler, not a
    verb or a comparison ("are you like mentally challenged"; "i like you"
    and "you sound like a child" keep theirs), unless the next word is in
    ``like_not_before`` ("is like to", "im like that"). ``tails``: word sequences dropped only
    at the very end of the utterance ("... you know"). Restarts go too: a
    word or a pair of words said twice in a row keeps its last saying ("i i
    will", "you are you are a"). Offsets still point into the original text."""
    tokens = norm.tokens
    if not tokens:
        return norm
    keep = [t not in fillers for t in tokens]
    before: list[str] = []  # the kept words so far
    for i, token in enumerate(tokens):
        if not keep[i]:
            continue
        if (
            token == "like"
            and before
            and i + 1 < len(tokens)
            and tokens[i + 1] not in like_not_before
            and (before[-1] in like_after or " ".join(before[-2:]) in like_after)
        ):
            keep[i] = False
            continue
        before.append(token)
    _drop_restarts(tokens, keep)
    changed = True
    while changed:  # "... you know i mean"
        changed = False
        kept = [i for i, k in enumerate(keep) if k]
        for tail in tails:
            n = len(tail)
            if len(kept) > n and tuple(tokens[i] for i in kept[-n:]) == tail:
                for i in kept[-n:]:
                    keep[i] = False
                changed = True
                break
    if all(keep) or not any(keep):
        return norm
    text: list[str] = []
    origin: list[int] = []
    for i, token in enumerate(tokens):
        if not keep[i]:
            continue
        start = norm.starts[i]
        if text:
            text.append(" ")
            origin.append(norm.origin[start])
        text.append(token)
        origin.extend(norm.origin[start:start + len(token)])
    text.append(" ")
    origin.append(norm.origin[-1])
    joined = "".join(text)
    new_tokens = tuple(t for t, k in zip(tokens, keep) if k)
    return Normalized(joined, tuple(origin), new_tokens, _starts(new_tokens))


def runs(indices) -> tuple[tuple[int, int], ...]:
    """Increasing word indices as ``(first, last)`` runs of consecutive words: [1, 2, 5] -> ((1, 2), (5, 5))."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return tuple(out)
