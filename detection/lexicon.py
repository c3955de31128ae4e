"""Lexicon data files and the small pattern language they are written in.

A language's lexicon is a folder ``detection/lexicons/<language>/``:

- ``lists.tsv``: named word lists, ``NAME<TAB>entry, entry, ...``. A name may
  take several lines (they add up). An entry is one or more words; it may be
  ``{OTHER}`` to include another list, and a word ending in ``*`` matches any
  word starting with it (``threaten*``: threaten, threatens, threatening).
- ``rules.tsv``: what the detector looks for, one pattern a line:
  ``rule<TAB>category<TAB>subtype<TAB>target<TAB>score<TAB>pattern``.
  ``target`` says how the rule knows the words are aimed at the partner:
  ``you`` (the pattern itself names the partner: "you idiot"), ``context``
  (the words around decide: "idiot" alone, not "my husband is an idiot"),
  ``any`` (harassment whoever it names: "somebody will get hurt").
- ``exceptions.tsv``: ``id<TAB>categories<TAB>pattern``: idioms and
  legitimate requests; a rule match overlapping one is dropped
  ("this bill is killing me", "can i talk to a supervisor").
- ``repetition.tsv``: words for the repetition counter (see ``repetition.py``).
- ``senses.tsv``: example sentences per sense of ambiguous words (``senses.py``).
- ``provenance.tsv``: ``id<TAB>written from``: what each rule, exception and
  list was written from (:func:`read_provenance`); the quality benchmarks
  leave those lines out of their figures (``docs/detection-quality.md``).

Pattern language (over lowercase words without apostrophes)::

    word          that word              word*       any word starting with "word"
    {NAME}        any entry of a list    (a|b c)     one of these word sequences
    X?            X or nothing           X*          X zero to three times
    ..N           zero to N any words    ^  $        start / end of the utterance

Patterns compile to regular expressions over the normalized text, where every
word is followed by one space. Each pattern also knows a set of words one of
which must occur for it to match, so an utterance only runs the few patterns
that could fire (that is what keeps screening well under a millisecond).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from detection.errors import DetectionError
from detection.taxonomy import CATEGORIES, DEMAND_SUBTYPES

TARGETS = ("you", "context", "any")
_MAX_REPEAT = 3


@dataclass(frozen=True)
class Pattern:
    """One compiled pattern: its regex and the words that must occur for it."""

    source: str
    regex: re.Pattern
    anchors: frozenset[str] | None  # None: no cheap precondition, always run


@dataclass(frozen=True)
class Rule:
    """One line of ``rules.tsv``."""

    id: str
    category: str
    subtype: str | None
    target: str
    score: float
    pattern: Pattern


@dataclass(frozen=True)
class Exception_:
    """One line of ``exceptions.tsv``: a benign phrase that cancels overlapping matches."""

    id: str
    categories: frozenset[str]  # empty: every category
    pattern: Pattern


class Lists:
    """The named word lists of ``lists.tsv``, with ``{NAME}`` includes resolved."""

    def __init__(self, raw: dict[str, list[str]], where: str) -> None:
        self._raw = raw
        self._where = where
        self._resolved: dict[str, tuple[str, ...]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._raw

    def get(self, name: str, _seen: tuple[str, ...] = ()) -> tuple[str, ...]:
        if name in self._resolved:
            return self._resolved[name]
        if name not in self._raw:
            raise DetectionError(f"{self._where}: unknown list {{{name}}}", code="bad_lexicon")
        if name in _seen:
            raise DetectionError(f"{self._where}: list {{{name}}} includes itself", code="bad_lexicon")
        out: list[str] = []
        for entry in self._raw[name]:
            if entry.startswith("{") and entry.endswith("}"):
                out.extend(self.get(entry[1:-1], _seen + (name,)))
            else:
                out.append(entry)
        words = tuple(dict.fromkeys(out))
        self._resolved[name] = words
        return words

    def words(self, name: str) -> frozenset[str]:
        """The list's entries as a set (for single-word lookups)."""
        return frozenset(self.get(name))


