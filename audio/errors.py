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


class MediaStreamError(AudioError):
    """A websocket media stream (Genesys AudioHook, Twilio Media Streams) broke
    its protocol, or could not be served.

    Codes: ``bad_config`` (the ``[media_streams]`` section or a key file),
    ``unauthorized`` (missing or unknown API key, bad or expired request
    signature: refused before the upgrade), ``bad_json`` (a text message that
    is not a JSON object), ``bad_message`` (a known message with missing or
    wrong fields), ``unknown_message`` (a type or event the protocol does not
    define), ``bad_seq`` (a sequence number that does not follow the last
    one), ``bad_position`` (a position that disagrees with the audio
    received), ``bad_frame`` (binary audio that is not whole samples of the
    negotiated media, or audio before the media were agreed),
    ``bad_payload`` (base64 that does not decode), ``oversized``
    (a message over ``max_message_bytes``), ``stream_lost`` (the connection
    dropped without the protocol's close: what arrived before is kept).
    """

    code = "media_stream_error"
