"""How each speaker of a call is decoded: the decoding plan, speed profiles, and when to ask for a partial.

Speech recognition is almost all of the hardware a site buys, and the two
speakers do not need the same service:

- the **customer**'s words drive alerts in real time: always decoded live,
  with partial hypotheses screened while they speak;
- the **partner**'s words only give context (the partner asking to hear a
  request again, for repetition; QA's transcript): none must arrive within a
  second. ``[models.decoding] partner`` says how they are decoded:

  ========== ==================================================================
  ``idle``   (default) finals only, no partials, decoded during the call in a
             separate pool of idle-priority threads (``nice`` 19), behind the
             customer: with CPU to spare it is as live as ``finals``; under
             load the customer goes first and the partner's backlog grows,
             bounded by ``partner_backlog_s`` (the oldest speech dropped,
             counted, reported to supervisors as a ``partner_transcript_dropped``
             notice). Every partner utterance still reaches the console before
             ``call_ended``: the call ends once the backlog is decoded.
  ``after``  the same pool, but decoding starts when the call's audio ends
             (a recorded-then-transcribed partner; the backlog bound applies).
  ``finals`` finals only, no partials, in the customer's pool, in turn.
  ``live``   like the customer: partials and finals (the cost of yesterday).
  ``off``    not transcribed at all (repetition then never sees the
             partner asking to repeat; QA sees the customer's side only).
  ========== ==================================================================

- ``speed``: a decoder speed profile (``fast``, ``balanced``, ``accurate``,
  from ``speed_profiles.toml`` beside this file, or ``model``: the model's own
  settings) overlaid on the model's ``conf/model.conf`` at load by
  :func:`overlay_model`, without touching the installed model.

Warm recognizers (``warm_recognizers``): a recognizer whose stream ended is
kept for the next stream at the same sample rate
(:meth:`models.transcriber.SharedModel.checkout`). A Vosk model with a
lookahead graph (``HCLr.fst`` + ``Gr.fst``, as the small Korean one) composes
its decoding graph while it decodes and caches what it composed, per
recognizer; a new recognizer pays for that composing with its first
seconds of speech (``bench/asr_throughput.py --warm-curve``: 0.20 CPU s per
s over the first 10 s, 0.07 to 0.08 from 40 s on; ``--compare``: about half
the CPU of a short call). Vosk starts a new feature pipeline and decoder after each
``FinalResult``, so only that cache crosses from one call to the next (no
speaker adaptation, no audio): the words are a new recognizer's, up to the
order in which Kaldi sums equal scores (states are numbered as first
reached), which tips a near-tie now and then, as between two runs of a new
recognizer. A recognizer is retired after an hour of audio
(:data:`~models.transcriber.RECOGNIZER_MAX_FED_S`), which also bounds its cache.

Partials (:class:`PartialPacer`): one is asked for only when new voiced audio
reached the recognizer since the last, at most once per
``partial_interval_ms`` of fed audio; while the hypothesis does not change the
interval doubles, up to ``partial_max_interval_ms``, and it starts again at
the shortest with each utterance or change.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from models.errors import ModelError

PartnerPlan = Literal["idle", "after", "finals", "live", "off"]
PARTNER_PLANS: tuple[str, ...] = ("idle", "after", "finals", "live", "off")
MODEL_SETTINGS = "model"
"""The speed profile that keeps the model's own decoder settings (no overlay)."""
PROFILE_KEYS = ("beam", "max-active", "lattice-beam")
PROFILES_FILE = Path(__file__).with_name("speed_profiles.toml")


@cache
def speed_profiles() -> dict[str, dict[str, float]]:
    """``speed_profiles.toml``: profile name -> decoder option -> value."""
    table = tomllib.loads(PROFILES_FILE.read_text(encoding="utf-8"))
    for name, options in table.items():
        unknown = set(options) - set(PROFILE_KEYS)
        if unknown or not all(isinstance(v, (int, float)) and v > 0 for v in options.values()):
            raise ModelError(f"{PROFILES_FILE}: profile {name!r} may set only positive {', '.join(PROFILE_KEYS)}", code="bad_config")
    return table


