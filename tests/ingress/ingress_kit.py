"""Helpers for the ingress tests: a link that records what the agent publishes,
and an agent on the real Korean Vosk model."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from agent import protocol as p


class RecordingLink:
    """Stands in for the console link (isolates ingress from the console): keeps
    every message the agent publishes, assigns ``seq`` like the real link, and
    notes the event loop's time of each publication in ``published_at``."""

    def __init__(self) -> None:
        self.messages: list = []
        self.published_at: list[float] = []
        self.on_authorization = None
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
        pass

    def of(self, cls, call_id: str | None = None) -> list:
        return [m for m in self.messages if isinstance(m, cls) and (call_id is None or getattr(m, "call_id", None) == call_id)]

    def text(self, call_id: str, speaker: str) -> str:
        return " ".join(m.text for m in self.of(p.UtteranceFinal, call_id) if m.speaker == speaker)


def make_agent(ko_model, ko_model_dir, executor, **settings):
    from agent.runtime import Agent
    from agent.settings import AgentSettings
    from models.transcriber import SharedModel

    link = RecordingLink()
    agent = Agent(link, settings=AgentSettings(**settings), model=SharedModel(ko_model, ko_model_dir), recognizer_executor=executor)
    return agent, link


def split_call(stereo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(customer, partner) mono channels of a stereo call (left = customer)."""
    return np.ascontiguousarray(stereo[:, 0]), np.ascontiguousarray(stereo[:, 1])
