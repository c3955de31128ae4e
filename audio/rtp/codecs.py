"""RTP payloads to call audio: int16 mono at 8000 Hz, whatever the codec.

What callshield takes (:data:`SUPPORTED`, the names the SIP side may put in
its SDP answer, as ``a=rtpmap`` encoding name / clock rate):

=====================  ======  ==============================================
codec                  static  what happens to it
=====================  ======  ==============================================
``PCMU/8000``          0       G.711 mu-law, decoded by :mod:`audio.g711`
``PCMA/8000``          8       G.711 A-law, decoded by :mod:`audio.g711`
``G722/8000``          9       G.722 at 64 kbit/s, decoded by the ``G722``
                               package (Sippy's libg722, bit-exact ITU
                               G.722) in its 8 kHz output mode (the low
                               sub-band: 8 kHz telephone audio, as the other
                               codecs).
``telephone-event/8000``  -    RFC 4733 DTMF events: recognised, counted, not
                               audio (dropped)
``CN/8000``            13      RFC 3389 comfort noise: recognised, counted,
                               not audio (the gap it stands for is filled
                               with silence by the jitter buffer)
=====================  ======  ==============================================

Every audio codec here has an RTP clock of 8000 Hz and decodes to one 8 kHz
sample per clock tick (G.722's RTP clock is 8000 Hz by RFC 3551 §4.5.2 even
though it samples at 16 kHz; decoded at 8 kHz, one byte is one sample), so an
RTP timestamp difference is a sample count on the call's time line.

A packet whose payload type the SDP did not map is *unknown*: dropped and
counted by the stream (``unknown_payload``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import G722 as _g722  # Sippy's libg722 (PyPI ``G722``): maintained, bit-exact ITU G.722
import numpy as np

from audio.errors import RtpError
from audio.g711 import decode_alaw, decode_ulaw

__all__ = [
    "AUDIO_CODECS", "CLOCK_RATE", "STATIC_PAYLOAD_TYPES", "SUPPORTED",
    "PayloadDecoder", "PayloadKind", "codec_name", "encode_g722",
]

CLOCK_RATE = 8000
"""RTP clock (Hz) of every supported codec, and the sample rate (Hz) of the audio they decode to."""

AUDIO_CODECS: frozenset[str] = frozenset({"PCMU/8000", "PCMA/8000", "G722/8000"})
"""Codecs whose payload is call audio."""

SUPPORTED: frozenset[str] = AUDIO_CODECS | {"telephone-event/8000", "CN/8000"}
"""Every codec name a stream accepts in its ``codecs`` map (what the SDP answer may keep)."""

STATIC_PAYLOAD_TYPES: Mapping[int, str] = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000", 13: "CN/8000"}
"""RFC 3551 static payload types callshield knows (an SDP may omit their rtpmap)."""

_CANONICAL = {"PCMU": "PCMU", "PCMA": "PCMA", "G722": "G722", "TELEPHONE-EVENT": "telephone-event", "CN": "CN"}

PayloadKind = Literal["audio", "event", "comfort_noise"]


def codec_name(rtpmap: str) -> str:
    """The canonical name of an ``a=rtpmap`` value's codec part: ``encoding/clock``.

    The encoding name is case-insensitive (RFC 4566 §6: ``pcmu/8000`` is
    ``PCMU/8000``); a channel count of 1 (``PCMA/8000/1``) is dropped. Raises
    ``bad_codec`` for a value that is not ``name/clock[/channels]`` or has
    more than one channel. The result may still be unsupported: check it
    against :data:`SUPPORTED`.
    """
    parts = rtpmap.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0] or not (parts[1].isascii() and parts[1].isdigit()) or len(parts[1]) > 6 or (len(parts) == 3 and parts[2].strip() not in ("", "1")):
        raise RtpError(f"rtpmap codec {rtpmap!r} is not name/clock[/1]", code="bad_codec")
    name = _CANONICAL.get(parts[0].upper(), parts[0])
    return f"{name}/{int(parts[1])}"


class PayloadDecoder:
    """Decodes the payloads of one media stream to 8 kHz int16 samples.

    ``codecs`` maps payload type (0..127) to codec name (any spelling
    :func:`codec_name` accepts); every name must be in :data:`SUPPORTED`
    (``bad_codec`` otherwise, at construction). G.722 keeps decoder state
    between packets: packets must be decoded in playout order, and
    :meth:`reset` starts fresh state for a new sender (SSRC).
    """

    def __init__(self, codecs: Mapping[int, str]) -> None:
        self.codecs: dict[int, str] = {}
        for payload_type, name in codecs.items():
            if not isinstance(payload_type, int) or not 0 <= payload_type <= 127:
                raise RtpError(f"payload type {payload_type!r} outside 0..127", code="bad_codec")
            if not isinstance(name, str):
                raise RtpError(f"codec of payload type {payload_type} must be a name like 'PCMU/8000', not {name!r}", code="bad_codec")
            canonical = codec_name(name)
            if canonical not in SUPPORTED:
                raise RtpError(f"codec {name!r} (payload type {payload_type}) is not supported; supported: {', '.join(sorted(SUPPORTED))}", code="bad_codec")
            self.codecs[payload_type] = canonical
        self._g722: dict[int, object] = {}

    def kind(self, payload_type: int) -> PayloadKind | None:
        """``audio``, ``event`` (telephone-event), ``comfort_noise``, or None for a payload type not in the map."""
        name = self.codecs.get(payload_type)
        if name is None:
            return None
        if name in AUDIO_CODECS:
            return "audio"
        return "event" if name.startswith("telephone-event/") else "comfort_noise"

    def samples(self, payload_type: int, payload: bytes) -> int:
        """How many 8 kHz samples (RTP clock ticks) an audio payload stands for: one per byte for every supported codec."""
        return len(payload)

    def decode(self, payload_type: int, payload: bytes) -> np.ndarray:
        """int16 samples at 8000 Hz, ``samples(...)`` of them; ``payload_type`` must be an audio type (``kind == "audio"``)."""
        name = self.codecs[payload_type]
        if name == "PCMU/8000":
            return decode_ulaw(payload)
        if name == "PCMA/8000":
            return decode_alaw(payload)
        if name == "G722/8000":
            decoder = self._g722.get(payload_type)
            if decoder is None:
                decoder = self._g722[payload_type] = _g722.G722(CLOCK_RATE, 64000)
            out = np.frombuffer(decoder.decode(payload), dtype=np.int16)
            n = len(payload)  # one 8 kHz sample per byte; hold to it whatever the library returns
            return out[:n] if len(out) >= n else np.concatenate([out, np.zeros(n - len(out), dtype=np.int16)])
        raise KeyError(f"payload type {payload_type} ({name}) is not audio")

    def reset(self) -> None:
        """A new sender: forget codec state (G.722's predictor)."""
        self._g722.clear()


def encode_g722(samples: np.ndarray) -> bytes:
    """int16 8 kHz samples as G.722 (64 kbit/s, one byte per sample) from a fresh
    encoder: for senders and tests."""
    return bytes(_g722.G722(CLOCK_RATE, 64000).encode(np.ascontiguousarray(samples, dtype=np.int16)))