@dataclass(frozen=True)
class DecodingPlan:
    """The ``[models.decoding]`` section: how each speaker is decoded (see the module docstring).

    Attributes:
        partner: the partner's plan (``idle``, ``after``, ``finals``, ``live``, ``off``).
        speed: the decoder speed profile (``fast``, ``balanced``, ``accurate``, ``model``).
        partial_interval_ms: the shortest time between two partials of a
            speaker, in ms of fed (voiced) audio; the screen shows ~3 a second.
        partial_max_interval_ms: the longest, reached by doubling while the
            hypothesis does not change.
        partner_backlog_s: seconds of the partner's voiced audio that may
            wait for an idle core (``idle``, ``after``); beyond it the oldest
            is dropped and counted.
        warm_recognizers: recognizers kept between calls, at most (see
            "Warm recognizers" above): each holds the part of the decoding
            graph it has composed, tens to a few hundred MB; 0: every stream
            gets a new recognizer (the cost of yesterday).
    """

    partner: PartnerPlan = "idle"
    speed: str = "balanced"
    partial_interval_ms: int = 300
    partial_max_interval_ms: int = 1200
    partner_backlog_s: float = 120.0
    warm_recognizers: int = 16

    def __post_init__(self) -> None:
        if self.partner not in PARTNER_PLANS:
            raise ModelError(f"[models.decoding] partner must be one of {', '.join(PARTNER_PLANS)}, not {self.partner!r}", code="bad_config")
        speeds = (MODEL_SETTINGS, *speed_profiles())
        if self.speed not in speeds:
            raise ModelError(f"[models.decoding] speed must be one of {', '.join(speeds)}, not {self.speed!r}", code="bad_config")
        if not 50 <= self.partial_interval_ms <= self.partial_max_interval_ms <= 10_000:
            raise ModelError("[models.decoding] needs 50 <= partial_interval_ms <= partial_max_interval_ms <= 10000, "
                             f"not {self.partial_interval_ms} and {self.partial_max_interval_ms}", code="bad_config")
        if not 1 <= self.partner_backlog_s <= 3600:
            raise ModelError(f"[models.decoding] partner_backlog_s must be 1 to 3600 seconds, not {self.partner_backlog_s!r}", code="bad_config")
        if not isinstance(self.warm_recognizers, int) or isinstance(self.warm_recognizers, bool) or not 0 <= self.warm_recognizers <= 10_000:
            raise ModelError(f"[models.decoding] warm_recognizers must be a whole number 0 to 10000, not {self.warm_recognizers!r}", code="bad_config")

    @property
    def partner_deferred(self) -> bool:
        """The partner is decoded in the idle pool, behind the customer."""
        return self.partner in ("idle", "after")


class PartialPacer:
    """When to ask the recognizer for a partial (a decode pass over the lattice so far).

    Counts in samples of fed audio. A partial is due when audio was fed since
    the last one (never twice for the same audio) and at least the current
    interval has passed; the interval starts at ``shortest`` with each
    utterance, doubles after a partial whose text did not change, and drops
    back to ``shortest`` after one that did, never above ``longest``.
    """

    def __init__(self, sample_rate: int, shortest_ms: int, longest_ms: int) -> None:
        self.shortest = max(1, sample_rate * shortest_ms // 1000)
        self.longest = max(self.shortest, sample_rate * longest_ms // 1000)
        self.interval = self.shortest
        self.last = 0  # fed index at the last partial (or the utterance's start)

    def start(self, fed: int) -> None:
        """An utterance starts at fed index ``fed``."""
        self.interval, self.last = self.shortest, fed

    def due(self, fed: int) -> bool:
        return fed > self.last and fed - self.last >= self.interval

    def heard(self, fed: int, changed: bool) -> None:
        """A partial was taken at fed index ``fed``; ``changed``: its text differed from the last."""
        self.last = fed
        self.interval = self.shortest if changed else min(self.interval * 2, self.longest)


_OPTION = re.compile(r"^\s*--([A-Za-z0-9_.-]+)\s*=")


def overlaid_conf(original: str, options: dict[str, float]) -> str:
    """``original`` (a Kaldi ``model.conf``: one ``--key=value`` a line) with
    ``options`` set: a key already there is replaced in place, a new one appended."""
    lines, seen = [], set()
    for line in original.splitlines():
        match = _OPTION.match(line)
        if match and match.group(1) in options:
            key = match.group(1)
            seen.add(key)
            line = f"--{key}={_number(options[key])}"
        lines.append(line)
    lines += [f"--{key}={_number(value)}" for key, value in options.items() if key not in seen]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def overlay_model(model_dir: Path, speed: str, into: Path) -> Path:
    """A model folder in ``into`` that is ``model_dir`` with profile ``speed``'s
    decoder settings: a rewritten ``conf/model.conf``, and symbolic links to
    every other file and folder (the graph is hundreds of MB: never copied).
    Nothing in ``model_dir`` is written. Returns the new folder."""
    options = speed_profiles().get(speed)
    if options is None:
        raise ModelError(f"no speed profile {speed!r} (known: {', '.join(speed_profiles())})", code="bad_config")
    model_dir = Path(model_dir).resolve()
    out = Path(into) / f"{model_dir.name}-{speed}"
    out.mkdir(parents=True)
    for entry in model_dir.iterdir():
        if entry.name != "conf":
            os.symlink(entry, out / entry.name)
    (out / "conf").mkdir()
    for entry in (model_dir / "conf").iterdir():
        if entry.name != "model.conf":
            os.symlink(entry, out / "conf" / entry.name)
    original = (model_dir / "conf" / "model.conf").read_text(encoding="utf-8")
    (out / "conf" / "model.conf").write_text(overlaid_conf(original, options), encoding="utf-8")
    return out


def overlay_folder() -> tempfile.TemporaryDirectory:
    """A temporary folder for :func:`overlay_model` (removed with the object)."""
    return tempfile.TemporaryDirectory(prefix="callshield-model-")
