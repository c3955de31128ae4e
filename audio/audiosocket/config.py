"""The ``[audiosocket]`` config section, and how a leg's UUID names its call and speaker.

The UUID convention is in ``docs/asterisk.md``: the customer leg and the
partner leg of one call share their first 15 bytes.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audio.errors import AudioSocketError
from audio.frames import Speaker
from kernel.sections import read_section


@dataclass(frozen=True)
class LegPairing:
    """How a leg's UUID names its call and its speaker.

    ``mode``:
      - ``"suffix"`` (default): the first 15 bytes of the UUID are the call key;
        the last byte is ``0x00`` for the customer leg, ``0x01`` for the partner
        leg (in the string form: the last two hex digits ``00`` / ``01``).
      - ``"customer_only"``: every connection is the customer leg of its own call
        (for a dialplan that sends only what the customer says).
    """

    mode: str = "suffix"

    CUSTOMER_SUFFIX = 0x00
    PARTNER_SUFFIX = 0x01

    def __post_init__(self) -> None:
        if self.mode not in ("suffix", "customer_only"):
            raise AudioSocketError(f"unknown AudioSocket pairing mode {self.mode!r} (use 'suffix' or 'customer_only')", code="bad_config")

    def leg_of(self, raw: bytes) -> tuple[bytes, Speaker]:
        """(call key, speaker) of a 16-byte leg UUID; ``bad_uuid`` if it follows no convention."""
        if self.mode == "customer_only":
            return raw, "customer"
        suffix = raw[15]
        if suffix == self.CUSTOMER_SUFFIX:
            return raw[:15], "customer"
        if suffix == self.PARTNER_SUFFIX:
            return raw[:15], "partner"
        raise AudioSocketError(
            f"leg UUID {uuidlib.UUID(bytes=raw)} ends in {suffix:02x}: expected 00 (customer leg) or 01 (partner leg), see docs/asterisk.md",
            code="bad_uuid",
        )

    def call_id(self, key: bytes) -> str:
        """The call's id: the customer leg's UUID in string form."""
        return str(uuidlib.UUID(bytes=key + bytes([self.CUSTOMER_SUFFIX]))) if len(key) == 15 else str(uuidlib.UUID(bytes=key))

    @staticmethod
    def leg_uuid(call_key: bytes | uuidlib.UUID, speaker: Speaker) -> uuidlib.UUID:
        """The UUID a leg should send (helper for fake Asterisks and dialplan generators)."""
        key = call_key.bytes[:15] if isinstance(call_key, uuidlib.UUID) else bytes(call_key)[:15]
        return uuidlib.UUID(bytes=key + bytes([LegPairing.CUSTOMER_SUFFIX if speaker == "customer" else LegPairing.PARTNER_SUFFIX]))


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class AudioSocketConfig:
    """The ``[audiosocket]`` section of the config file.

    Fields:
        host: address to listen on (default ``127.0.0.1``; the PBX must reach it).
        port: TCP port (default 9092; 0 picks a free one).
        pairing: ``suffix`` or ``customer_only`` (see :class:`LegPairing`).
        pair_timeout_s: seconds a leg waits for the other leg of its call before
            the call starts with one speaker (the customer leg alone is enough
            for detection).
        uuid_timeout_s: seconds a new connection has to send its UUID frame.
        idle_timeout_s: seconds without any frame after which a leg is ended.
        queue_frames: bound of a call's audio hand-off to its consumer, in
            received frames (typically 20 ms each); when full the legs wait for
            the consumer. The agent's consumer never falls behind: a slow
            transcriber drops the oldest audio in the call session's queue
            (``[agent] audio_queue_s``), counted and reported.
        max_calls: calls this agent runs at once, from the first leg until the
            call's audio is transcribed and screened (each holds a recognizer
            per leg, tens of MB, and its queued audio). A leg of a new call
            beyond it is refused at once
            (``over_capacity`` notice, counted); legs of running calls are
            always taken. Connections not yet named by a UUID are bounded too,
            at ``2 * max_calls + 16``: more are closed at once, counted.

    Whether an authorized end of call hangs up, and the closing message, are
    the agent's settings (``[agent] hangup_on_authorization``,
    ``closing_message``), as are the partner and seat a call is reported with.
    """

    host: str = "127.0.0.1"
    port: int = 9092
    pairing: str = "suffix"
    pair_timeout_s: float = 2.0
    uuid_timeout_s: float = 5.0
    idle_timeout_s: float = 10.0
    queue_frames: int = 1000
    max_calls: int = 64

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> "AudioSocketConfig":
        """Read the ``[audiosocket]`` table (:func:`kernel.sections.read_section`)."""
        return read_section(cls, section, section="[audiosocket]", error=lambda message: AudioSocketError(message, code="bad_config"))

    def check(self) -> None:
        """What the settings mean together (called by :meth:`from_section`)."""
        LegPairing(self.pairing)
        numbers = (self.port, self.pair_timeout_s, self.uuid_timeout_s, self.idle_timeout_s, self.queue_frames, self.max_calls)
        if any(value < 0 for value in numbers):
            raise AudioSocketError("[audiosocket] port, the timeouts, queue_frames and max_calls must be non-negative numbers", code="bad_config")
        if self.port > 65535 or self.queue_frames < 1 or self.max_calls < 1:
            raise AudioSocketError("[audiosocket] port must be 0..65535, queue_frames and max_calls at least 1", code="bad_config")
