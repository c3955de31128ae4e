"""A stand-in for the agent's console link, shared by the agent and ingress tests."""

from __future__ import annotations

import asyncio
import dataclasses

from kernel import protocol as p


class RecordingLink:
    """Stands in for the console link (isolates the agent from the console): keeps
    every message the agent publishes, assigns ``seq`` like the real link, and
    notes the event loop's time of each publication in ``published_at``."""

    def __init__(self) -> None:
        self.messages: list = []
        self.published_at: list[float] = []
        self.on_authorization = None
        self.closed = False
        self._seq = 0

    def start(self) -> None:
        pass

    def publish(self, message):
        if p.is_durable(message):
            self._seq += 1
            message = dataclasses.replace(message, seq=self._seq)
        self.messages.append(message)
        self.published_at.append(asyncio.get_running_loop().time())
        return message

    async def close(self, grace: float = 0.0) -> None:
        self.closed = True

    def of(self, cls, call_id: str | None = None) -> list:
        return [m for m in self.messages if isinstance(m, cls) and (call_id is None or getattr(m, "call_id", None) == call_id)]

    def text(self, call_id: str, speaker: str) -> str:
        return " ".join(m.text for m in self.of(p.UtteranceFinal, call_id) if m.speaker == speaker)
