"""Whom the words are aimed at: the partner, or someone else.

The rules and the semantic stage find words that would be harassment if they
were said to the partner. Whether they are is decided here, from the words
around them (the lists of ``lists.tsv``, section "who is meant"), in this
order:

1. **Reported speech.** Words right after a verb of saying whose speaker is
   someone else, or the customer speaking to someone else, are a quotation
   ("he goes you're an idiot", "the last agent told me i was useless", "and i
   said to him get lost"): ``quoted``. A quotation ends at the next clause
   ("... and ..."), at the customer speaking again ("he said it was fixed i
   will ..."), or after ``QUOTE_WORDS`` words, so a report cannot hide what
   follows it. The customer's own words to the partner are no quotation ("i
   told you", "i'm telling you", "like i said").
2. **Discourse "you".** "you know", "you see", "mind you", "thank you" point
   at no one: such a "you" is skipped.
3. **Generic "you"** (threats, sexual remarks, privacy; not personal attacks,
   where "nobody likes you" is aimed at the partner all the same). Another
   agent acting on "you": the nearest subject before it, in its clause, is a
   thing or a third person ("it'll kill you", "the heat just hits you", "they
   hound you for years") and the customer is not acting through them ("i'll
   have them hurt you"): ``anyone`` or ``third party``. Or a place or a time
   before the "you" makes it anyone ("back home you'd get shot for less"),
   in an utterance where the customer does not figure.
4. **Who else.** With ``nearest`` (rules whose target is ``context``, and the
   semantic stage's personal attacks): the nearest pointer before the words
   decides: the customer ("i'm such an idiot"), a third person or a thing
   ("my husband is an idiot", "this app is garbage"): ``customer`` or
   ``third party``.

Otherwise the partner. Every answer carries the words that decided it, so a
finding can say why it counts ("aimed at the partner: 'youre a'") and
``callshield detect --explain`` why a candidate did not ("'itll kill you':
anyone, not the partner").

The reader is built once per language and shared; what it learns of one
utterance (its discourse "you", its quotations) is worked out once, in
:meth:`AimReader.utterance`, and handed to every reading of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from detection.lexicon import Lists, PatternCompiler
from detection.text import Normalized

PARTNER = "partner"
CUSTOMER = "customer"
THIRD_PARTY = "third party"
ANYONE = "anyone"
QUOTED = "quoted"

QUOTE_WORDS = 8  # a quotation covers at most this many words after its verb of saying
_NEAREST_WINDOW = 6  # words before a "context" match searched for a pointer


@dataclass(frozen=True)
class Aim:
    """Whom some words are aimed at, and why.

    Attributes:
        who: ``partner``, ``customer`` (the caller about themself),
            ``third party`` (someone or something else), ``anyone`` (the
            generic "you") or ``quoted`` (reported speech).
        why: the words that decided, as normalized (e.g. ``"he goes"``).
    """

    who: str
    why: str

    @property
    def partner(self) -> bool:
        return self.who == PARTNER

    def explain(self) -> str:
        """One line for a finding or a dropped candidate."""
        if self.who == QUOTED:
            return f"reported speech: '{self.why}'"
        if self.who == PARTNER:
            return f"aimed at the partner: '{self.why}'" if self.why else "aimed at the partner (said to the listener)"
        return f"'{self.why}': {self.who}, not the partner"


@dataclass(frozen=True)
class Utterance:
    """What the reader works out once per utterance (:meth:`AimReader.utterance`).

    Attributes:
        norm: the normalized words.
        skip: indices of discourse words ("you know"): no pointer.
        quotes: ``(first, last, frame)``: word ranges (inclusive) that are a
            quotation, and the reporting words ("he goes").
    """

    norm: Normalized
    skip: frozenset[int]
    quotes: tuple[tuple[int, int, str], ...]

    def quotation(self, index: int) -> str:
        """The reporting words when word ``index`` is quoted, else ""."""
        return next((frame for first, last, frame in self.quotes if first <= index <= last), "")


class AimReader:
    """Reads whom words are aimed at; built once from a language's lists,
    immutable afterwards (shared by every call and thread).

    ``negated_before(norm, index)``: whether a negation in the words before
    word ``index`` covers it (the detector's own check), so a "you" that is
    itself negated ("i don't think you're an idiot") does not count."""

    def __init__(self, lists: Lists, compiler: PatternCompiler,
                 negated_before: Callable[[Normalized, int], bool]) -> None:
        self._negated_before = negated_before
        words = lists.words
        self._you, self._your, self._not_you = words("TARGET_YOU"), words("TARGET_YOUR"), words("TARGET_OTHER")
        self._relative, self._clause_break = words("TARGET_RELATIVE"), words("CLAUSE_BREAK")
        self._customer, self._third, self._thing = words("AGENT_CUSTOMER"), words("AGENT_THIRD"), words("AGENT_THING")
        self._stance, self._reporter = words("AGENT_STANCE"), words("REPORTER")
        self._say_now, self._say_to, self._say_to_you = words("SAY_PRESENT"), words("SAY_OBJECT"), words("SAY_TO_OBJECT")
        self._elided, self._possessive = words("SAY_AFTER_CLAUSE"), words("POSSESSIVE")
        self._say_motion, self._not_quoting = words("SAY_MOTION"), words("SAY_MOTION_NOT_BEFORE")
        self._know_object, self._not_acted_on = words("DISCOURSE_KNOW_OBJECT"), words("YOU_NOT_ACTED_ON_AFTER")
        self._object_follow, self._you_subject = words("YOU_OBJECT_BEFORE"), words("YOU_SUBJECT")
        self._article, self._copula, self._relative_words = words("ARTICLE"), words("COPULA"), words("RELATIVE_WORDS")
        self._customer_words = words("CUSTOMER_WORDS")
        self._self_tag = _phrases(compiler, "{SELF_TAG}", "aim.self_tag")
        self._say = _phrases(compiler, "{SAY_VERB}", "aim.say_verb")
        self._own_words = _phrases(compiler, "{SAY_OWN}", "aim.say_own")
        self._generic = _phrases(compiler, "{GENERIC_PLACE}", "aim.generic_place")
        self._discourse = _phrases(compiler, "{DISCOURSE_YOU}", "aim.discourse_you")

    # ------------------------------------------------------------------ public

    def utterance(self, norm: Normalized) -> Utterance:
        """Work out, once, an utterance's discourse "you" and its quotations."""
        return Utterance(norm, frozenset(self._discourse_words(norm)), tuple(self._quotations(norm)))

    def read(self, u: Utterance, first: int, last: int, *, nearest: bool = False, acted_on: bool = True) -> Aim:
        """Whom words ``first`` to ``last`` (word indices, inclusive) of ``u`` are aimed at.

        ``nearest``: the words themselves need not name anyone; the nearest
        pointer before them decides (a rule whose target is ``context``).
        ``acted_on``: another agent acting on the "you", or a generic place,
        makes it anyone (harm, touch, questions: "it'll kill you"); False for
        personal attacks, where "nobody likes you" is aimed at the partner."""
        quote = u.quotation(first)
        if quote:
            return Aim(QUOTED, quote)
        tokens = u.norm.tokens
        pointers = [i for i in range(first, last + 1) if tokens[i] in self._you and i not in u.skip]
        if not pointers and nearest:
            found = self._nearest(u, first)
            if found is None:
                tag = self._self_tagged(u.norm, last)
                # a bare insult is said to the listener, unless the customer names themself after it
                return Aim(CUSTOMER, tag) if tag else Aim(PARTNER, "")
            if not found[1].partner:
                return found[1]
            pointers = [found[0]]
        if not pointers:
            return Aim(PARTNER, "")
        return self._reading_of(u.norm, pointers[0], acted_on)

    def read_utterance(self, u: Utterance, words: list[int], *, personal: bool = False) -> Aim:
        """Whom a whole utterance is aimed at, for the semantic stage (its
        evidence is ``words``, word indices): the partner when some "you" in
        it reads as the partner; with no "you" at all, the nearest pointer
        before the evidence decides; else the reading of its first "you".
        ``personal``: a personal attack: "your" does not point at the partner
        ("your company is a joke"; it does in threats, sexual remarks and
        privacy: "your legs", "your address"), words with no "you" are aimed at
        whoever is named nearest, and others acting on "you" do not make it
        anyone ("nobody likes you")."""
        quote = u.quotation(words[0])
        if quote:
            return Aim(QUOTED, quote)
        you = self._you if personal else self._you | self._your
        pointers = [i for i, t in enumerate(u.norm.tokens) if t in you and i not in u.skip]
        if not pointers:
            # no "you": a personal attack is on whoever is named nearest ("my
            # husband is an idiot"); anything else is said to the listener
            return self.read(u, words[0], words[-1], nearest=personal)
        readings = []
        for i in pointers:
            quote = u.quotation(i)
            readings.append(Aim(QUOTED, quote) if quote else self._reading_of(u.norm, i, not personal))
        return next((aim for aim in readings if aim.partner), readings[0])

    # ------------------------------------------------------------------ checks

    def _reading_of(self, norm: Normalized, pointer: int, acted_on: bool) -> Aim:
        """The "you" at word ``pointer``: the partner, unless (``acted_on``)
        another agent acts on it, or a generic place or time before it frames
        an utterance in which the customer does not figure; the customer acting
        on it keeps it the partner."""
        if acted_on:
            kind, at = self._agent(norm, pointer)
            if kind == CUSTOMER:
                return Aim(PARTNER, _words(norm, at, pointer))
            if kind is not None:
                return Aim(kind, _words(norm, at, pointer))
            generic = self._generic.search(norm.text, 0, norm.starts[pointer])
            if generic and self._customer_words.isdisjoint(norm.tokens):
                return Aim(ANYONE, generic.group(0).strip())
        following = norm.tokens[pointer + 1:pointer + 2]
        if following and following[0] not in self._clause_break and following[0] not in self._customer:
            return Aim(PARTNER, " ".join(norm.tokens[pointer:pointer + 2]))
        return Aim(PARTNER, norm.tokens[pointer])

    def _agent(self, norm: Normalized, pointer: int) -> tuple[str | None, int]:
        """Who acts on the "you" at ``pointer``: ``customer`` (a customer
        subject earlier in its clause, "i'll have them hurt you"), ``anyone``
        (a thing is the nearest subject: "it'll kill you", "the heat just
        hits you"), ``third party`` ("they'd shoot you"), or None: the "you"
        is a subject itself ("you're ...", and a "you" followed by anything
        but what follows an object: "what a worm you are", "the pub you go
        to"), or no subject comes before it (an order, a question). A
        subject right before the "you" does not act on it ("that you ...",
        "people like you"), nor one joined to it by a verb of being ("it is
        just you", "is it just you"), nor an article with no verb between
        ("off the street you clown"). People the customer brings in act for
        the customer ("i know people who'd ... you")."""
        following = norm.tokens[pointer + 1] if pointer + 1 < len(norm.tokens) else ""
        if norm.tokens[pointer] in self._you_subject or following and following not in self._object_follow:
            return None, pointer  # "what a worm you are", "the pub you go to": "you" does something itself
        start = self._clause_start(norm, pointer)
        nearest: tuple[str | None, int] = (None, pointer)
        for j in range(pointer - 1, start - 1, -1):
            token = norm.tokens[j]
            if token in self._customer and not (j + 1 < len(norm.tokens) and norm.tokens[j + 1] in self._stance):
                return CUSTOMER, j
            if token in self._you:
                return nearest  # "you" is the subject nearer than anyone
            if (nearest[0] is None and j < pointer - 1 and norm.tokens[pointer - 1] not in self._not_acted_on
                    and self._copula.isdisjoint(norm.tokens[max(j - 1, 0):pointer])):
                if token in self._thing and (token not in self._article or j < pointer - 2):
                    nearest = (ANYONE, j)
                elif token in self._third:
                    nearest = (THIRD_PARTY, j)
                if nearest[0] is not None and not self._relative_words.isdisjoint(norm.tokens[j + 1:pointer]) and \
                        not self._customer.isdisjoint(norm.tokens[start:j]):
                    return CUSTOMER, j  # "i know people who'd ... you": the customer's people
        return nearest

    def _quotations(self, norm: Normalized) -> list[tuple[int, int, str]]:
        """Every quotation of the utterance: the words after a verb of saying
        whose speaker is someone else (or the customer, to someone else, in the
        past), up to the next clause, the customer speaking again, or
        ``QUOTE_WORDS`` words."""
        own = [(m.start(), m.end()) for m in self._own_words.finditer(norm.text)]
        out = []
        for match in self._say.finditer(norm.text):
            if any(a <= match.start() < b for a, b in own):
                continue
            say, verb_end = norm.token_index(match.start()), norm.token_index(match.end() - 1)
            speaker = self._speaker(norm, say, verb_end)
            first = verb_end + 1
            while first < len(norm.tokens) and norm.tokens[first] in self._say_to:
                first += 1  # "he told me ...", "i said to him ...": the quotation starts after whom it was told to
            if speaker is None or first >= len(norm.tokens):
                continue
            last = min(first + QUOTE_WORDS - 1, len(norm.tokens) - 1)
            for j in range(first + 1, last + 1):
                token = norm.tokens[j]
                if token in self._clause_break or token in self._customer and token not in self._possessive:
                    last = j - 1  # "... and ...", "he said it was fixed i will ...": the customer speaks again
                    break
            out.append((first, last, " ".join(norm.tokens[speaker:verb_end + 1])))
        return out

    def _speaker(self, norm: Normalized, say: int, verb_end: int) -> int | None:
        """Where the speaker of the verb of saying at words ``say`` to
        ``verb_end`` is, when the words after it are a quotation: someone else
        speaking, or the customer speaking to someone else in the past; None
        when they are the customer's words to the partner ("i told you", "i
        say ...") or when no person speaks (a thing "went up")."""
        after = norm.tokens[verb_end + 1:verb_end + 2]
        verb = norm.tokens[verb_end]
        if after and after[0] in self._you and verb in self._say_to_you:
            return None  # "i told you ...", "he asked you ...": about the partner ("he goes you are ..." is a quotation)
        if verb in self._say_motion and after and after[0] in self._not_quoting:
            return None  # "i went to the shop", "the price went up": a move, not words
        if say > 0 and norm.tokens[say - 1] in self._elided:
            # "my buddy looks at me and says ...": the subject of the clause before
            candidates = range(self._clause_start(norm, say - 1), say - 1)
        else:
            candidates = range(say - 1, max(say - 6, -1), -1)  # "the man at the shop said"
        for j in candidates:
            token = norm.tokens[j]
            if token in self._possessive or token in self._article:
                continue  # "my buddy says", "the courier told me": the buddy, the courier speak
            if token in self._you or token in self._clause_break:
                return None
            if token in self._customer:
                present = norm.tokens[say] in self._say_now and not (after and after[0] in self._say_to)
                return None if present else j
            if token in self._reporter or j > 0 and (norm.tokens[j - 1] in self._article or norm.tokens[j - 1] in self._possessive):
                return j  # a person named, or any noun after "the", "my" ("the courier")
        return None

    def _discourse_words(self, norm: Normalized) -> set[int]:
        out: set[int] = set()
        for match in self._discourse.finditer(norm.text):
            first, last = norm.token_index(match.start()), norm.token_index(match.end() - 1)
            if norm.tokens[last] == "know" and last + 1 < len(norm.tokens) and norm.tokens[last + 1] in self._know_object:
                continue  # "you know where i live"
            out.update(range(first, last + 1))
        return out

    def _clause_start(self, norm: Normalized, index: int) -> int:
        for j in range(index - 1, -1, -1):
            if norm.tokens[j] in self._clause_break:
                return j + 1
        return 0

    def _self_tagged(self, norm: Normalized, last: int) -> str:
        """The words after word ``last`` that turn it on the customer ("what a
        dummy [i am]", "such an idiot [i was]"), unless more follows them in the
        same breath ("what an idiot i am dealing with"): "" when none."""
        found = self._self_tag.match(norm.text, norm.starts[last + 1]) if last + 1 < len(norm.tokens) else None
        if not found:
            return ""
        after = norm.token_index(found.end()) if found.end() < len(norm.text) - 1 else None  # the word after the tag
        if after is not None and norm.tokens[after] not in self._clause_break and norm.tokens[after] not in self._not_you:
            return ""
        return " ".join(norm.tokens[max(last - 2, 0):last + 1]) + " " + found.group(0).strip()

    def _nearest(self, u: Utterance, first: int) -> tuple[int, Aim] | None:
        """The nearest pointer before word ``first`` in its clause, and its
        reading: "you ... idiot" the partner, "my husband is an idiot" a third
        person, "i'm such an idiot" the customer; None when there is none (a
        bare insult, said to the listener). A negated "you" ("i don't think
        you're an idiot") is the customer's opinion, not an attack."""
        norm = u.norm
        for j in range(first - 1, max(first - 1 - _NEAREST_WINDOW, -1), -1):
            token = norm.tokens[j]
            if j in u.skip:
                continue
            if token in self._you:
                if self._negated_before(norm, j):
                    return j, Aim(CUSTOMER, " ".join(norm.tokens[max(j - 3, 0):j + 1]))
                return j, Aim(PARTNER, _words(norm, j, first))
            if token in self._not_you:
                return j, Aim(CUSTOMER if token in self._customer else THIRD_PARTY, _words(norm, j, first))
            if token in self._clause_break:
                if token in self._relative and j > 0 and norm.tokens[j - 1] in self._not_you:
                    return j, Aim(THIRD_PARTY, " ".join(norm.tokens[j - 1:j + 1]))  # "the driver who came yesterday was a creep"
                break
        return None


def _words(norm: Normalized, first: int, last: int) -> str:
    """Words ``first`` to ``last`` for an explanation, elided when long."""
    if last - first <= 3:
        return " ".join(norm.tokens[first:last + 1])
    return f"{norm.tokens[first]} ... {norm.tokens[last]}"


def _phrases(compiler: PatternCompiler, source: str, where: str) -> re.Pattern:
    return compiler.compile(source, where).regex
