"""The ``[siprec]`` config section: where the SIP recording server listens, and
who is who in the calls it records (see ``docs/siprec.md``)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from audio.sip.message import SipError
from kernel.sections import read_section, setting


def _read_partners(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
        raise ValueError("partners must be a table of AoR or extension = console user name (strings)")
    return tuple((key.strip().lower(), user) for key, user in value.items())


def _read_networks(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("allow_from must be a list of addresses or networks (\"10.0.0.0/24\")")
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"allow_from: {item!r} is not an address or a network") from None
    return tuple(value)


@dataclass(frozen=True)
class SipConfig:
    """The ``[siprec]`` section (SIPREC and plain SIP "listen" calls share it).

    Fields:
        host: address the SIP server listens on (UDP and/or TCP).
        port: SIP port (default 5060; 0 picks a free one, the same for UDP and TCP).
        transports: ``udp``, ``tcp`` or both.
        media_host: the address put in our SDP answers (where the SBC sends
            RTP); empty: ``host`` (must then not be a wildcard like 0.0.0.0).
        rtp_port_min, rtp_port_max: the UDP port range for RTP, both inclusive
            (0 and 0: any free port). Each call takes one port per stream.
        customer: which participant is the customer when no partner pattern
            decides: ``caller`` (the one that sends the first offered stream)
            or ``callee``.
        partner_pattern: a regular expression; a participant whose AoR (or its
            user part, the extension) matches it in full is the partner, the
            other one the customer. Empty: by ``customer`` alone.
        partners: AoR or extension -> console user name of the partner
            (``[siprec.partners]`` table; keys compared without case).
        mixed_speaker: whose speech a single mixed stream is screened as
            (a plain SIP call from ChanSpy or eavesdrop carries both voices):
            ``customer`` (default: everything said is screened) or ``partner``.
        max_calls: calls recorded at once, each counted from its INVITE until
            its audio is transcribed and screened (after the BYE too); an
            INVITE beyond it is answered 503 with ``Retry-After`` (counted).
        jitter_ms: jitter buffer depth of each RTP stream, milliseconds.
        allow_from: addresses or networks SIP is accepted from (the SBC's);
            empty: any (bind ``host`` to the SBC's network then). Anything
            else is dropped unanswered, counted.
        no_ack_timeout_s: a call whose 200 OK is never acknowledged ends after this long.
        media_timeout_s: a call (not on hold) with no RTP at all for this long
            ends (the SBC's BYE was lost); 0: never.
    """

    host: str = "127.0.0.1"
    port: int = 5060
    transports: tuple[Literal["udp", "tcp"], ...] = ("udp", "tcp")
    media_host: str = ""
    rtp_port_min: int = 0
    rtp_port_max: int = 0
    customer: Literal["caller", "callee"] = "caller"
    partner_pattern: str = ""
    partners: tuple[tuple[str, str], ...] = setting(default=(), read=_read_partners)
    mixed_speaker: Literal["customer", "partner"] = "customer"
    max_calls: int = 64
    jitter_ms: int = 60
    allow_from: tuple[str, ...] = setting(default=(), read=_read_networks)
    no_ack_timeout_s: float = 32.0
    media_timeout_s: float = 60.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> "SipConfig":
        """Read the ``[siprec]`` table (:func:`kernel.sections.read_section`)."""
        return read_section(cls, section, section="[siprec]", error=lambda message: SipError(message, code="bad_config"))

    def check(self) -> None:
        """What the settings mean together (called by :meth:`from_section`)."""
        if not self.transports:
            raise SipError("[siprec] transports must name udp, tcp or both", code="bad_config")
        if not 0 <= self.port <= 65535 or self.max_calls < 1 or self.jitter_ms < 0:
            raise SipError("[siprec] port must be 0..65535, max_calls at least 1, jitter_ms non-negative", code="bad_config")
        if (self.rtp_port_min, self.rtp_port_max) != (0, 0) and not (1024 <= self.rtp_port_min <= self.rtp_port_max <= 65535):
            raise SipError("[siprec] rtp_port_min..rtp_port_max must be a range within 1024..65535 (or both 0)", code="bad_config")
        if self.no_ack_timeout_s <= 0 or self.media_timeout_s < 0:
            raise SipError("[siprec] no_ack_timeout_s must be positive and media_timeout_s non-negative", code="bad_config")
        try:
            re.compile(self.partner_pattern)
        except re.error as exc:
            raise SipError(f"[siprec] partner_pattern is not a regular expression: {exc}", code="bad_config") from None
        if not self.media_address and self.host in ("0.0.0.0", "::", ""):
            raise SipError("[siprec] listening on a wildcard host needs media_host (the address the SBC sends RTP to)", code="bad_config")

    @property
    def media_address(self) -> str:
        """The address our SDP answers give (``media_host``, else ``host``)."""
        return self.media_host or ("" if self.host in ("0.0.0.0", "::", "") else self.host)

    @property
    def port_range(self) -> tuple[int, int] | None:
        return None if (self.rtp_port_min, self.rtp_port_max) == (0, 0) else (self.rtp_port_min, self.rtp_port_max)

    def allowed(self, address: str) -> bool:
        """Whether SIP from ``address`` is accepted (``allow_from``)."""
        if not self.allow_from:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.allow_from)

    def partner_user(self, *identities: str) -> str | None:
        """The console user of the first of ``identities`` (AoRs or extensions) that ``partners`` maps."""
        table = dict(self.partners)
        for identity in identities:
            if identity and identity.strip().lower() in table:
                return table[identity.strip().lower()]
        return None
