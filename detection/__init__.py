"""callshield detection: taxonomy, lexicons, rules, repetition, shouting, escalation.

Pure and synchronous: data files are read once when a :class:`Detector` is
built; screening does no I/O and reads no clock (time is audio time, seconds).

    detector = Detector(DetectionConfig.from_table(config.section("detection")))
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
