"""Helpers for the QA tests: the console tests' kit (real console on port 0,
agent and browser sockets), plain HTTP requests, and recordings made by the
real recorder and laid in the shared recordings directory as an agent would."""

from __future__ import annotations

import http.client
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "console"))

from console_kit import PASSWORD, T0, Browser, FakeClock, open_agent, open_browser, running_console  # noqa: E402

from kernel import protocol as p  # noqa: E402
from audio.frames import AudioChunk  # noqa: E402
from audio.recorder import CallRecorder  # noqa: E402
from kernel.recordings import RecordingInfo, recording_name, write_sidecar  # noqa: E402

__all__ = ["PASSWORD", "T0", "Browser", "FakeClock", "open_agent", "open_browser", "running_console", "get", "record_call",
           "tone_call", "end_call", "p"]


def tone_call(seconds: float, rate: int = 8000) -> tuple[np.ndarray, np.ndarray]:
    """A customer and a partner channel: short tone bursts, the customer loud in the middle."""
    t = np.arange(int(seconds * rate)) / rate
    customer = 3000 * np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    customer[(t > seconds * 0.4) & (t < seconds * 0.6)] *= 5
    partner = 2000 * np.sin(2 * np.pi * 500 * t) * (np.sin(2 * np.pi * 0.5 * t) <= 0)
    return customer.astype(np.int16), partner.astype(np.int16)


def record_call(recordings_dir: Path, call_id: str, seconds: float = 2.0, *, finalized_at: str = "2025-03-01T09:05:00.000Z") -> RecordingInfo:
    """Record a call with the real recorder into the shared directory, finalize it and write its sidecar."""
    customer, partner = tone_call(seconds)
    rec = CallRecorder(recordings_dir / recording_name(call_id), 8000)
    for start in range(0, len(customer), 160):
        rec.push(AudioChunk("customer", customer[start:start + 160], 8000, start))
        rec.push(AudioChunk("partner", partner[start:start + 160], 8000, start))
    info = rec.close()
    write_sidecar(call_id, info, finalized_at)
    return info


async def end_call(agent, call_id: str, at: float = 10.0) -> None:
    await agent.send(agent.event(p.CallEnded, call_id=call_id, at=at, reason="hangup"))


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One plain HTTP GET with the path sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), body
