"""The agent's settings: the ``[agent]`` section.

``[agent]`` says where the console is, who this agent is, and the defaults a
call gets when its ingress does not say (partner, seat). The whole config is
assembled by the command line (``cli/settings.py``).

Example::

    [agent]
    console_url = "ws://10.0.0.5:8750"
    token_file = "/etc/callshield/agent.token"
    agent_id = "floor-2"
    partner = "partner"
    seat = ""
    hangup_on_authorization = false
    closing_message = "/etc/callshield/closing.wav"
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from kernel.config import secret_from_file
from kernel.errors import ConfigError
from kernel.sections import read_section


@dataclass(frozen=True)
class AgentSettings:
    """The ``[agent]`` section.

    Attributes:
        console_url: the console's base websocket URL, ``ws://host:port`` or
            ``wss://host:port`` (the link appends ``/ws/agent``); several
            console replicas comma-separated, tried in order when one is
            gone (``agent.link.ConsoleLink``). Empty: none.
        token: the agent's secret (from ``callshield users add NAME --role
            agent``). Prefer ``token_file`` or ``$CALLSHIELD_AGENT_TOKEN``.
        token_file: a file holding the token (first line), or None.
        ca_file: PEM file of the certificate authority (or the console's own
            self-signed certificate) trusted for ``wss://``; None: the system's.
        agent_id: this agent's name at the console: the NAME its token was
            issued for (``callshield users add NAME --role agent``); default:
            the host name.
        site: free text shown at the console (building, floor, seat range).
        partner: partner user name for calls whose ingress does not name one.
        seat: desk or extension for calls whose ingress does not name one.
        hangup_on_authorization: when the console sends an end-call
            authorization, play ``closing_message`` and hang up through the
            call's control (PBX); otherwise only the partner is informed.
        closing_message: WAV played to the customer before hanging up, or None.
        audio_queue_s: seconds of audio buffered per call between source and
            transcriber before the oldest chunks are dropped (and counted).
        partial_queue: partial transcripts buffered on the link (messages);
            older partials are dropped (and counted) beyond it.
        reconnect_initial_s: first reconnect delay, seconds.
        reconnect_max_s: longest reconnect delay, seconds.
        reconnect_jitter: fraction (0..1) of each delay drawn at random, so
            many agents restarting together do not reconnect in lockstep.
        shutdown_grace_s: seconds to wait, on shutdown, for the console to
            acknowledge what is still unacknowledged.
        demo_pause_s: seconds between two runs of the demo call (``serve --demo``).
        demo_speed: audio seconds per wall second when the demo call is
            replayed from its timed transcript (1.0 = as spoken).
    """

    console_url: str = ""
    token: str = ""
    token_file: Path | None = None
    ca_file: Path | None = None
    agent_id: str = field(default_factory=socket.gethostname)
    site: str = ""
    partner: str = "partner"
    seat: str = ""
    hangup_on_authorization: bool = False
    closing_message: Path | None = None
    audio_queue_s: float = 5.0
    partial_queue: int = 200
    reconnect_initial_s: float = 0.25
    reconnect_max_s: float = 10.0
    reconnect_jitter: float = 0.5
    shutdown_grace_s: float = 5.0
    demo_pause_s: float = 15.0
    demo_speed: float = 1.0

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, where: str = "[agent]") -> "AgentSettings":
        """Parse the ``[agent]`` table (``where`` names it in errors); unknown keys,
        wrong types and values that do not fit together are a ConfigError."""
        return read_section(cls, table, section=where)

    def check(self) -> None:
        """What the values mean together (called by :func:`~kernel.sections.read_section`)."""
        if self.audio_queue_s <= 0 or self.partial_queue < 1:
            raise ConfigError("audio_queue_s and partial_queue must be positive")
        if not 0 < self.reconnect_initial_s <= self.reconnect_max_s:
            raise ConfigError("need 0 < reconnect_initial_s <= reconnect_max_s")
        if self.demo_speed <= 0 or self.demo_pause_s < 0 or self.shutdown_grace_s < 0:
            raise ConfigError("demo_speed must be positive, demo_pause_s and shutdown_grace_s not negative")
        if not 0 <= self.reconnect_jitter <= 1:
            raise ConfigError("reconnect_jitter must be between 0 and 1")
        if any(not u.strip().startswith(("ws://", "wss://")) for u in self.console_url.split(",") if self.console_url):
            raise ConfigError("console_url must start with ws:// or wss:// (several consoles: comma-separated)")

    def resolved_token(self, env: Mapping[str, str] | None = None) -> str:
        """The token: ``token``, else ``token_file``'s first line, else ``$CALLSHIELD_AGENT_TOKEN``."""
        env = os.environ if env is None else env
        if self.token:
            return self.token
        if self.token_file is not None:
            return secret_from_file(self.token_file, "[agent] token_file")
        return env.get("CALLSHIELD_AGENT_TOKEN", "").strip()

