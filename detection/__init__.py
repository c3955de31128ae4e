"""callshield detection: taxonomy, lexicons, rules, the semantic stage,
repetition, shouting, escalation.

Pure and synchronous: data files are read once when a :class:`Detector` is
built; screening does no I/O and reads no clock (time is audio time, seconds).
The semantic stage costs milliseconds per final utterance (numpy; it releases
the GIL), so the agent runs final utterances in a "detect" executor.

    detector = settings.detector()          # cli.settings: the config's [detection], encoder loaded
    detector = Detector(DetectionConfig())  # or: the rules alone
    call = CallScreen(detector)
    screening = call.hear("customer", "you stupid idiot", start=3.2, end=4.0)
    screening.findings, screening.level_change, call.level
"""

from detection.call import CallScreen
from detection.config import DetectionConfig
from detection.detector import Detector
from detection.errors import DetectionError
from detection.findings import Finding, LevelChange, Screening
from detection.taxonomy import CATEGORIES, DEFAULT_SEVERITY, DEMAND_SUBTYPES, LEVELS, SEVERITIES

__all__ = [
    "CATEGORIES",
    "CallScreen",
    "DEFAULT_SEVERITY",
    "DEMAND_SUBTYPES",
    "DetectionConfig",
    "DetectionError",
    "Detector",
    "Finding",
    "LEVELS",
    "LevelChange",
    "SEVERITIES",
    "Screening",
]