def read_tsv(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    """Non-comment lines of a TSV data file, split into at most ``columns`` fields."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DetectionError(f"cannot read lexicon file {path}: {exc.strerror or exc}", code="bad_lexicon") from exc
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        fields = [f for f in fields if f != ""] if columns == 0 else fields
        if columns and len(fields) < columns:
            raise DetectionError(f"{path.name}:{number}: expected {columns} tab-separated fields, got {len(fields)}", code="bad_lexicon")
        if columns:
            fields = fields[: columns - 1] + ["\t".join(fields[columns - 1:]).strip()]
        rows.append((number, fields))
    return rows


def lexicon_dir(language: str) -> Path:
    """Folder holding ``language``'s lexicon files (inside the installed package)."""
    path = Path(str(resources.files("detection") / "lexicons" / language))
    if not path.is_dir():
        available = sorted(p.name for p in Path(str(resources.files("detection") / "lexicons")).iterdir() if p.is_dir())
        raise DetectionError(f"no lexicon for language {language!r}; available: {', '.join(available)}", code="bad_config")
    return path


def load_lists(folder: Path) -> Lists:
    raw: dict[str, list[str]] = {}
    for number, (name, entries) in read_tsv(folder / "lists.tsv", 2):
        if not re.fullmatch(r"[A-Z0-9_]+", name):
            raise DetectionError(f"lists.tsv:{number}: list names are UPPER_CASE, not {name!r}", code="bad_lexicon")
        raw.setdefault(name, []).extend(e.strip() for e in entries.split(",") if e.strip())
    return Lists(raw, "lists.tsv")


class PatternCompiler:
    """Turns pattern text into :class:`Pattern` using the lists of one language.

    Grammar: a pattern is a sequence of elements separated by spaces; an
    element is a word, ``word*``, ``{LIST}``, ``#`` (a number in digits), a
    group ``(seq|seq|...)`` whose alternatives are sequences themselves (groups
    nest), ``..N``, ``^`` or ``$``; words, lists and groups may end in ``?``
    or ``*``.
    """

    def __init__(self, lists: Lists) -> None:
        self.lists = lists

    def compile(self, source: str, where: str) -> Pattern:
        parser = _Parser(source, where)
        sequence = parser.sequence(top=True)
        regex = self._sequence(sequence)
        best: frozenset[str] | None = None
        for element in sequence:
            if element.quantifier or element.kind in ("gap", "start", "end"):
                continue
            firsts = self._firsts(element)
            if firsts is not None and (best is None or len(firsts) < len(best)):
                best = firsts
        try:
            compiled = re.compile(r"(?<![^ ])" + regex)
        except re.error as exc:  # pragma: no cover - the grammar prevents it
            raise DetectionError(f"{where}: bad pattern {source!r}: {exc}", code="bad_lexicon") from exc
        return Pattern(source, compiled, best)

    def _sequence(self, sequence: list["_Element"]) -> str:
        return "".join(self._element(e) for e in sequence)

    def _element(self, element: "_Element") -> str:
        if element.kind == "start":
            return r"(?<!.)"
        if element.kind == "end":
            return r"(?!.)"
        if element.kind == "gap":
            return r"(?:\S+ ){0,%d}" % element.count
        if element.kind == "word":
            body = _words_regex(element.text) + " "
        elif element.kind == "list":
            entries = self.lists.get(element.text)  # an unknown list is a clear error here
            body = "(?:" + "|".join(_words_regex(a) for a in sorted(set(entries), key=lambda a: (-len(a), a))) + ") "
        else:  # group
            body = "(?:" + "|".join(self._sequence(alt) for alt in element.alternatives) + ")"
        if element.quantifier == "?":
            return f"(?:{body})?"
        if element.quantifier == "*":
            return f"(?:{body}){{0,{_MAX_REPEAT}}}"
        return body

    def _firsts(self, element: "_Element") -> frozenset[str] | None:
        """Words one of which must be the first word of any match of ``element`` (None: unknown)."""
        if element.kind == "word":
            word = element.text
            return None if word.endswith("*") or word == "#" else frozenset([word])
        if element.kind == "list":
            firsts = {entry.split()[0] for entry in self.lists.get(element.text)}
            return None if any(w.endswith("*") or w == "#" for w in firsts) else frozenset(firsts)
        if element.kind == "group":
            out: set[str] = set()
            for alt in element.alternatives:
                first = next((e for e in alt if e.kind not in ("start", "end")), None)
                if first is None or first.quantifier or first.kind == "gap":
                    return None
                words = self._firsts(first)
                if words is None:
                    return None
                out |= words
            return frozenset(out)
        return None


@dataclass
class _Element:
    kind: str                      # word, list, group, gap, start, end
    text: str = ""
    quantifier: str = ""           # "", "?" or "*"
    count: int = 0                 # gap length
    alternatives: list | None = None  # group: list of sequences


class _Parser:
    def __init__(self, source: str, where: str) -> None:
        self.s = source
        self.i = 0
        self.where = where

    def fail(self, why: str) -> DetectionError:
        return DetectionError(f"{self.where}: cannot read pattern {self.s!r}: {why} at character {self.i}", code="bad_lexicon")

    def sequence(self, top: bool = False) -> list[_Element]:
        out: list[_Element] = []
        while True:
            while self.i < len(self.s) and self.s[self.i] == " ":
                self.i += 1
            if self.i >= len(self.s):
                if not top:
                    raise self.fail("unclosed (")
                break
            c = self.s[self.i]
            if c in "|)":
                if top:
                    raise self.fail(f"unexpected {c!r}")
                break
            out.append(self.element())
        if not out:
            raise self.fail("empty sequence")
        return out

    def element(self) -> _Element:
        s, i = self.s, self.i
        if s[i] == "(":
            self.i += 1
            alternatives = [self.sequence()]
            while s[self.i] == "|":
                self.i += 1
                alternatives.append(self.sequence())
            if s[self.i] != ")":  # pragma: no cover - sequence() stops only at | or )
                raise self.fail("expected )")
            self.i += 1
            return _Element("group", alternatives=alternatives, quantifier=self.quantifier())
        if s[i] == "{":
            m = re.compile(r"\{([A-Z0-9_]+)\}").match(s, i)
            if not m:
                raise self.fail("bad list reference")
            self.i = m.end()
            return _Element("list", text=m.group(1), quantifier=self.quantifier())
        if s.startswith("..", i):
            m = re.compile(r"\.\.(\d+)").match(s, i)
            if not m:
                raise self.fail("a gap is ..N")
            self.i = m.end()
            return _Element("gap", count=int(m.group(1)))
        if s[i] == "^":
            self.i += 1
            return _Element("start")
        if s[i] == "$":
            self.i += 1
            return _Element("end")
        m = re.compile(r"[a-z0-9#]+\*?").match(s, i)
        if not m:
            raise self.fail(f"unexpected {s[i]!r}")
        self.i = m.end()
        return _Element("word", text=m.group(0), quantifier=self.quantifier())

    def quantifier(self) -> str:
        if self.i < len(self.s) and self.s[self.i] in "?*":
            self.i += 1
            return self.s[self.i - 1]
        return ""


def _words_regex(entry: str) -> str:
    words = []
    for word in entry.split():
        if word.endswith("*"):
            words.append(re.escape(word[:-1]) + r"\S*")
        elif word == "#":
            words.append(r"\d[\d,.]*")
        else:
            words.append(re.escape(word))
    return " ".join(words)


def load_rules(folder: Path, compiler: PatternCompiler) -> tuple[Rule, ...]:
    rules = []
    for number, (rule_id, category, subtype, target, score, pattern) in read_tsv(folder / "rules.tsv", 6):
        where = f"rules.tsv:{number}"
        if category not in CATEGORIES:
            raise DetectionError(f"{where}: unknown category {category!r}", code="bad_lexicon")
        subtype = None if subtype in ("", "-") else subtype
        if category == "demand" and subtype not in DEMAND_SUBTYPES:
            raise DetectionError(f"{where}: demand needs a subtype from {', '.join(DEMAND_SUBTYPES)}", code="bad_lexicon")
        if target not in TARGETS:
            raise DetectionError(f"{where}: target must be one of {', '.join(TARGETS)}", code="bad_lexicon")
        try:
            value = float(score)
        except ValueError:
            raise DetectionError(f"{where}: score must be a number 0..1, not {score!r}", code="bad_lexicon") from None
        rules.append(Rule(rule_id, category, subtype, target, value, compiler.compile(pattern, where)))
    return tuple(rules)


def load_exceptions(folder: Path, compiler: PatternCompiler) -> tuple[Exception_, ...]:
    out = []
    for number, (exc_id, categories, pattern) in read_tsv(folder / "exceptions.tsv", 3):
        where = f"exceptions.tsv:{number}"
        cats = frozenset() if categories == "*" else frozenset(c.strip() for c in categories.split(","))
        unknown = cats - set(CATEGORIES)
        if unknown:
            raise DetectionError(f"{where}: unknown category {', '.join(sorted(unknown))}", code="bad_lexicon")
        out.append(Exception_(exc_id, cats, compiler.compile(pattern, where)))
    return tuple(out)


PROVENANCE_FILE = "provenance.tsv"
_REFERENCE = re.compile(r"\b([a-z][a-z0-9_]*):(\S+?)(?=,|\s|$)")


def read_provenance(folder: Path) -> dict[str, str]:
    """``{id: written from}`` of ``provenance.tsv`` (an id given twice is a
    :class:`DetectionError`)."""
    out: dict[str, str] = {}
    for number, (key, sources) in read_tsv(folder / PROVENANCE_FILE, 2):
        if key in out:
            raise DetectionError(f"{PROVENANCE_FILE}:{number}: {key} has a row already", code="bad_lexicon")
        out[key] = sources
    return out


def provenance_references(folder: Path) -> frozenset[str]:
    """Every line named in ``provenance.tsv``: ``kind:where`` (``convabuse:ID``,
    ``spoken:N``, ``calls:N``, ``calls_round3:N``, ``heldout:N``)."""
    return frozenset(f"{kind}:{where}" for sources in read_provenance(folder).values()
                     for kind, where in _REFERENCE.findall(sources))
