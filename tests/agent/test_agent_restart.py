"""The console restarts in the middle of a call (real Console, real SQLite file):
the agent reconnects, resends what the console has not acknowledged, and every
alert arrives exactly once, in the store and at a connected supervisor socket."""

from __future__ import annotations

import asyncio
import dataclasses
import random

from agent.link import Backoff, ConsoleLink
from agent.runtime import Agent
from agent_kit import THREAT_CALL, Watcher, until
from console.config import ConsoleConfig
from console.server import Console
from models.transcript import Utterance

PASSWORD = "supervisor-password-1"


class GatedCall:
    """A call's utterances in three parts, each released when the test opens its gate,
    so the restart falls exactly where the test wants it."""

    def __init__(self, parts: list[list[dict]]) -> None:
        self.parts = parts
        self.gates = [asyncio.Event() for _ in parts]
        self.released = [asyncio.Event() for _ in parts]
        self.duration = parts[-1][-1]["end"]

    def __aiter__(self):
        return self._events()

    async def _events(self):
        for part, gate, released in zip(self.parts, self.gates, self.released):
            await gate.wait()
            for line in part:
                yield Utterance(line["speaker"], line["start"], line["end"], line["text"])
            released.set()


def test_console_restart_mid_call_every_alert_exactly_once(tmp_path):
    before = THREAT_CALL[:5]  # ... up to the first threat: the first alert
    during = [{"speaker": "partner", "start": 4.8, "end": 5.2, "text": "i am going to have to ask you to stop"}]
    after = THREAT_CALL[5:]  # more threats: the call's next alert

    async def main():
        config = ConsoleConfig(data_dir=tmp_path / "data", host="127.0.0.1", port=0)
        console = Console(config)
        await console.start()
        port = console.port
        token = await console.db(console.store.add_user, "floor-1", "agent")
        await console.db(console.store.add_user, "sup", "supervisor", PASSWORD)
        first_screen = await Watcher(console.url, "sup", PASSWORD).open()

        link = ConsoleLink(console.url, agent_id="floor-1", token=token, backoff=Backoff(initial=0.05, maximum=0.2), rng=random.Random(5))
        agent = Agent(link)
        await agent.start()
        call = GatedCall([before, during, after])
        handle = agent.start_transcript_call(call, partner="kim", duration=call.duration)

        call.gates[0].set()
        await until(lambda: first_screen.of("alert"))
        await link.drain(timeout=10)

        await console.stop()  # the console goes away in the middle of the call
        await first_screen.close()
        await until(lambda: not link.connected)
        call.gates[1].set()  # the partner speaks while the console is down
        await call.released[1].wait()
        assert link.pending >= 1

        console = Console(dataclasses.replace(config, port=port))  # same port, same SQLite file
        await console.start()
        second_screen = await Watcher(console.url, "sup", PASSWORD).open()
        await link.drain(timeout=20)  # reconnected, resent, acknowledged
        call.gates[2].set()
        await handle.wait()
        await link.drain(timeout=10)
        await until(lambda: any(m["call"]["ended_at"] for m in second_screen.of("call")))

        detail = await console.db(console.store.call_detail, handle.call_id)
        stats = console.stats
        await second_screen.close()
        await agent.shutdown()
        await console.stop()
        return handle, first_screen, second_screen, detail, link, stats

    handle, first_screen, second_screen, detail, link, stats = asyncio.run(main())

    assert link.stats.connects == 2  # reconnected once (failed attempts while the console was down depend on timing)
    # the store: every alert once, every finding once, every utterance once
    alerts = detail["alerts"]
    assert len(alerts) >= 2, alerts
    assert len({a["id"] for a in alerts}) == len(alerts)
    assert [a["level"] for a in alerts][:1] == ["alert"] and alerts[-1]["level"] == "end_call_recommended"
    assert len(detail["findings"]) == handle.session.findings
    texts = [u["text"] for u in detail["utterances"]]
    assert len(texts) == len(before) + len(during) + len(after) and len(set(texts)) == len(texts)
    assert detail["call"]["end_reason"] == "end_of_file"

    # the supervisor's screens: each alert pushed live exactly once across the restart
    live = [m["alert"]["id"] for m in first_screen.of("alert") + second_screen.of("alert")]
    assert sorted(live) == sorted(a["id"] for a in alerts), (live, alerts)
    assert len(first_screen.of("alert")) == 1 and len(second_screen.of("alert")) == len(alerts) - 1
    live_findings = [m["finding"]["id"] for m in first_screen.of("finding") + second_screen.of("finding")]
    assert sorted(live_findings) == sorted(f["id"] for f in detail["findings"])
    # what the partner said while the console was down was stored after the restart, once
    assert texts.count(during[0]["text"]) == 1
