"""The SIP user agent server of a recorder, sans I/O: requests in, responses and call events out.

:class:`SipCore` holds the server transactions and dialogs. The server
(:mod:`audio.sip.server`) hands it each message with the peer it came from
and the time (``now``, seconds on any monotonic clock: the core reads no
clock); the core returns what to do: :class:`Send` a response, or tell the
media side a call was :class:`Offered`, :class:`Updated` or :class:`Ended`.
An offered call is answered when the media side calls :meth:`SipCore.accept`
with the RTP ports it opened (or :meth:`SipCore.refuse`).

What it answers:

- INVITE (new dialog): ``100 Trying`` at once, then ``200 OK`` with the SDP
  answer (``a=recvonly`` per stream, ``a=label`` kept) once accepted; ``488``
  for an offer with no audio stream in a codec we decode; ``503`` with
  ``Retry-After`` beyond ``max_calls``; ``400`` for an unusable body. A
  SIPREC INVITE (``Require: siprec`` or ``+sip.src`` in Contact) carries
  ``application/rs-metadata+xml`` beside the SDP; anything else is a plain
  SIP "listen" call.
- re-INVITE / UPDATE in a dialog: answered on the same ports (hold:
  ``a=inactive``), metadata updates merged; :class:`Updated`.
- ACK: ends the 200 OK's retransmissions (UDP: RFC 3261 timer G, T1 doubling
  up to T2); a call not acknowledged within ``no_ack_timeout_s`` ends.
- BYE: ``200``, :class:`Ended`. CANCEL: ``200``, and ``487`` for the INVITE
  if not answered yet. OPTIONS: ``200``.
- ``481`` for a request naming a dialog we do not have; ``405`` for methods we
  do not serve; ``400`` for a malformed request that can still be answered
  (its Via, From, To, Call-ID and CSeq readable). Anything else is dropped.
  Every one is counted in :attr:`SipCore.counts`.
- Retransmitted requests are answered from their transaction (the last
  response sent), never processed again.
"""

from __future__ import annotations

import itertools
import secrets
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from audio.frames import Speaker
from audio.sip.config import SipConfig
from audio.sip.message import (
    SipError,
    SipMessage,
    _parse_head,
    body_parts,
    header_params,
    media_type,
    name_addr,
    parse_message,
    response,
)
from audio.sip.metadata import Metadata, parse_metadata
from audio.sip.sdp import (
    Crypto,
    MediaDescription,
    SessionDescription,
    StreamAnswer,
    accepted_formats,
    answer_direction,
    build_answer,
    parse_sdp,
)
from audio.sip.speakers import assign_speakers

T1 = 0.5
"""RFC 3261 timer T1, seconds (first retransmission interval of a 200 OK over UDP)."""
T2 = 4.0
"""RFC 3261 timer T2, seconds (longest retransmission interval)."""
TRANSACTION_LIFE = 32.0
"""Seconds a finished transaction is kept to answer retransmissions (64*T1)."""

NOT_AUDIO = frozenset({"TELEPHONE-EVENT/8000", "CN/8000"})
"""Codecs a stream may carry beside its audio, never instead of it."""

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"


@dataclass(frozen=True)
class Peer:
    """Where a message came from and where its responses go: ``transport``
    (``udp`` / ``tcp``), the remote ``address`` (host, port), and for TCP the
    ``connection`` id (responses go back on the same connection)."""

    transport: str
    address: tuple[str, int]
    connection: int | None = None


@dataclass(frozen=True)
class Send:
    """Send ``data`` to ``peer``."""

    data: bytes
    peer: Peer


@dataclass(frozen=True)
class OfferedStream:
    """An offered audio stream we take: its ``index`` among the offer's ``m=``
    lines, its ``speaker``, the remote ``media`` section, the payload types we
    decode (``codecs``: payload type -> encoding name) and the SDES ``crypto``
    line chosen (None: plain RTP)."""

    index: int
    speaker: Speaker
    media: MediaDescription
    codecs: dict[int, str]
    crypto: Crypto | None = None


