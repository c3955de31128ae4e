"""The root of callshield's exceptions.

Every stage raises a subclass of :class:`CallshieldError` with a stable
``code`` (a short snake_case string that tools and the console can match on).
Boundaries (the CLI, a call session, the console's websocket handler) turn
these into one-line errors or error events and keep the call going.

The root lives here because ``audio`` is the lowest room of the house: every
other package may import it, it imports nobody.
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


class AudioError(CallshieldError):
    """Sound could not be read, decoded or segmented."""

    code = "audio_error"


class WavError(AudioError):
    """A WAV file that cannot be read. ``code`` says why, one of:

    ``not_found`` (no such file), ``empty`` (zero bytes), ``not_wav`` (not
    RIFF/WAVE), ``truncated`` (cut inside the header, before any sample),
    ``unsupported_encoding`` (not PCM16, mu-law or A-law: 8/24/32-bit PCM,
    float, ADPCM, RIFX, RF64, ...), ``unsupported_rate`` (outside 8000..48000
    Hz), ``bad_header`` (fields that contradict each other), ``read_failed``
    (the operating system could not read it).
    """

    code = "bad_wav"


class AudioConfigError(AudioError):
    """The ``[audio]`` config section, or a setting passed in code, is wrong."""

    code = "bad_config"


class ConfigError(CallshieldError):
    """A config file or section that cannot be used as it is."""

    code = "bad_config"
