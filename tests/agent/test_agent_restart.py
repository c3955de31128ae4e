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


def test_a_pbx_reusing_a_call_id_across_an_agent_restart_gets_a_new_call_monitored_as_id_2(tmp_path):
    """Two `callshield replay --call-id X` processes of one agent (the agent
    restarted between the calls, and forgot the ids it gave): the second call
    is refused as `call_id_taken`, renamed `X.2` by the agent and stored with
    its utterances and alerts; the first call's record is unchanged;
    supervisors see `call_id_reused`."""
    import json
    import os
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSHIELD_")}
    env.update(CALLSHIELD_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONUNBUFFERED="1")
    calls = {}
    for name, lines in (("first", THREAT_CALL[:3]), ("second", THREAT_CALL)):
        calls[name] = tmp_path / f"{name}.jsonl"
        calls[name].write_text("".join(json.dumps(line) + "\n" for line in lines))

    async def replay(console, token, call) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "replay", str(call), "--console", console.url, "--token", token, "--agent-id", "floor-1",
            "--partner", "kim", "--seat", "4", "--call-id", "X",
            cwd=root, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode, out.decode(), err.decode()

    async def main():
        console = Console(ConsoleConfig(data_dir=tmp_path / "data", host="127.0.0.1", port=0))
        await console.start()
        try:
            token = await console.db(console.store.add_user, "floor-1", "agent")
            await console.db(console.store.add_user, "sup", "supervisor", PASSWORD)
            first = await replay(console, token, calls["first"])
            before = await console.db(console.store.call_detail, "X")
            screen = await Watcher(console.url, "sup", PASSWORD).open()
            second = await replay(console, token, calls["second"])  # a new agent process, the same agent id
            await until(lambda: any(m["notice"]["code"] == "call_id_reused" for m in screen.of("notice")))
            after = await console.db(console.store.call_detail, "X")
            renamed = await console.db(console.store.call_detail, "X.2")
            await screen.close()
            return first, second, before, after, renamed, screen
        finally:
            await console.stop()

    first, second, before, after, renamed, screen = asyncio.run(main())
    assert first[0] == 0 and first[1].startswith("call X: "), first
    assert second[0] == 0, second
    assert second[1].startswith("call X.2: ") and second[1].rstrip().endswith("every event acknowledged by the console"), second
    # the first call's record: unchanged in every field, utterance, finding and alert
    assert dataclasses.asdict(after) == dataclasses.asdict(before)
    assert [u.text for u in after.utterances] == [line["text"] for line in THREAT_CALL[:3]] and after.call.end_reason == "end_of_file"
    # the second call, monitored under its own id, whole
    assert [u.text for u in renamed.utterances] == [line["text"] for line in THREAT_CALL]
    assert (renamed.call.agent, renamed.call.partner, renamed.call.end_reason) == ("floor-1", "kim", "end_of_file")
    assert renamed.alerts and renamed.alerts[0].level == "alert" and renamed.call.peak_level == "end_call_recommended"
    live = [m["alert"]["call_id"] for m in screen.of("alert")]
    assert live and set(live) == {"X.2"}
    notices = [m["notice"] for m in screen.of("notice")]
    assert [(n["code"], n["call_id"]) for n in notices] == [("call_id_reused", "X.2")]  # and no events_refused
    assert "Call id X came again after this agent restarted" in notices[0]["message"]
    assert "call id X reused" in second[2] and "monitored as X.2" in second[2]  # the agent's log says it too
