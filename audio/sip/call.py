"""A call that arrived over SIP: its dialog (who, which streams) and its RTP media as one call's audio.

:class:`RtpMedia` opens one :class:`~audio.rtp.stream.RtpStream` per stream
the dialog takes (on ``[siprec]`` ``host``, in the RTP port range) and
gathers them in a :class:`~audio.rtp.call.MediaCall`; the server answers the
INVITE with their ports and hands the :class:`SipCall` out. The consumer
iterates :meth:`SipCall.audio` (8 kHz chunks, both speakers on one time
line); a BYE, CANCEL or timeout ends it after the streams played out what
they hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from audio.notices import IngressNotice, NoticeSink
from audio.frames import AudioChunk
from audio.sip.config import SipConfig
from audio.sip.dialog import Dialog
from audio.sip.sdp import Crypto


class SipCall:
    """One recorded call. ``id``: the call id (the SIP Call-ID); ``kind``:
    ``siprec`` or ``sip``; ``partner``: the partner's AoR or extension ('' if
    unknown); ``ports``: our RTP port per offered ``m=`` index; ``crypto``: our
    SDES answer per SRTP stream. ``end_reason``: ``bye``, ``cancelled``,
    ``no_ack``, ``media_timeout``, ``closed``... (None while live)."""

    sample_rate = 8000
    """Hz of every chunk (RTP audio is decoded to 8 kHz)."""

    def __init__(self, dialog: Dialog, media, ports: dict[int, int], crypto: dict[int, Crypto] | None = None,
                 notify: NoticeSink | None = None) -> None:
        self.dialog = dialog
        self.media = media
        """The :class:`~audio.rtp.call.MediaCall` (its ``stats()`` per speaker)."""
        self.ports = ports
        self.crypto = crypto or {}
        self.end_reason: str | None = None
        self._notify = notify
        self._held: frozenset[str] = frozenset()
        self._packets_seen = -1
        self._heard_at: float | None = None

    @property
    def id(self) -> str:
        return self.dialog.id

    @property
    def kind(self) -> str:
        return self.dialog.kind

    @property
    def partner(self) -> str:
        return self.dialog.partner

    @property
    def speakers(self) -> tuple[str, ...]:
        return tuple(stream.speaker for stream in self.dialog.streams)

    async def audio(self) -> AsyncIterator[AudioChunk]:
        """Every chunk of every stream, on the call's time line, until the call ends."""
        async for chunk in self.media.audio():
            yield chunk

    def end(self, reason: str) -> None:
        """The call is over (BYE, CANCEL, timeout, shutdown): the media plays out and ends. Idempotent."""
        if self.end_reason is None:
            self.end_reason = reason
        self.media.end(reason)

    def consumer_gone(self) -> None:
        self.media.consumer_gone()

    def updated(self) -> None:
        """A re-INVITE was answered: report hold and resume."""
        held = frozenset(self.dialog.held)
        for speaker in sorted(held - self._held):
            self._notice("on_hold", f"call {self.id}: the {speaker}'s stream is on hold (no audio expected)", speaker)
        for speaker in sorted(self._held - held):
            self._notice("resumed", f"call {self.id}: the {speaker}'s stream resumed", speaker)
        self._held = held
        self._heard_at = None  # a hold or resume restarts the media timeout

    def silent_for(self, now: float) -> float:
        """Seconds since any RTP packet arrived on the call (0 while every stream is on hold)."""
        if self._held and len(self._held) >= len(self.dialog.streams):
            self._heard_at = now
            return 0.0
        packets = sum(stats.packets for stats in self.media.stats().values())
        if packets != self._packets_seen or self._heard_at is None:
            self._packets_seen, self._heard_at = packets, now
        return now - self._heard_at

    def _notice(self, code: str, message: str, speaker: str | None = None) -> None:
        if self._notify is not None:
            self._notify(IngressNotice(code, message, self.id, speaker))


class RtpMedia:
    """Opens a call's RTP streams (:mod:`audio.rtp`) for the SIP server."""

    def __init__(self, config: SipConfig) -> None:
        from audio.rtp import SUPPORTED, srtp_available

        self.config = config
        self.supported_codecs: frozenset[str] = frozenset(SUPPORTED)
        self.srtp = self._usable_key if srtp_available() else None

    @staticmethod
    def _usable_key(value: str) -> bool:
        """Whether :class:`~audio.rtp.srtp.SrtpKey` takes an ``a=crypto`` value (suite, key, no MKI...)."""
        from audio.errors import RtpError
        from audio.rtp import SrtpKey

        try:
            SrtpKey.from_sdes(value)
        except RtpError:
            return False
        return True

    async def open(self, dialog: Dialog, notify: NoticeSink) -> SipCall:
        """Bind a port per stream (all or none) and gather them; raises ``RtpError`` / ``OSError``."""
        from audio.rtp import MediaCall, RtpStream, SrtpKey

        origin = asyncio.get_running_loop().time()
        streams, ports, crypto = [], {}, {}
        try:
            for offered in dialog.streams:
                key = None
                if offered.crypto is not None:
                    c = offered.crypto
                    key = SrtpKey.from_sdes(f"{c.tag} {c.suite} {c.key_params}")
                    ours = SrtpKey.generate(c.suite, c.tag).to_sdes().split()
                    crypto[offered.index] = Crypto(c.tag, ours[1], ours[2])
                stream = await RtpStream.open(
                    self.config.host, port_range=self.config.port_range, speaker=offered.speaker, codecs=offered.codecs,
                    origin=origin, jitter_ms=self.config.jitter_ms, srtp=key, on_notice=notify, call_id=dialog.id)
                streams.append(stream)
                ports[offered.index] = stream.port
        except BaseException:
            for stream in streams:
                stream.close()
            raise
        media = MediaCall(dialog.id, streams, notify=notify)
        return SipCall(dialog, media, ports, crypto, notify)
