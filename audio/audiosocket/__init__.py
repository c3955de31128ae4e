"""Asterisk AudioSocket: live call audio in, the end of a call back out.

- :mod:`audio.audiosocket.frames`: the wire format and the one sans-I/O frame decoder;
- :mod:`audio.audiosocket.config`: the ``[audiosocket]`` section and the leg UUID convention;
- :mod:`audio.audiosocket.call`: a call's legs, its audio on one time line, its end (closing message, hang-up);
- :mod:`audio.audiosocket.server`: the TCP server that reads legs, pairs them into calls and hands the calls out.

The names below are the package's public face (``from audio.audiosocket import AudioSocketServer``).
Nothing here imports ``agent`` or ``console``.
"""

from __future__ import annotations

from audio.audiosocket.call import DTMF_KEPT, IncomingCall, IngressNotice, Leg, LegStats, NoticeSink, load_closing_message
from audio.audiosocket.config import AudioSocketConfig, LegPairing
from audio.audiosocket.frames import (
    ACCEPTED_RATES,
    ASTERISK_ERRORS,
    AUDIO_RATES,
    FRAME_MS,
    HEADER,
    KIND_FOR_RATE,
    MAX_PAYLOAD,
    Frame,
    FrameDecoder,
    Kind,
    encode_audio,
    encode_frame,
    encode_hangup,
    encode_uuid,
)
from audio.audiosocket.server import AudioSocketServer, CallHandler
from audio.errors import AudioSocketError

__all__ = [
    "ACCEPTED_RATES", "ASTERISK_ERRORS", "AUDIO_RATES", "DTMF_KEPT", "FRAME_MS", "HEADER", "KIND_FOR_RATE", "MAX_PAYLOAD",
    "AudioSocketConfig", "AudioSocketError", "AudioSocketServer", "CallHandler", "Frame", "FrameDecoder",
    "IncomingCall", "IngressNotice", "Kind", "Leg", "LegPairing", "LegStats", "NoticeSink",
    "encode_audio", "encode_frame", "encode_hangup", "encode_uuid", "load_closing_message",
]
