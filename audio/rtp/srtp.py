"""SRTP keys from SDP security descriptions (SDES, RFC 4568 ``a=crypto``), and the libsrtp sessions they open.

Decryption is libsrtp's, through PyPI ``pylibsrtp`` (maintained by the aiortc
project; binary wheels bundle libsrtp 2). Callshield supports the two suites
SIPREC SBCs offer with SDES (:data:`SRTP_SUITES`): ``AES_CM_128_HMAC_SHA1_80``
and ``AES_CM_128_HMAC_SHA1_32`` (128-bit AES counter mode, HMAC-SHA1
authentication tag of 80 or 32 bits; a 30-byte inline master key: 16 bytes
key + 14 bytes salt).

Not supported (``bad_crypto``): other suites (AES-256, AES-GCM, F8), an MKI
(``inline:...|2^20|1:4``), several keys in one attribute, and session
parameters other than ``UNENCRYPTED_SRTCP`` (harmless: RTCP is not read). The
SIP side should skip such an ``a=crypto`` line and answer with one it can use,
or refuse the offer with 488 when none is left.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Any

from audio.errors import RtpError

__all__ = ["SRTP_SUITES", "SrtpKey", "srtp_available"]

SRTP_SUITES: frozenset[str] = frozenset({"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"})
"""The SDES crypto suites callshield can decrypt (when pylibsrtp is installed)."""

MASTER_BYTES = 30
"""Bytes of an AES_CM_128 master key and salt together (16 + 14)."""

_LIFETIME = re.compile(r"^(?:2\^[0-9]{1,2}|[0-9]{1,20})$")
_HARMLESS_PARAMS = frozenset({"UNENCRYPTED_SRTCP"})


def _libsrtp() -> Any:
    try:
        import pylibsrtp
    except ImportError as exc:  # pragma: no cover - a dependency in pyproject
        raise RtpError("SRTP needs the pylibsrtp package (pip install pylibsrtp)", code="srtp_unavailable") from exc
    return pylibsrtp


def srtp_available() -> bool:
    """Whether SRTP can be decrypted here (pylibsrtp imports)."""
    try:
        _libsrtp()
    except RtpError:
        return False
    return True


@dataclass(frozen=True)
class SrtpKey:
    """One SDES key: a crypto suite and its master key + salt.

    Attributes:
        suite: one of :data:`SRTP_SUITES`.
        master: 30 bytes, master key (16) then master salt (14). Not in ``repr``.
        tag: the ``a=crypto`` tag (the answer must repeat the offer's tag).
    """

    suite: str
    master: bytes = field(repr=False)
    tag: int = 1

    def __post_init__(self) -> None:
        if self.suite not in SRTP_SUITES:
            raise RtpError(f"SRTP suite {self.suite!r} is not supported; supported: {', '.join(sorted(SRTP_SUITES))}", code="bad_crypto")
        if len(self.master) != MASTER_BYTES:
            raise RtpError(f"an {self.suite} master key and salt are {MASTER_BYTES} bytes, not {len(self.master)}", code="bad_crypto")
        if not 0 <= self.tag <= 999999999:
            raise RtpError(f"a=crypto tag {self.tag} outside 0..999999999", code="bad_crypto")

    @classmethod
    def from_sdes(cls, value: str) -> "SrtpKey":
        """Parse an ``a=crypto`` value (RFC 4568 §9.1), e.g.
        ``1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20``
        (an ``a=crypto:`` prefix is allowed). A lifetime is accepted and not
        enforced; raises ``bad_crypto`` for anything this module does not
        support (see the module docstring)."""
        text = value.strip()
        for prefix in ("a=crypto:", "crypto:"):
            if text.lower().startswith(prefix):
                text = text[len(prefix):].strip()
        parts = text.split()
        if len(parts) < 3 or not (parts[0].isascii() and parts[0].isdigit()) or len(parts[0]) > 9:
            raise RtpError(f"a=crypto value {value[:80]!r} is not 'tag suite inline:key'", code="bad_crypto")
        tag, suite, key_params, params = int(parts[0]), parts[1], parts[2], parts[3:]
        if suite not in SRTP_SUITES:
            raise RtpError(f"SRTP suite {suite[:40]!r} is not supported; supported: {', '.join(sorted(SRTP_SUITES))}", code="bad_crypto")
        unknown = [p for p in params if p not in _HARMLESS_PARAMS]
        if unknown:
            raise RtpError(f"SDES session parameter(s) {' '.join(unknown)[:80]} not supported", code="bad_crypto")
        if ";" in key_params:
            raise RtpError("several keys in one a=crypto attribute are not supported", code="bad_crypto")
        if not key_params.startswith("inline:"):
            raise RtpError("the a=crypto key must be 'inline:'", code="bad_crypto")
        fields = key_params[len("inline:"):].split("|")
        if len(fields) > 3:
            raise RtpError("an inline key has at most a lifetime and an MKI after it", code="bad_crypto")
        for extra in fields[1:]:
            if ":" in extra:
                raise RtpError("an SRTP MKI is not supported", code="bad_crypto")
            if not _LIFETIME.match(extra):
                raise RtpError(f"SRTP key lifetime {extra[:20]!r} is not 2^n or a number", code="bad_crypto")
        try:
            master = base64.b64decode(fields[0], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RtpError("the inline SRTP key is not base64", code="bad_crypto") from exc
        return cls(suite, master, tag)

    @classmethod
    def generate(cls, suite: str = "AES_CM_128_HMAC_SHA1_80", tag: int = 1) -> "SrtpKey":
        """A fresh random key (for the SDP answer's own ``a=crypto``, and for tests' senders)."""
        return cls(suite, os.urandom(MASTER_BYTES), tag)

    def to_sdes(self) -> str:
        """The ``a=crypto`` value: ``TAG SUITE inline:BASE64``."""
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.master).decode('ascii')}"

    def _policy(self, inbound: bool) -> Any:
        lib = _libsrtp()
        profile = lib.Policy.SRTP_PROFILE_AES128_CM_SHA1_80 if self.suite.endswith("_80") else lib.Policy.SRTP_PROFILE_AES128_CM_SHA1_32
        kind = lib.Policy.SSRC_ANY_INBOUND if inbound else lib.Policy.SSRC_ANY_OUTBOUND
        return lib.Policy(key=self.master, ssrc_type=kind, srtp_profile=profile)

    def inbound(self) -> Any:
        """A libsrtp session that decrypts (``unprotect``) packets of any SSRC sent with this key."""
        return _libsrtp().Session(self._policy(inbound=True))

    def outbound(self) -> Any:
        """A libsrtp session that encrypts (``protect``) packets with this key (senders and tests)."""
        return _libsrtp().Session(self._policy(inbound=False))
