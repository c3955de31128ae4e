"""Websocket media streams: Genesys Cloud AudioHook and Twilio Media Streams, on one port, by path.

- :mod:`audio.media_streams.config`: the ``[media_streams]`` section;
- :mod:`audio.media_streams.signatures`: AudioHook request signatures (HTTP Message Signatures, HMAC-SHA256) and Twilio request validation (HMAC-SHA1);
- :mod:`audio.media_streams.audiohook`: the AudioHook protocol, server side, sans I/O;
- :mod:`audio.media_streams.twilio`: the Twilio Media Streams messages, sans I/O;
- :mod:`audio.media_streams.call`: a stream's call: both speakers on one time line, bounded, counted;
- :mod:`audio.media_streams.server`: the websockets server that checks, dispatches and hands calls out.

Monitor-only: neither protocol lets callshield hang up a call. Nothing here imports ``agent`` or ``console``.
"""

from __future__ import annotations

from audio.errors import MediaStreamError
from audio.media_streams.audiohook import AudioHookSession
from audio.media_streams.call import StreamCall, StreamStats
from audio.media_streams.config import MediaStreamsConfig
from audio.media_streams.server import CallHandler, MediaStreamsServer
from audio.media_streams.twilio import TwilioStream

__all__ = ["AudioHookSession", "CallHandler", "MediaStreamError", "MediaStreamsConfig", "MediaStreamsServer",
           "StreamCall", "StreamStats", "TwilioStream"]
