"""The root of callshield's exceptions.

Every stage raises a subclass of :class:`CallshieldError` with a stable
``code`` (a short snake_case string that tools and the console can match on).
Boundaries (the command line, a call session, the console's websocket handler)
turn these into one-line errors or error events and keep the call going.

The root lives in the kernel so that every package may import it and it
imports nobody.
"""

from __future__ import annotations


class CallshieldError(Exception):
    """Root of every error callshield raises on purpose."""

    code: str = "callshield_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class ConfigError(CallshieldError):
    """A config file or section that cannot be used as it is."""

    code = "bad_config"
