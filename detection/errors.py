"""Errors of the detection stage (bad config, unreadable lexicon data)."""

from __future__ import annotations

from kernel.errors import CallshieldError


class DetectionError(CallshieldError):
    """The detector cannot be built: a bad ``[detection]`` table or broken data files."""

    code = "detection_error"
