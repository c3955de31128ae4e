"""Excessive repetition: the customer making the same request again and again.

Each customer utterance that is a request or an inquiry (it has a request
word such as "want", "give", "can you", a question word, or names a thing
customers ask for such as a refund or a supervisor) is reduced to its content
words: synonyms become one word ("money back" -> refund, "manager" ->
supervisor), filler and confirmations are dropped, and words are lightly
stemmed. Two requests are the same when they share enough content words
(``repetition_similarity`` of the shorter one). Not counted: confirmations
("yes", "okay", "thank you"), statements ("my phone won't charge"), and the
utterance right after the partner asked to hear it again ("can you repeat
that"). From the ``repetition_min``-th occurrence on, every further one is a
finding that says how many times and since when.

Words live in ``detection/lexicons/<language>/repetition.tsv``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from detection.config import DetectionConfig
from detection.errors import DetectionError
from detection.findings import Finding
from detection.lexicon import read_tsv
from detection.text import normalize


@dataclass(frozen=True)
class RepetitionWords:
    """The word lists of ``repetition.tsv``."""

    filler: frozenset[str]
    request_words: frozenset[str]
    request_things: frozenset[str]
    closings: frozenset[str]
    repeat_asks: re.Pattern
    synonyms: tuple[tuple[re.Pattern, str], ...]

    @classmethod
    def load(cls, folder: Path) -> "RepetitionWords":
        kinds: dict[str, list[str]] = {}
        synonyms: list[tuple[re.Pattern, str]] = []
        for number, fields in read_tsv(folder / "repetition.tsv", 0):
            kind = fields[0]
            if kind == "same" and len(fields) == 3:
                phrases = [p.strip() for p in fields[2].split(",") if p.strip()]
                synonyms.append((_phrases_regex(phrases), fields[1]))
            elif kind in {"filler", "request_word", "request_thing", "closing", "repeat_ask"} and len(fields) == 2:
                kinds.setdefault(kind, []).extend(p.strip() for p in fields[1].split(",") if p.strip())
            else:
                raise DetectionError(f"repetition.tsv:{number}: unknown line kind {kind!r} or wrong number of fields", code="bad_lexicon")
        return cls(
            filler=frozenset(kinds.get("filler", ())),
            request_words=frozenset(kinds.get("request_word", ())),
            request_things=frozenset(kinds.get("request_thing", ())),
            closings=frozenset(kinds.get("closing", ())),
            repeat_asks=_phrases_regex(kinds.get("repeat_ask", ["repeat"])),
            synonyms=tuple(synonyms),
        )


def _phrases_regex(phrases: list[str]) -> re.Pattern:
    alts = []
    for phrase in sorted(phrases, key=len, reverse=True):
        alts.append(" ".join(re.escape(w[:-1]) + r"\S*" if w.endswith("*") else re.escape(w) for w in phrase.split()))
    return re.compile(r"(?<![^ ])(?:" + "|".join(alts) + r")(?= )")


def stem(word: str) -> str:
    """A light stemmer: refunds/refunded/refunding -> refund."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


@dataclass
class _Request:
    words: list[frozenset[str]]
    text: str
    count: int
    since: float


@dataclass
class RepetitionCounter:
    """Counts repeated customer requests within one call (one per call)."""

    words: RepetitionWords
    config: DetectionConfig
    _requests: list[_Request] = field(default_factory=list)
    _partner_asked_repeat: bool = False

    def hear_partner(self, text: str) -> None:
        """A partner line: remembers whether the partner asked to hear it again."""
        self._partner_asked_repeat = bool(self.words.repeat_asks.search(normalize(text).text))

    def content(self, text: str) -> frozenset[str] | None:
        """The content words of a request or inquiry, or None if ``text`` is neither."""
        norm = normalize(text).text
        if not norm:
            return None
        tokens = norm.split()
        is_request = any(t in self.words.request_words for t in tokens) or norm.rstrip().endswith(" now")
        for regex, canonical in self.words.synonyms:
            norm = regex.sub(canonical, norm)
        tokens = norm.split()
        if any(t in self.words.closings for t in tokens) and len(tokens) <= 6:
            return None
        content = frozenset(stem(t) for t in tokens if t not in self.words.filler)
        if not content:
            return None
        if not is_request and not (content & self.words.request_things):
            return None
        return content

    def hear_customer(self, text: str, start: float, end: float) -> Finding | None:
        asked = self._partner_asked_repeat
        self._partner_asked_repeat = False
        content = self.content(text)
        if content is None or asked:
            return None
        request = self._same_as(content)
        if request is None:
            self._requests.append(_Request([content], text, 1, start))
            return None
        request.words.append(content)
        request.count += 1
        if request.count < self.config.repetition_min:
            return None
        extra = request.count - self.config.repetition_min
        return Finding(
            category="repetition",
            subtype=None,
            severity=self.config.severity_of("repetition"),
            score=min(1.0, 0.7 + 0.1 * extra),
            span=None,
            evidence=request.text,
            rule="repetition.same_request",
            start=start,
            end=end,
            text=text,
            count=request.count,
            since=request.since,
        )

    def _same_as(self, content: frozenset[str]) -> _Request | None:
        best, best_score = None, 0.0
        for request in self._requests:
            for seen in request.words:
                shared = len(seen & content)
                if not shared:
                    continue
                score = shared / min(len(seen), len(content))
                if score > best_score:
                    best, best_score = request, score
        return best if best_score >= self.config.repetition_similarity else None
