"""Helpers for the ingress tests: a link that records what the agent publishes,
an agent on the real Korean Vosk model, a route that keeps the calls it saw."""

from __future__ import annotations


import numpy as np

from recording_link import RecordingLink


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


class Routed:
    """An ingress route that keeps every AudioSocket call it was asked about, by
    its AudioSocket call id (the ingress itself lets go of a call once it has ended)."""

    def __init__(self) -> None:
        self.calls: dict = {}

    def __call__(self, call) -> tuple[None, None]:
        self.calls[call.call_id] = call
        return None, None
