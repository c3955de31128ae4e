"""Word senses: "kill" in "i'll kill you" and in "my feet are killing me".

Some words are harassment in one sense and ordinary talk in another. Which
sense a word has is decided by its context, the way the sentence encoder
reads it: each such word has example sentences per sense in
``lexicons/<language>/senses.tsv`` (a reviewer reads them like the rules), and
the word in an utterance takes the sense of the examples its contextual vector
is nearest to. A finding whose evidence holds such a word is dropped only when
an ordinary sense is nearer than the harmful one by at least ``MARGIN``
(cosine): a tie keeps the finding, so a menacing "i'll beat you black and
blue" stays a threat while "i beat you fair and square" is a game.

Each line of the file names the forms of one word ("kill, kills, killed,
killing"), and a word is compared with its own examples only, harmful and
ordinary (the file must give both). When the evidence holds several such
words, all of them must read in an ordinary sense for the finding to go.

Needs the encoder, so it judges final utterances only (live partials are
screened by the rules alone, and an early finding is not taken back). The
example vectors are computed once, in one batch, when the detector is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from detection.encoder import Encoder
from detection.errors import DetectionError

MARGIN = 0.05  # an ordinary sense must be this much nearer (cosine) than the harmful one
SENSES_FILE = "senses.tsv"
_MARKED = re.compile(r"\[([a-z']+)\]")


@dataclass(frozen=True)
class SenseExample:
    """One example of one sense: ``forms`` (the word's forms that share the
    examples), the sense's name, whether it is the harmful sense, the
    example's words and the index of the marked word among them."""

    forms: frozenset[str]
    sense: str
    harmful: bool
    words: tuple[str, ...]
    index: int


@dataclass(frozen=True)
class SenseReading:
    """A word read in an ordinary sense: the word, the sense's name, and the
    example it is nearest to (for the explanation)."""

    word: str
    sense: str
    example: str

    def explain(self) -> str:
        return f"'{self.word}' in the sense '{self.sense}' (as in '{self.example}')"


def load_examples(folder: Path) -> tuple[SenseExample, ...]:
    """The examples of ``senses.tsv``; a malformed line is a :class:`DetectionError`."""
    path = folder / SENSES_FILE
    if not path.is_file():
        return ()
    out: list[SenseExample] = []
    forms: frozenset[str] = frozenset()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        where = f"{SENSES_FILE}:{number}"
        if len(parts) != 4:
            raise DetectionError(f"{where}: expected forms<TAB>sense<TAB>harm|other<TAB>example", code="bad_lexicon")
        if parts[0].strip():
            forms = frozenset(f.strip() for f in parts[0].split(",") if f.strip())
        if not forms:
            raise DetectionError(f"{where}: no word forms above this example", code="bad_lexicon")
        if parts[2] not in ("harm", "other"):
            raise DetectionError(f"{where}: the third column is harm or other, not {parts[2]!r}", code="bad_lexicon")
        marked = _MARKED.findall(parts[3])
        if len(marked) != 1:
            raise DetectionError(f"{where}: mark the word in the example with [brackets], once", code="bad_lexicon")
        if marked[0].replace("'", "") not in forms:
            raise DetectionError(f"{where}: the marked word {marked[0]!r} is not one of the forms {', '.join(sorted(forms))}",
                                 code="bad_lexicon")
        before = parts[3][:parts[3].index("[")].replace("'", "").split()
        words = tuple(w.replace("'", "") for w in _MARKED.sub(lambda m: m.group(1), parts[3]).split())
        out.append(SenseExample(forms, parts[1].strip(), parts[2] == "harm", words, len(before)))
    for forms in {e.forms for e in out}:
        kinds = {e.harmful for e in out if e.forms == forms}
        if kinds != {True, False}:
            raise DetectionError(f"{SENSES_FILE}: {', '.join(sorted(forms))} needs examples of a harmful and of an "
                                 f"ordinary sense", code="bad_lexicon")
    return tuple(out)


class Senses:
    """The examples of every ambiguous word, read by one encoder; immutable."""

    def __init__(self, examples: Sequence[SenseExample], encoder: Encoder) -> None:
        self._examples = tuple(examples)
        readings = encoder.read_many([e.words for e in self._examples])
        self._vectors = np.stack([r.words[e.index] for r, e in zip(readings, self._examples)]) if examples else \
            np.zeros((0, 1), np.float32)
        self._by_form: dict[str, list[int]] = {}
        for i, example in enumerate(self._examples):
            for form in example.forms:
                self._by_form.setdefault(form, []).append(i)

    def covers(self, words: Iterable[str]) -> bool:
        """Whether any of ``words`` has senses to tell apart."""
        return any(word in self._by_form for word in words)

    def ordinary(self, tokens: Sequence[str], indices: Sequence[int], vectors: np.ndarray) -> SenseReading | None:
        """How the words at ``indices`` (word indices into ``tokens``, whose
        contextual ``vectors`` are given) read when every one of them that has
        senses reads in an ordinary sense (the first, for the explanation);
        None when one reads harmfully, or none has senses."""
        first: SenseReading | None = None
        for index in indices:
            rows = self._by_form.get(tokens[index])
            if not rows:
                continue
            similarity = self._vectors[rows] @ vectors[index]
            harm = max(float(s) for s, i in zip(similarity, rows) if self._examples[i].harmful)
            best = max((k for k, i in enumerate(rows) if not self._examples[i].harmful), key=lambda k: float(similarity[k]))
            if float(similarity[best]) < harm + MARGIN:
                return None  # read harmfully, or too close to call: the finding stands
            other = self._examples[rows[best]]
            first = first or SenseReading(tokens[index], other.sense, " ".join(other.words))
        return first
