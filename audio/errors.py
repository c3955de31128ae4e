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


class AudioSocketError(AudioError):
    """A leg broke the AudioSocket protocol or could not be served.

    Codes: ``bad_frame`` (unknown type, a length that type cannot have, or
    a frame over the decoder's length limit), ``truncated_frame``
    (connection dropped mid-frame), ``no_uuid`` (first frame was not a
    UUID), ``bad_uuid`` (UUID does not follow the pairing convention),
    ``unsupported_rate`` (slin above 48 kHz), ``rate_mismatch`` (a leg
    changed rate, or its rate differs from the other leg's),
    ``asterisk_error`` (Asterisk sent an error frame), ``idle`` (no frame for
    ``idle_timeout_s``), ``duplicate_leg`` (a second customer or partner leg),
    ``bad_closing_message`` (the closing WAV cannot be played), ``bad_config``
    (the ``[audiosocket]`` section).
    """

    code = "audiosocket_error"


class RtpError(AudioError):
    """An RTP datagram, a media setting or an SRTP key that cannot be used.

    Codes: ``truncated`` (shorter than the fixed 12-byte header, or cut inside
    its CSRC list or header extension), ``bad_version`` (version field not 2),
    ``bad_padding`` (padding count 0 or longer than the packet's payload
    area), ``srtp_failed`` (SRTP authentication or decryption failed, or the
    packet is too short to carry an SRTP tag), ``srtp_replay`` (libsrtp's
    replay check refused it: a duplicate, or older than its window),
    ``bad_crypto`` (an SDES ``a=crypto`` value that cannot be used: unknown
    suite, bad key, MKI or session parameters), ``srtp_unavailable``
    (pylibsrtp is not installed), ``bad_codec`` (a codec name not in
    :data:`audio.rtp.codecs.SUPPORTED`), ``no_port`` (no free even port in the
    range), ``bad_config`` (a setting out of range).
    """

    code = "rtp_error"
