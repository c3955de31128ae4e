"""The harassment categories of the policy, their subtypes and default severities.

The categories come from ``policy.md`` ("Acts covered"); ``DESIGN.md`` gives
their boundaries. The severities and the ladder's levels are the kernel's
(``kernel/levels.py``), shared with the console. A site may raise or lower a category's severity in the
``[detection.severity]`` config table.
"""

from __future__ import annotations

from types import MappingProxyType

from kernel.levels import LEVELS, SEVERITIES, level_rank, severity_rank

__all__ = ["CATEGORIES", "DEFAULT_SEVERITY", "DEMAND_SUBTYPES", "JUDGED_BY_MEANING", "LEVELS", "SEVERITIES", "level_rank", "severity_rank"]

CATEGORIES: tuple[str, ...] = (
    "threat",       # violence, threats, intimidation
    "insult",       # insulting statements aimed at the partner
    "integrity",    # denying the partner's integrity or harming their reputation
    "sexual",       # sexual harassment of the partner
    "demand",       # excessive or unreasonable demands (see DEMAND_SUBTYPES)
    "repetition",   # the same request or inquiry again and again within one call
    "defamation",   # defamation on social media / the internet, or the threat of it
    "privacy",      # infringing the partner's privacy
    "shouting",     # sustained raised voice against the caller's own baseline
    "profanity",    # abusive language: obscenity and slurs, whoever they are aimed at (counted as strikes)
)

DEMAND_SUBTYPES: tuple[str, ...] = ("undue", "beyond_contract", "apology", "face_to_face")

JUDGED_BY_MEANING: tuple[str, ...] = ("threat", "insult", "integrity", "sexual", "demand", "defamation", "privacy")
"""The categories the semantic stage learns (``bench/train_semantic.py``) and may
have a threshold of their own for (``[detection.semantic_thresholds]``)."""

DEFAULT_SEVERITY = MappingProxyType({
    "threat": "critical",
    "insult": "medium",
    "integrity": "medium",
    "sexual": "high",
    "demand": "medium",
    "repetition": "low",
    "defamation": "high",
    "privacy": "high",
    "shouting": "low",
    "profanity": "low",
})
