"""RTP media: the audio of calls that arrive over SIP (SIPREC recording sessions, plain SIP).

- :mod:`audio.rtp.packet`: the RTP packet, its parser and RTCP recognition;
- :mod:`audio.rtp.codecs`: payload types to 8 kHz audio (PCMU, PCMA, G.722), :data:`SUPPORTED`;
- :mod:`audio.rtp.jitter`: the sans-I/O jitter buffer (reorder, loss, wraparound, resync);
- :mod:`audio.rtp.srtp`: SDES keys and libsrtp sessions;
- :mod:`audio.rtp.stream`: one received media stream on one UDP port;
- :mod:`audio.rtp.call`: a call's streams merged into one call's audio;
- :mod:`audio.rtp.sender`: packetize and send RTP (tests, benches).

The signalling (SIP, SDP, SIPREC metadata) lives elsewhere and calls these.
``docs/rtp.md`` says what is counted and why.
"""

from __future__ import annotations

from audio.errors import RtpError
from audio.rtp.call import MediaCall
from audio.rtp.codecs import AUDIO_CODECS, CLOCK_RATE, STATIC_PAYLOAD_TYPES, SUPPORTED, PayloadDecoder, codec_name
from audio.rtp.jitter import JitterBuffer, PlayoutFrame
from audio.rtp.packet import RtpExtension, RtpPacket, is_rtcp, parse_rtp
from audio.rtp.sender import RtpSender, packetize, wav_samples
from audio.rtp.srtp import SRTP_SUITES, SrtpKey, srtp_available
from audio.rtp.stream import RtpStats, RtpStream

__all__ = [
    "AUDIO_CODECS", "CLOCK_RATE", "SRTP_SUITES", "STATIC_PAYLOAD_TYPES", "SUPPORTED",
    "JitterBuffer", "MediaCall", "PayloadDecoder", "PlayoutFrame", "RtpError", "RtpExtension", "RtpPacket",
    "RtpSender", "RtpStats", "RtpStream", "SrtpKey", "codec_name", "is_rtcp", "packetize", "parse_rtp",
    "srtp_available", "wav_samples",
]