@dataclass(eq=False)
class Dialog:
    """One recorded call (a SIP dialog). ``id``: the call id the agent reports
    (the SIP Call-ID, made unique with the SBC's tag if needed); ``kind``:
    ``siprec`` or ``sip``; ``streams``: the streams taken; ``partner``: the
    partner's AoR or extension ('' if unknown); ``notices``: (code, message)
    pairs about the call for the console (how speakers were chosen, streams
    refused)."""

    id: str
    sip_call_id: str
    remote_tag: str
    local_tag: str
    kind: str
    peer: Peer
    offer: SessionDescription
    metadata: Metadata | None
    streams: tuple[OfferedStream, ...]
    partner: str
    caller: str
    callee: str
    notices: list[tuple[str, str]] = field(default_factory=list)
    state: str = "offered"
    """``offered`` (100 sent), ``answered`` (200 sent, no ACK), ``confirmed``, ``ended``."""
    answers: list[StreamAnswer] = field(default_factory=list)
    held: frozenset[Speaker] = frozenset()
    """Speakers whose stream the SRC holds (``inactive``/``recvonly`` offered)."""
    end_reason: str | None = None
    _invite: SipMessage | None = None
    _answer_sdp: bytes = b""
    _session: int = 0
    _version: int = 0
    _retransmit: "_Retransmit | None" = None


@dataclass(frozen=True)
class Offered:
    """A new call: open the media of ``dialog.streams`` and call :meth:`SipCore.accept` (or :meth:`SipCore.refuse`)."""

    dialog: Dialog


@dataclass(frozen=True)
class Updated:
    """A re-INVITE / UPDATE was answered: ``dialog.held`` and ``dialog.metadata`` may have changed."""

    dialog: Dialog


@dataclass(frozen=True)
class Ended:
    """The call is over: ``reason`` is ``bye``, ``cancelled``, ``no_ack``, ``refused`` or ``media_timeout``."""

    dialog: Dialog
    reason: str


Action = Send | Offered | Updated | Ended


@dataclass
class _Transaction:
    request: SipMessage
    peer: Peer
    last: bytes | None
    started: float


@dataclass
class _Retransmit:
    data: bytes
    peer: Peer
    interval: float
    due: float
    give_up: float


COUNTS = ("requests", "responses_ignored", "malformed", "bad_request", "retransmissions", "calls_offered", "calls_refused",
          "not_acceptable", "no_dialog", "not_allowed", "cancelled", "no_ack", "bye", "options", "reinvites", "denied")
"""What :attr:`SipCore.counts` counts (each starts at 0)."""


def is_siprec(request: SipMessage) -> bool:
    """Whether an INVITE is from a session recording client (RFC 7866: ``Require: siprec`` or ``+sip.src``)."""
    if "siprec" in request.option_tags("Require"):
        return True
    return any("+sip.src" in contact.lower() for contact in request.get_all("Contact"))


