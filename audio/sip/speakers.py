"""Who is the customer and who the partner in a recorded call's streams.

A SIPREC offer carries one stream per participant (``a=label``), and the
metadata says which participant sends which label. :func:`assign_speakers`
gives each stream taken a speaker:

1. ``partner_pattern`` (when set): the stream whose sender's AoR or extension
   matches it in full is the partner's; the other one the customer's.
2. Otherwise by direction: the first offered audio stream is the caller's
   (every SBC in docs/siprec.md sends the caller's stream first; the
   metadata's sender of that label, when given, is the caller), and
   ``customer`` says whether the caller is the customer (inbound call
   centers) or the partner (outbound campaigns).

A single stream (plain SIP from ChanSpy / eavesdrop: both voices mixed) is
screened as ``mixed_speaker``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from audio.frames import Speaker
from audio.sip.config import SipConfig
from audio.sip.message import uri_user
from audio.sip.metadata import Metadata, Participant


def _other(speaker: Speaker) -> Speaker:
    return "partner" if speaker == "customer" else "customer"


@dataclass(frozen=True)
class Assignment:
    """Speakers of the streams taken: ``speakers[i]`` for the i-th stream given;
    ``partner``: the partner's AoR or extension ('' if unknown); ``how``: a
    short phrase for the call notice (``by partner_pattern``, ``caller is
    customer``, ``mixed``)."""

    speakers: tuple[Speaker, ...]
    partner: str
    how: str


def matches(pattern: str, participant: Participant | None) -> bool:
    if participant is None or not pattern:
        return False
    return any(re.fullmatch(pattern, candidate) for candidate in (participant.aor, uri_user(participant.aor)) if candidate)


def assign_speakers(config: SipConfig, labels: list[str | None], metadata: Metadata | None) -> Assignment:
    """Speakers of the streams with SDP ``labels`` (offer order), by ``config`` and ``metadata``."""
    senders = [metadata.sender_of_label(label) if metadata and label is not None else None for label in labels]
    if len(labels) == 1:
        sender = senders[0]
        return Assignment((config.mixed_speaker,), sender.aor if sender and config.mixed_speaker == "partner" else "", "mixed")
    if config.partner_pattern:
        matched = [matches(config.partner_pattern, sender) for sender in senders]
        if any(matched) and not all(matched):
            speakers = tuple("partner" if m else "customer" for m in matched)
            partner = next(s for s, m in zip(senders, matched) if m)
            return Assignment(speakers, partner.aor if partner else "", "by partner_pattern")
    first: Speaker = "customer" if config.customer == "caller" else "partner"
    speakers: list[Speaker] = []
    for i, sender in enumerate(senders):
        if i == 0:
            speakers.append(first)
        elif sender is not None and senders[0] is not None and sender.id == senders[0].id:
            speakers.append(first)
        else:
            speakers.append(_other(first))
    partner_sender = next((s for s, sp in zip(senders, speakers) if sp == "partner" and s is not None), None)
    if partner_sender is None and metadata is not None and metadata.participants:
        # No sends in the metadata: its participants in document order, caller first.
        order = list(metadata.participants)
        index = 1 if first == "customer" else 0
        partner_sender = order[index] if index < len(order) else None
    how = "caller is the customer" if first == "customer" else "caller is the partner"
    return Assignment(tuple(speakers), partner_sender.aor if partner_sender else "", how)
