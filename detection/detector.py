"""Screening one customer utterance against the lexicon's rules.

What makes a rule match a finding, in order:

1. its pattern matches the normalized words;
2. it is not negated (abusive language excepted: "i don't give a shit" is
   still said): no negation word ("not", "never", "dont", ...) inside
   the match unless the pattern asks for that word, nor in the three words
   before it within the same clause ("i'm not threatening you"). A negation
   followed by a word that turns it around ("i can't stop thinking about
   ...", "i can't wait to ...") or making a suggestion ("why don't you ...")
   does not count. When the
   match opens its own clause with a subject ("i'll ...", "you're ..."), a
   negation before it counts only through a verb of saying or thinking
   ("i don't think you're ..."), not across clauses ("if this isn't fixed
   i'll ...");
3. its last word is not inside an exception of its category: an idiom
   ("i'll shoot you an email") or a legitimate request ("can i talk to a
   supervisor"); an exception earlier in the match does not excuse what
   follows ("i'll come to your office and hurt someone");
4. for threats, personal attacks, sexual remarks and privacy: it is aimed
   at the partner (:mod:`detection.aim`): not reported speech ("he goes
   you're an idiot"), not the generic "you" ("it'll kill you"), not the
   customer themself or a third person ("i feel like an idiot", "my
   husband is an idiot"; rules whose ``target`` is ``context`` look at the
   words before the match for that). Reported speech excuses every category
   but abusive language;
5. with the encoder loaded (final utterances): no word of it is read in a
   harmless sense ("my feet are killing me", :mod:`detection.senses`).

Every finding carries its evidence (the matched words, as the customer said
them), the rule id and, where check 4 applies, whom it is aimed at (``why``),
so a supervisor sees why it fired; ``screen(dropped=[])`` lists what the
checks ruled out, and why.

With a sentence encoder (``encoder=``, and ``[detection] semantic`` on), the
semantic stage (:mod:`detection.semantic`) then judges the utterance by
meaning for the categories the rules found nothing for; its evidence words
(found by leaving each word out) must pass checks 2 to 5 too. Its findings'
rule is ``semantic.<category>``. The encoder reads the utterance once for
both: the sentence embedding and each word's vector in context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from detection.aim import QUOTED, Aim, AimReader, Utterance as AimUtterance
from detection.config import DetectionConfig
from detection.encoder import Encoder, Reading
from detection.errors import DetectionError
from detection.findings import Dropped, Finding
from detection.lexicon import (
    Exception_,
    Lists,
    PatternCompiler,
    Rule,
    lexicon_dir,
    load_exceptions,
    load_lists,
    load_rules,
)
from detection.ladder import load_suggestions
from detection.repetition import RepetitionWords
from detection.semantic import Head, SemanticStage, Verdict
from detection.senses import SenseReading, Senses, load_examples
from detection.text import Normalized, normalize, runs, without_hesitations

_NEGATION_WINDOW = 3
_PERSONAL_ATTACK = frozenset({"insult", "integrity"})
_AIMED = frozenset({"threat", "insult", "integrity", "sexual", "privacy"})  # harassment only when aimed at the partner
CLAUSE_MIN_WORDS = 4  # a clause of a long turn the semantic stage judges alone has at least this many words
_WORDING = frozenset({"profanity"})  # judged on the words said, not on what they claim: no negation or quotation excuses them
# (a word sense may: lists.tsv holds as obscene only words without a clean one, and senses.tsv names the few slurs that have one)

_Held = tuple[Finding, int, int]  # a finding and its evidence's [first, last) in the normalized text
_Span = tuple[int, int, frozenset[str]]  # an exception's [first, last) in the normalized text, its categories (empty: all)


@dataclass(frozen=True)
class _Compiled:
    rule: Rule
    own_words: frozenset[str]  # words the pattern itself names (never count as negation)


class Detector:
    """Screens single utterances. Loads its language's data files once (lexicon,
    repetition words, suggested sentences, used by :class:`CallScreen`);
    immutable afterwards, so one instance is shared by every call and thread.

    ``encoder``: a loaded sentence encoder (:class:`detection.encoder.Encoder`;
    the commands hand in :class:`models.encoder.SentenceEncoder`) for the
    semantic stage (used when ``config.semantic``); None: the rules alone.
    ``head``: the stage's trained weights (default: the language's
    committed model; a cross-validation fold passes its own).
    Commands build it with ``cli.settings.Settings.detector``, which looks
    the encoder up and loads it."""

    def __init__(self, config: DetectionConfig | None = None, *, encoder: Encoder | None = None, head: Head | None = None) -> None:
        self.config = config or DetectionConfig()
        folder = lexicon_dir(self.config.language)
        self.lists: Lists = load_lists(folder)
        compiler = PatternCompiler(self.lists)
        rules = load_rules(folder, compiler)
        exceptions = load_exceptions(folder, compiler)
        off = frozenset(self.config.disabled_rules)
        unknown = sorted(off - {r.id for r in rules} - {e.id for e in exceptions})
        if unknown:
            raise DetectionError(f"[detection] disabled_rules: {', '.join(map(repr, unknown))} "
                                 f"{'is' if len(unknown) == 1 else 'are'} not a rule of {folder / 'rules.tsv'} "
                                 f"nor an exception of {folder / 'exceptions.tsv'}", code="bad_config")
        self._rules = tuple(_Compiled(r, _pattern_words(r.pattern.source, self.lists)) for r in rules if r.id not in off)
        self.aim = AimReader(self.lists, compiler, self._negated_before)
        self._exceptions: tuple[Exception_, ...] = tuple(e for e in exceptions if e.id not in off)
        self._negation = self.lists.words("NEGATION")
        self._clause_break = self.lists.words("CLAUSE_BREAK")
        self._subjects = self.lists.words("SUBJECT")
        self._bridges = self.lists.words("NEGATION_BRIDGE")
        self._disabled = frozenset(self.config.disabled)
        self._negation_cancel = self._words_if_listed("NEGATION_CANCEL")
        self._suggestion = self._words_if_listed("NEGATION_SUGGESTION")
        self._coordinators = self._words_if_listed("NEGATION_COORDINATOR")
        self._verbal = self._words_if_listed("NEGATION_VERBAL")
        self._not_a_verb = self._words_if_listed("NOT_A_VERB") | self._subjects | self._clause_break
        self._fillers = self._words_if_listed("FILLER")
        self._like_after = self._words_if_listed("FILLER_LIKE_AFTER")
        self._like_not_before = self._words_if_listed("FILLER_LIKE_NOT_BEFORE")
        self._filler_tails = tuple(tuple(e.split()) for e in (self.lists.get("FILLER_TAIL") if "FILLER_TAIL" in self.lists else ()))
        self.repetition_words = RepetitionWords.load(folder)
        self.suggestions = load_suggestions(self.config.language)
        self.semantic: SemanticStage | None = None
        self.senses: Senses | None = None
        if encoder is not None and self.config.semantic:
            self.semantic = SemanticStage(encoder, head or Head.load(self.config.language), self.config.semantic_threshold,
                                          self.config.semantic_thresholds)
            self.senses = Senses(load_examples(folder), self.semantic.encoder)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(c.rule for c in self._rules)

    def screen(self, text: str, *, start: float = 0.0, end: float = 0.0, semantic: bool = True,
               dropped: list[Dropped] | None = None) -> list[Finding]:
        """Findings in one utterance (best per category and subtype), in text order.

        ``start``/``end``: the utterance's seconds of audio time, copied into
        each finding. ``semantic``: False skips the semantic stage and word
        senses (live partials: the rules alone, in microseconds). ``dropped``:
        a list that receives every candidate the checks ruled out, with the
        reason (``callshield detect --explain``)."""
        norm = self.normalized(text)
        if not norm.tokens:
            return []
        u = _Utterance(self, text, norm, start, end, dropped, semantic and self.semantic is not None)
        best: dict[tuple[str, str | None], _Held] = {}
        for compiled in self._rules:
            rule = compiled.rule
            if rule.category in self._disabled or rule.score < self.config.min_score:
                continue
            anchors = rule.pattern.anchors
            if anchors is not None and anchors.isdisjoint(u.present):
                continue
            for match in rule.pattern.regex.finditer(norm.text):
                first, last = match.start(), match.end() - 1
                if last <= first:
                    continue
                words = range(norm.token_index(first), norm.token_index(last - 1) + 1)
                if rule.category not in _WORDING and self._negated(norm, first, last, compiled.own_words):
                    u.drop(rule.category, rule.id, words, "negated")
                    continue
                tail = norm.text.rfind(" ", first, last) + 1 or first  # start of the match's last word
                if _excused(u.exceptions, (tail,), rule.category):
                    u.drop(rule.category, rule.id, words, "an idiom or a legitimate request")
                    continue
                aim = self.aim.read(u.aim, words[0], words[-1], nearest=rule.target == "context",
                                    acted_on=rule.category not in _PERSONAL_ATTACK)
                if not _counts(rule.category, aim):
                    u.drop(rule.category, rule.id, words, aim.explain())
                    continue
                ordinary = u.ordinary(words)  # abusive language too: a slur with a clean sense ("dick van dyke")
                if ordinary is not None:
                    u.drop(rule.category, rule.id, words, ordinary.explain())
                    continue
                finding = u.finding(rule.category, rule.subtype, rule.score, words, rule.id, aim)
                key = (rule.category, rule.subtype)
                held = best.get(key)
                if held is None or finding.score > held[0].score:
                    best[key] = (finding, first, last)
                break  # one match per rule is enough
        if u.encoder_on:
            self._second_opinion(u, best)
        return [held[0] for held in sorted(best.values(), key=lambda item: item[1])]

    def _second_opinion(self, u: "_Utterance", best: dict[tuple[str, str | None], _Held]) -> None:
        """The semantic stage, for categories the rules found nothing for (insult
        and integrity count as one). Its evidence words must pass the rules' own
        checks: none negated (nor a negation itself), none inside an idiom or
        legitimate request, aimed as its category needs, none in a harmless sense."""
        found = {category for category, _ in best}
        if found & _PERSONAL_ATTACK:
            found |= _PERSONAL_ATTACK
        wanted = [c for c in self.semantic.categories if c not in found and c not in self._disabled]
        fired = [v for v in self.semantic.judge(u.norm.tokens, wanted, embedding=u.reading.embedding) if v.fired]
        if not fired and self.config.semantic_clause_threshold < 1.0:
            # a long turn: one clause may harass inside ordinary talk (issue 11, round 5); judge_clauses
            # never goes below the stage's own thresholds
            fired = self.semantic.judge_clauses(u.norm.tokens, self._clauses(u.norm.tokens), wanted,
                                                self.config.semantic_clause_threshold)
        for verdict in fired:  # a fired verdict always has evidence words
            self._semantic_finding(u, verdict, best)

    def _clauses(self, tokens: tuple[str, ...]) -> list[tuple[int, int]]:
        """A long turn's clauses, ``(first, last)`` word indices: a new one begins at
        a clause word ("and", "but", "because", "if", ...) once the current one has
        :data:`CLAUSE_MIN_WORDS`; a short tail joins the clause before it. One
        clause (a short turn) when there is nothing to split."""
        clauses: list[tuple[int, int]] = []
        start = 0
        for i, token in enumerate(tokens):
            if token in self._clause_break and i - start >= CLAUSE_MIN_WORDS:
                clauses.append((start, i - 1))
                start = i
        if clauses and len(tokens) - start < CLAUSE_MIN_WORDS:
            clauses[-1] = (clauses[-1][0], len(tokens) - 1)
        else:
            clauses.append((start, len(tokens) - 1))
        return clauses

    def _semantic_finding(self, u: "_Utterance", verdict: Verdict, best: dict[tuple[str, str | None], _Held]) -> None:
        norm = u.norm
        words = sorted({i for first, last in verdict.words for i in range(first, last + 1)})
        rule = f"semantic.{verdict.category}"
        if any(norm.tokens[i] in self._negation for i in words) or self._negated_in_clause(norm, words[0]):
            u.drop(verdict.category, rule, words, "negated")
            return  # sentence embeddings read negation poorly: a negation in the evidence or its clause silences it
        if _excused(u.exceptions, [norm.starts[i] for i in words], verdict.category):
            u.drop(verdict.category, rule, words, "an idiom or a legitimate request")
            return
        aim = self.aim.read_utterance(u.aim, words, personal=verdict.category in _PERSONAL_ATTACK)
        if not _counts(verdict.category, aim):
            u.drop(verdict.category, rule, words, aim.explain())
            return
        ordinary = u.ordinary(words)
        if ordinary is not None:
            u.drop(verdict.category, rule, words, ordinary.explain())
            return
        finding = u.finding(verdict.category, None, round(verdict.probability, 3), words, rule, aim)
        best[(verdict.category, None)] = (finding, norm.starts[words[0]], norm.starts[words[-1]] + len(norm.tokens[words[-1]]))

    def normalized(self, text: str) -> Normalized:
        """The words the rules (and the semantic stage) see: normalized, fillers and restarts dropped."""
        norm = normalize(text)
        if len(norm.tokens) > 1:
            norm = without_hesitations(norm, self._fillers, self._like_after, self._filler_tails, self._like_not_before)
        return norm

    def _words_if_listed(self, name: str) -> frozenset[str]:
        """A list of ``lists.tsv`` as a set, empty when the language has none."""
        return self.lists.words(name) if name in self.lists else frozenset()

    # ------------------------------------------------------------------ checks

    def _negated(self, norm: Normalized, first: int, last: int, own_words: frozenset[str]) -> bool:
        inside = norm.text[first:last].split()
        if any(
            t in self._negation
            and t not in own_words
            and not (k + 1 < len(inside) and inside[k + 1] in self._negation_cancel)
            and not (k > 0 and inside[k - 1] in self._suggestion)
            for k, t in enumerate(inside)
        ):
            return True
        return self._negated_before(norm, norm.token_index(first))

    def _negated_before(self, norm: Normalized, index: int) -> bool:
        """A negation in the words before word ``index``, in the same clause."""
        if norm.tokens[index] in self._clause_break:
            return False  # "i'm not hanging up until ...": the match opens its own clause
        starts_clause = norm.tokens[index] in self._subjects
        for j in range(index - 1, max(index - 1 - _NEGATION_WINDOW, -1), -1):
            token = norm.tokens[j]
            if (
                token in self._negation
                and norm.tokens[j + 1] not in self._negation_cancel
                and not (j > 0 and norm.tokens[j - 1] in self._suggestion)
            ):
                if not starts_clause:
                    return True
                # "i don't think you're ..." negates the match; "if this isn't
                # fixed i'll ..." negates another clause.
                return any(t in self._bridges for t in norm.tokens[j + 1:index])
            if token in self._clause_break:
                break
        return False

    def _negated_in_clause(self, norm: Normalized, index: int) -> bool:
        """A negation anywhere earlier in word ``index``'s clause (the semantic
        stage's evidence has no fixed shape, so no fixed window): "i'm not
        saying you sound like ..." yes; across a new subject only through a
        verb of saying or thinking, so "if you don't fix this i'll find you"
        is not negated; across "and"/"or" only to a verb coordinated with a
        negated auxiliary or infinitive (:meth:`_coordinates_verbs`)."""
        subject_between = False
        coordinator = None  # the first "and"/"or" the reach went back across
        for j in range(index - 1, -1, -1):
            token = norm.tokens[j]
            if token in self._clause_break:
                if not self._coordinates_verbs(norm.tokens, j):
                    return False
                coordinator = j if coordinator is None else coordinator
                continue
            if (
                token in self._negation
                and norm.tokens[j + 1] not in self._negation_cancel
                and not (j > 0 and norm.tokens[j - 1] in self._suggestion)
            ):
                if coordinator is not None and not any(t in self._verbal for t in norm.tokens[j:coordinator]):
                    return False  # "i dont care and ...": no auxiliary or infinitive for the next verb to share
                return not subject_between or any(t in self._bridges for t in norm.tokens[j + 1:index])
            subject_between = subject_between or token in self._subjects
        return False

    def _coordinates_verbs(self, tokens: tuple[str, ...], j: int) -> bool:
        """Word ``j`` is "and"/"or" joining a verb to the verb before it, so
        the two share an auxiliary and its negation ("not going to sit here and
        insult you"): the next word is no subject, determiner or clause word."""
        return tokens[j] in self._coordinators and j + 1 < len(tokens) and tokens[j + 1] not in self._not_a_verb

    def _exception_spans(self, norm: Normalized, present: frozenset[str]) -> list[_Span]:
        spans = []
        for exc in self._exceptions:
            anchors = exc.pattern.anchors
            if anchors is not None and anchors.isdisjoint(present):
                continue
            for match in exc.pattern.regex.finditer(norm.text):
                if match.end() - 1 > match.start():
                    spans.append((match.start(), match.end() - 1, exc.categories))
        return spans


def _counts(category: str, aim: Aim) -> bool:
    """Whether words of ``category``, aimed as ``aim`` says, count: threats,
    personal attacks, sexual remarks and privacy only when aimed at the
    partner; quoted words of any category but abusive language are not the
    customer's own (:mod:`detection.aim`)."""
    if category in _AIMED:
        return aim.partner
    return aim.who != QUOTED or category in _WORDING


class _Utterance:
    """One utterance as :meth:`Detector.screen` checks it; each part is worked
    out once, when first needed: the exceptions it holds, whom its words are
    aimed at, and the encoder's reading (finals only)."""

    def __init__(self, detector: "Detector", text: str, norm: Normalized, start: float, end: float,
                 dropped: list[Dropped] | None, encoder_on: bool) -> None:
        self.detector, self.text, self.norm = detector, text, norm
        self.start, self.end, self.dropped, self.encoder_on = start, end, dropped, encoder_on
        self.present = frozenset(norm.tokens)

    @cached_property
    def exceptions(self) -> list[_Span]:
        return self.detector._exception_spans(self.norm, self.present)

    @cached_property
    def aim(self) -> AimUtterance:
        return self.detector.aim.utterance(self.norm)

    @cached_property
    def reading(self) -> Reading:
        return self.detector.semantic.encoder.read(self.norm.tokens)

    def ordinary(self, words) -> SenseReading | None:
        """A harmless sense the words are read in, on finals (:mod:`detection.senses`)."""
        senses = self.detector.senses
        if not self.encoder_on or senses is None or not senses.covers(self.norm.tokens[i] for i in words):
            return None
        return senses.ordinary(self.norm.tokens, words, self.reading.words)

    def drop(self, category: str, rule: str, words, reason: str) -> None:
        """Note a candidate the checks ruled out (once: a rule of several patterns may match the same words)."""
        if self.dropped is not None:
            dropped = Dropped(category, rule, " ".join(self.norm.tokens[i] for i in words), reason)
            if dropped not in self.dropped:
                self.dropped.append(dropped)

    def finding(self, category: str, subtype: str | None, score: float, words, rule: str, aim: Aim) -> Finding:
        """A finding on words ``words`` (indices, in order), evidence as the customer said them."""
        norm, text = self.norm, self.text

        def span(a: int, b: int) -> tuple[int, int]:  # words a to b, as offsets into the caller's text
            return norm.original_span(norm.starts[a], norm.starts[b] + len(norm.tokens[b]))

        evidence = " ".join(text[slice(*span(a, b))] for a, b in runs(words))
        return Finding(
            category=category,
            subtype=subtype,
            severity=self.detector.config.severity_of(category),
            score=score,
            span=span(words[0], words[-1]),
            evidence=evidence,
            rule=rule,
            start=self.start,
            end=self.end,
            text=text,
            why=aim.explain() if category in _AIMED else "",
        )


def _excused(exceptions: list[_Span], offsets, category: str) -> bool:
    """Whether a word starting at one of ``offsets`` lies inside an exception of ``category``."""
    return any(a <= offset < b and (not cats or category in cats) for a, b, cats in exceptions for offset in offsets)


def _pattern_words(source: str, lists: Lists) -> frozenset[str]:
    """Every word a pattern names, directly or through its lists."""
    words: set[str] = set()
    for name in re.findall(r"\{([A-Z0-9_]+)\}", source):
        for entry in lists.get(name):
            words.update(entry.split())
    stripped = re.sub(r"\{[A-Z0-9_]+\}", " ", source)
    words.update(re.findall(r"[a-z0-9]+", stripped))
    return frozenset(words)