class SipCore:
    """The recorder's SIP dialogs and transactions (see the module doc).

    ``contact``: (host, port) for our Contact header; ``srtp``: None when the
    media side decrypts no SRTP, else whether it can use an ``a=crypto`` value
    (SDES: suite, key, lifetime, MKI; the first usable line of a stream is taken); ``supported_codecs``: the codecs it takes,
    ``NAME/clock`` (``audio.rtp.codecs.SUPPORTED``); a stream is taken when at
    least one of them is audio (not ``telephone-event`` or ``CN``).
    ``lingering``: calls whose dialog has ended but that still count against
    ``max_calls`` (the agent is still transcribing and screening their audio:
    a flood of short calls must not build an unbounded backlog)."""

    def __init__(self, config: SipConfig, *, contact: tuple[str, int],
                 supported_codecs: Iterable[str] = ("PCMU/8000", "PCMA/8000", "telephone-event/8000"),
                 srtp: Callable[[str], bool] | None = None, lingering: Callable[[], int] | None = None) -> None:
        self.config = config
        self.contact = contact
        self.supported_codecs = tuple(sorted(supported_codecs))
        self.srtp = srtp
        self._lingering = lingering or (lambda: 0)
        self.dialogs: dict[tuple[str, str], Dialog] = {}
        """Live dialogs by (Call-ID, the SBC's From tag)."""
        self.counts: Counter[str] = Counter({name: 0 for name in COUNTS})
        """``requests``, ``responses_ignored``, ``malformed``, ``bad_request`` (400 sent), ``retransmissions``,
        ``calls_offered``, ``calls_refused`` (503), ``not_acceptable`` (488), ``no_dialog`` (481),
        ``not_allowed`` (405), ``cancelled``, ``no_ack``, ``bye``, ``options``, ``reinvites``, ``denied`` (allow_from)."""
        self._transactions: OrderedDict[tuple[str, str, str], _Transaction] = OrderedDict()
        self._max_transactions = 8 * config.max_calls + 256
        self._by_id: dict[str, Dialog] = {}
        self._ids = itertools.count(1)

    # ---- input

    def receive(self, data: bytes, peer: Peer, now: float) -> list[Action]:
        """One datagram (UDP) or framed message (TCP) from ``peer``."""
        if not self.config.allowed(peer.address[0]):
            self.counts["denied"] += 1
            return []
        try:
            message = parse_message(data)
        except SipError as exc:
            return self._malformed(data, peer, exc)
        return self.handle(message, peer, now)

    def handle(self, message: SipMessage, peer: Peer, now: float) -> list[Action]:
        """One parsed message from ``peer`` (the server's TCP framer parses them itself)."""
        if not message.is_request:
            self.counts["responses_ignored"] += 1  # we send no requests
            return []
        self.counts["requests"] += 1
        try:
            missing = [name for name in ("Via", "From", "To", "Call-ID", "CSeq") if not message.get(name)]
            if missing:
                raise SipError(f"missing {', '.join(missing)}")
            _, cseq_method = message.cseq
            if cseq_method != message.method and message.method not in ("ACK", "CANCEL"):
                raise SipError(f"CSeq method {cseq_method} does not match {message.method}")
        except SipError as exc:
            return self._bad_request(message, peer, exc)
        method = message.method
        key = self._transaction_key(message)
        if method != "ACK":
            known = self._transactions.get(key)
            if known is not None:
                self.counts["retransmissions"] += 1
                return [Send(known.last, peer)] if known.last is not None else []
        try:
            if method == "INVITE":
                return self._invite(message, peer, now, key)
            if method == "ACK":
                return self._ack(message)
            if method == "BYE":
                return self._bye(message, peer, now, key)
            if method == "CANCEL":
                return self._cancel(message, peer, now, key)
            if method == "OPTIONS":
                self.counts["options"] += 1
                return self._respond(message, peer, now, key, 200, headers=(("Allow", ALLOW), ("Accept", "application/sdp, multipart/mixed, application/rs-metadata+xml"), ("Supported", "siprec")))
            if method in ("UPDATE", "INFO", "NOTIFY", "PRACK"):
                dialog = self._dialog_of(message)
                if dialog is None:
                    self.counts["no_dialog"] += 1
                    return self._respond(message, peer, now, key, 481)
                if method == "UPDATE" and message.body:
                    return self._reoffer(dialog, message, peer, now, key)
                return self._respond(message, peer, now, key, 200, to_tag=dialog.local_tag)
            self.counts["not_allowed"] += 1
            return self._respond(message, peer, now, key, 405, headers=(("Allow", ALLOW),))
        except SipError as exc:
            return self._bad_request(message, peer, exc)

    def tick(self, now: float) -> list[Action]:
        """Retransmit unacknowledged 200 OKs (UDP), end calls never acknowledged, forget old transactions."""
        actions: list[Action] = []
        for dialog in list(self.dialogs.values()):
            timer = dialog._retransmit
            if timer is None:
                continue
            if now >= timer.give_up:
                self.counts["no_ack"] += 1
                actions += self._end(dialog, "no_ack")
            elif now >= timer.due:
                actions.append(Send(timer.data, timer.peer))
                timer.interval = min(timer.interval * 2, T2)
                timer.due = now + timer.interval
        while self._transactions:
            key, oldest = next(iter(self._transactions.items()))
            if now - oldest.started < TRANSACTION_LIFE:
                break
            del self._transactions[key]
        return actions

    # ---- the media side's answers

    def accept(self, dialog: Dialog, ports: dict[int, int], now: float, *, crypto: dict[int, Crypto] | None = None) -> list[Action]:
        """Answer ``dialog``'s INVITE with 200 OK: ``ports[index]`` is our RTP port for
        each offered stream taken (``crypto[index]``: our SDES line for an SRTP one).
        Nothing if the call ended meanwhile (CANCEL)."""
        if dialog.state != "offered" or dialog._invite is None:
            return []
        taken = {stream.index: stream for stream in dialog.streams}
        dialog.answers = [
            StreamAnswer(ports[i], tuple(taken[i].codecs), answer_direction(media.direction), (crypto or {}).get(i))
            if i in taken and ports.get(i) else StreamAnswer(0)
            for i, media in enumerate(dialog.offer.media)
        ]
        dialog._answer_sdp = self._answer_sdp(dialog, dialog.offer)
        invite, dialog._invite = dialog._invite, None
        data = self._final(invite, dialog, 200, now, body=dialog._answer_sdp)
        dialog.state = "answered"
        if dialog.peer.transport == "udp":
            dialog._retransmit = _Retransmit(data, dialog.peer, T1, now + T1, now + self.config.no_ack_timeout_s)
        else:
            dialog._retransmit = _Retransmit(data, dialog.peer, float("inf"), float("inf"), now + self.config.no_ack_timeout_s)
        return [Send(data, dialog.peer)]

    def refuse(self, dialog: Dialog, status: int, now: float, reason: str | None = None, *, retry_after: int | None = None) -> list[Action]:
        """Answer ``dialog``'s INVITE with an error (no RTP port free: 503) and forget the call."""
        if dialog.state != "offered" or dialog._invite is None:
            return []
        invite, dialog._invite = dialog._invite, None
        headers = (("Retry-After", str(retry_after)),) if retry_after else ()
        data = self._final(invite, dialog, status, now, reason, headers=headers)
        return [Send(data, dialog.peer), *self._end(dialog, "refused")]

    def end(self, dialog: Dialog, reason: str) -> list[Action]:
        """End a call from our side (media timeout, shutdown): forget it (no BYE is sent: the SBC times out its leg)."""
        return self._end(dialog, reason)

    @property
    def live_calls(self) -> int:
        return len(self.dialogs)

    def has_dialog(self, dialog_id: str) -> bool:
        """Whether the call ``dialog_id`` is still a live dialog."""
        return dialog_id in self._by_id

    # ---- requests

    def _invite(self, request: SipMessage, peer: Peer, now: float, key) -> list[Action]:
        to_tag = header_params(request.get("To") or "").get("tag")
        if to_tag:
            dialog = self._dialog_of(request)
            if dialog is None or dialog.local_tag != to_tag:
                self.counts["no_dialog"] += 1
                return self._respond(request, peer, now, key, 481)
            return self._reoffer(dialog, request, peer, now, key)
        from_tag = header_params(request.get("From") or "").get("tag", "")
        if (request.call_id, from_tag) in self.dialogs:  # a new branch of a call we have: a loop or a fork
            return self._respond(request, peer, now, key, 482)
        if len(self.dialogs) + self._lingering() >= self.config.max_calls:
            self.counts["calls_refused"] += 1
            return self._respond(request, peer, now, key, 503, headers=(("Retry-After", "30"),))
        siprec = is_siprec(request)
        sdp, metadata = self._bodies(request, siprec)
        if sdp is None:
            self.counts["not_acceptable"] += 1
            return self._respond(request, peer, now, key, 488, "No SDP offer")
        offer = parse_sdp(sdp)
        streams, refused = self._take_streams(offer)
        if not streams:
            self.counts["not_acceptable"] += 1
            return self._respond(request, peer, now, key, 488, "No audio stream in a codec we decode",
                                 headers=(("Warning", f'304 callshield "decoded: {", ".join(self.supported_codecs)}"'),))
        # Two voices at most: the first stream of each speaker is taken.
        labels = [offer.media[i].label if offer.media[i].label is not None else str(i) for i, _, _ in streams]
        if len(streams) > 2:
            refused.append(f"{len(streams) - 2} stream(s) beyond the first two")
            streams, labels = streams[:2], labels[:2]
        assignment = assign_speakers(self.config, labels, metadata)
        taken = tuple(OfferedStream(i, speaker, media, codecs, crypto)
                      for (i, codecs, crypto), speaker, media in zip(streams, assignment.speakers, (offer.media[i] for i, _, _ in streams)))
        if len(taken) == 2 and taken[0].speaker == taken[1].speaker:
            taken = taken[:1]
            refused.append("a second stream from the same speaker")
        caller, callee = name_addr(request.get("From") or ""), name_addr(request.get("To") or "")
        partner = assignment.partner
        if not siprec:  # plain SIP: the extension dialed says whose call it is (sip:1001@callshield)
            partner = callee.user
        dialog = Dialog(
            id=self._call_id(request.call_id), sip_call_id=request.call_id, remote_tag=from_tag,
            local_tag=secrets.token_hex(6), kind="siprec" if siprec else "sip", peer=peer, offer=offer, metadata=metadata,
            streams=taken, partner=partner, caller=caller.uri, callee=callee.uri, _invite=request,
            _session=secrets.randbits(31), _version=1,
        )
        if len(taken) == 1:
            dialog.notices.append(("mixed_audio", f"{dialog.kind.upper()} call {dialog.id}: one stream, both voices mixed; "
                                                  f"everything in it is screened as the {taken[0].speaker}'s speech ([siprec] mixed_speaker)"))
        else:
            dialog.notices.append(("speakers", f"{dialog.kind.upper()} call {dialog.id}: streams {', '.join(f'{labels[k]}={s.speaker}' for k, s in enumerate(taken))} ({assignment.how})"))
        for what in refused:
            dialog.notices.append(("stream_refused", f"call {dialog.id}: not recorded: {what}"))
        self.dialogs[(request.call_id, from_tag)] = dialog
        self._by_id[dialog.id] = dialog
        self.counts["calls_offered"] += 1
        actions: list[Action] = self._respond(request, peer, now, key, 100)
        actions.append(Offered(dialog))
        return actions

    def _reoffer(self, dialog: Dialog, request: SipMessage, peer: Peer, now: float, key) -> list[Action]:
        self.counts["reinvites"] += 1
        sdp, metadata = self._bodies(request, dialog.kind == "siprec")
        if sdp is not None:
            offer = parse_sdp(sdp)
            by_index = {stream.index: stream for stream in dialog.streams}
            answers, held = [], set()
            for i, media in enumerate(offer.media):
                old = dialog.answers[i] if i < len(dialog.answers) else StreamAnswer(0)
                formats = accepted_formats(media, self.supported_codecs) if media.kind == "audio" and media.port else ()
                if old.port and any(self._codec(media, pt) not in NOT_AUDIO for pt in formats):
                    answers.append(StreamAnswer(old.port, formats, answer_direction(media.direction), old.crypto))
                    if not media.sends and i in by_index:
                        held.add(by_index[i].speaker)
                else:
                    answers.append(StreamAnswer(0))
                    if i in by_index:
                        held.add(by_index[i].speaker)
            dialog.offer, dialog.answers, dialog.held = offer, answers, frozenset(held)
            dialog._version += 1
            dialog._answer_sdp = self._answer_sdp(dialog, offer)
        if metadata is not None:
            dialog.metadata = metadata if dialog.metadata is None else dialog.metadata.merged(metadata)
        data = self._final(request, dialog, 200, now, body=dialog._answer_sdp)
        if request.method == "INVITE" and peer.transport == "udp":
            dialog._retransmit = _Retransmit(data, peer, T1, now + T1, now + self.config.no_ack_timeout_s)
        return [Send(data, peer), Updated(dialog)]

    def _ack(self, request: SipMessage) -> list[Action]:
        dialog = self._dialog_of(request)
        if dialog is not None and dialog.state in ("answered", "confirmed"):
            dialog.state = "confirmed"
            dialog._retransmit = None
        return []  # an ACK is never answered

    def _bye(self, request: SipMessage, peer: Peer, now: float, key) -> list[Action]:
        dialog = self._dialog_of(request)
        if dialog is None:
            self.counts["no_dialog"] += 1
            return self._respond(request, peer, now, key, 481)
        self.counts["bye"] += 1
        actions = self._respond(request, peer, now, key, 200, to_tag=dialog.local_tag)
        return actions + self._end(dialog, "bye")

    def _cancel(self, request: SipMessage, peer: Peer, now: float, key) -> list[Action]:
        invite_key = (request.call_id, request.branch, "INVITE")
        pending = self._transactions.get(invite_key)
        if pending is None:
            self.counts["no_dialog"] += 1
            return self._respond(request, peer, now, key, 481)
        actions = self._respond(request, peer, now, key, 200)
        dialog = self._dialog_of(pending.request)
        if dialog is not None and dialog.state == "offered" and dialog._invite is not None:
            self.counts["cancelled"] += 1
            invite, dialog._invite = dialog._invite, None
            actions.append(Send(self._final(invite, dialog, 487, now), dialog.peer))
            actions += self._end(dialog, "cancelled")
        return actions

    # ---- helpers

    def _bodies(self, request: SipMessage, siprec: bool) -> tuple[bytes | None, Metadata | None]:
        sdp = metadata = None
        for part in body_parts(request):
            if part.content_type == "application/sdp" and sdp is None:
                sdp = part.body
            elif part.content_type == "application/rs-metadata+xml" and metadata is None:
                metadata = parse_metadata(part.body)
        kind = media_type(request.get("Content-Type"))
        if request.body and sdp is None and kind not in ("application/sdp",) and not kind.startswith("multipart/") and metadata is None:
            raise SipError(f"unsupported body type {kind!r}", code="bad_body")
        return sdp, metadata

    def _take_streams(self, offer: SessionDescription) -> tuple[list[tuple[int, dict[int, str], Crypto | None]], list[str]]:
        taken, refused = [], []
        for i, media in enumerate(offer.media):
            if media.kind != "audio" or media.port == 0:
                if media.port:
                    refused.append(f"a {media.kind} stream")
                continue
            crypto = None
            if "SAVP" in media.proto.upper():
                usable = self.srtp
                crypto = next((c for c in media.crypto if usable(f"{c.tag} {c.suite} {c.key_params}")), None) if usable else None
                if crypto is None:
                    refused.append(f"stream {media.label or i}: SRTP ({media.proto}) {'with no suite we decrypt' if self.srtp else 'is not supported'}")
                    continue
            formats = accepted_formats(media, self.supported_codecs)
            codecs = {pt: "/".join(map(str, media.encoding(pt))) for pt in formats}
            if all(name.upper() in NOT_AUDIO for name in codecs.values()):
                refused.append(f"stream {media.label or i}: no codec we decode")
                continue
            taken.append((i, codecs, crypto))
        return taken, refused

    @staticmethod
    def _codec(media: MediaDescription, pt: int) -> str:
        name, rate = media.encoding(pt) or ("", 0)
        return f"{name}/{rate}".upper()

    def _answer_sdp(self, dialog: Dialog, offer: SessionDescription) -> bytes:
        return build_answer(offer, dialog.answers, address=self.config.media_address or self.contact[0],
                            session_id=dialog._session, version=dialog._version)

    def _contact(self, dialog: Dialog, transport: str) -> str:
        host, port = self.contact
        host = f"[{host}]" if ":" in host else host
        srs = ";+sip.srs" if dialog.kind == "siprec" else ""
        return f"<sip:callshield@{host}:{port};transport={transport}>{srs}"

    def _final(self, request: SipMessage, dialog: Dialog, status: int, now: float, reason: str | None = None, *,
               headers: tuple[tuple[str, str], ...] = (), body: bytes = b"") -> bytes:
        extra = (("Contact", self._contact(dialog, dialog.peer.transport)), ("Allow", ALLOW), ("Server", "callshield")) + headers
        if dialog.kind == "siprec":
            extra += (("Supported", "siprec"),)
        message = response(request, status, reason, to_tag=dialog.local_tag, headers=extra, body=body,
                           content_type="application/sdp" if body else None)
        data = message.encode()
        self._remember(self._transaction_key(request), request, dialog.peer, data, now)
        return data

    def _respond(self, request: SipMessage, peer: Peer, now: float, key, status: int, reason: str | None = None, *,
                 to_tag: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> list[Action]:
        if status >= 200 and to_tag is None:
            to_tag = secrets.token_hex(6)
        data = response(request, status, reason, to_tag=to_tag, headers=(("Server", "callshield"),) + headers).encode()
        self._remember(key, request, peer, data, now)
        return [Send(data, peer)]

    def _remember(self, key, request: SipMessage, peer: Peer, data: bytes, now: float) -> None:
        known = self._transactions.get(key)
        if known is not None:
            known.last = data
            return
        self._transactions[key] = _Transaction(request, peer, data, now)
        while len(self._transactions) > self._max_transactions:
            self._transactions.popitem(last=False)

    def _transaction_key(self, request: SipMessage) -> tuple[str, str, str]:
        method = request.method or ""
        return request.call_id, request.branch, method

    def _dialog_of(self, request: SipMessage) -> Dialog | None:
        from_tag = header_params(request.get("From") or "").get("tag", "")
        dialog = self.dialogs.get((request.call_id, from_tag))
        if dialog is None:
            return None
        to_tag = header_params(request.get("To") or "").get("tag")
        if to_tag and to_tag != dialog.local_tag and request.method != "CANCEL":
            return None
        return dialog

    def _call_id(self, sip_call_id: str) -> str:
        base = "".join(ch for ch in sip_call_id if ch.isalnum() or ch in "-_.@")[:100] or f"sip-{next(self._ids)}"
        return base if base not in self._by_id else f"{base}-{next(self._ids)}"

    def _end(self, dialog: Dialog, reason: str) -> list[Action]:
        if dialog.state == "ended":
            return []
        dialog.state, dialog.end_reason, dialog._retransmit = "ended", reason, None
        self.dialogs.pop((dialog.sip_call_id, dialog.remote_tag), None)
        self._by_id.pop(dialog.id, None)
        return [Ended(dialog, reason)]

    def _bad_request(self, message: SipMessage, peer: Peer, exc: SipError) -> list[Action]:
        self.counts["malformed"] += 1
        if message.method == "ACK" or not message.get("Via"):
            return []
        self.counts["bad_request"] += 1
        reason = f"Bad Request ({exc.message[:100]})".replace("\r", " ").replace("\n", " ")
        return [Send(response(message, 400, reason, to_tag=secrets.token_hex(6), headers=(("Server", "callshield"),)).encode(), peer)]

    def _malformed(self, data: bytes, peer: Peer, exc: SipError) -> list[Action]:
        """A message that did not parse: answer 400 if its header can be read, else drop it."""
        end = data.find(b"\r\n\r\n")
        try:
            head = _parse_head(data[:end] if end >= 0 else data[:8192])
        except SipError:
            self.counts["malformed"] += 1
            return []
        if not head.is_request:
            self.counts["malformed"] += 1
            return []
        return self._bad_request(head, peer, exc)
