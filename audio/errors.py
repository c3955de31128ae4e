"""The errors of sound: reading, decoding, segmenting, and the ``[audio]`` settings.

Each is a :class:`~kernel.errors.CallshieldError` with a stable ``code``.
"""

from __future__ import annotations

from kernel.errors import CallshieldError


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
