"""The agent's commands for real, in subprocesses: replay into a real Console,
serve --demo, and one-line errors for bad input."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
from pathlib import Path

from agent_kit import THREAT_CALL, Watcher, jsonl, until
from console.config import ConsoleConfig
from console.server import Console
from test_demo import read_sign_in

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "supervisor-password-1"


def env_for(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(CALLSHIELD_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONUNBUFFERED="1")
    for name in ("CALLSHIELD_CONFIG", "CALLSHIELD_MODEL", "CALLSHIELD_MODELS_DIR", "CALLSHIELD_AGENT_TOKEN", "CALLSHIELD_DEBUG"):
        env.pop(name, None)
    return env


async def callshield(tmp_path: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *args, cwd=ROOT, env=env_for(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def started_console(tmp_path: Path) -> tuple[Console, str]:
    console = Console(ConsoleConfig(data_dir=tmp_path / "data", host="127.0.0.1", port=0))
    await console.start()
    token = await console.db(console.store.add_user, "replayer", "agent")
    await console.db(console.store.add_user, "sup", "supervisor", PASSWORD)
    return console, token


def test_replay_jsonl_streams_the_call_and_exits_when_acknowledged(tmp_path):
    call = tmp_path / "threat.jsonl"
    call.write_text(jsonl(THREAT_CALL), encoding="utf-8")

    async def main():
        console, token = await started_console(tmp_path)
        screen = await Watcher(console.url, "sup", PASSWORD).open()
        status, out, err = await callshield(tmp_path, "replay", str(call), "--console", console.url, "--token", token,
                                            "--agent-id", "replayer", "--partner", "kim", "--seat", "7")
        try:
            await until(lambda: screen.of("alert"))
        except TimeoutError:  # say what the replay and the screen saw
            raise AssertionError(f"no alert shown; replay exited {status}; screen got {[m['type'] for m in screen.messages]};"
                                 f" stdout: {out[-1500:]!r}; stderr: {err[-3000:]!r}") from None
        calls = await console.db(console.store.recent_calls, 10)
        detail = await console.db(console.store.call_detail, calls[0]["id"])
        await screen.close()
        await console.stop()
        return status, out, err, calls, detail, screen

    status, out, err, calls, detail, screen = asyncio.run(main())
    assert status == 0, err
    assert re.match(r"call [0-9a-f]{32}: \d+ finding\(s\), level \w+, 7\.4 s; every event acknowledged", out), out
    assert len(calls) == 1
    call_row = detail["call"]
    assert (call_row["partner"], call_row["seat"], call_row["source"], call_row["end_reason"]) == ("kim", "7", "transcript", "end_of_file")
    assert len(detail["utterances"]) == len(THREAT_CALL)
    assert {f["category"] for f in detail["findings"]} >= {"insult", "threat"}
    assert detail["alerts"] and screen.of("alert")[0]["alert"]["call_id"] == call_row["id"]


def test_command_errors_are_one_line(tmp_path):
    good = tmp_path / "call.jsonl"
    good.write_text(jsonl(THREAT_CALL), encoding="utf-8")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"speaker": "customer", "start": 0, "end": 1, "text": "hi"}\nnot json\n', encoding="utf-8")
    other = tmp_path / "call.mp3"
    other.write_bytes(b"ID3")

    async def main():
        console, token = await started_console(tmp_path)
        url = console.url
        results = {
            "refused": await callshield(tmp_path, "replay", str(good), "--console", url, "--token", "wrong", "--agent-id", "replayer"),
            "bad file": await callshield(tmp_path, "replay", str(bad), "--console", url, "--token", token, "--agent-id", "replayer"),
            "missing": await callshield(tmp_path, "replay", str(tmp_path / "nope.jsonl"), "--console", url, "--token", token),
            "not a call": await callshield(tmp_path, "replay", str(other), "--console", url, "--token", token),
            "no token": await callshield(tmp_path, "replay", str(good), "--console", url),
            "agent refused": await callshield(tmp_path, "agent", "--console", url, "--token", "wrong", "--agent-id", "replayer"),
            "agent bad url": await callshield(tmp_path, "agent", "--console", "http://x", "--token", token),
        }
        calls = await console.db(console.store.recent_calls, 10)
        await console.stop()
        results["unreachable"] = await callshield(tmp_path, "replay", str(good), "--console", url, "--token", token,
                                                  "--agent-id", "replayer", "--retries", "2")
        return results, calls

    results, calls = asyncio.run(main())
    expected = {
        "refused": "console refused agent 'replayer'",
        "bad file": "bad.jsonl:2: not JSON",
        "missing": "nope.jsonl: no such call file",
        "not a call": "not a call file (expected .wav or .jsonl)",
        "no token": "no agent token",
        "unreachable": "unreachable after 2 attempt(s)",
        "agent refused": "console refused agent 'replayer'",
        "agent bad url": "must start with ws:// or wss://",
    }
    for case, needle in expected.items():
        status, out, err = results[case]
        assert status == 2, (case, status, err)
        assert err.startswith("callshield: error: ") and needle in err, (case, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (case, err)
    assert calls == [], "nothing reached the console from a refused or bad replay"


def test_serve_demo_shows_the_demo_call_alert_to_a_supervisor_then_stops(tmp_path):
    config = tmp_path / "callshield.toml"
    config.write_text("[agent]\ndemo_speed = 8.0\ndemo_pause_s = 0.5\ndemo_calls = 2\n", encoding="utf-8")

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "--config", str(config), "serve", "--demo", "--port", "0",
            "--data-dir", str(tmp_path / "data"), cwd=ROOT, env=env_for(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            lines, passwords, url = await read_sign_in(proc, timeout=60)
            screen = await Watcher(url.replace("http://", "ws://", 1), "demo-supervisor", passwords["demo-supervisor"]).open()
            await until(lambda: screen.of("alert"), timeout=30)  # the demo call's threat (17 s of call at 8x)
            async with asyncio.timeout(60):  # two calls of 48 s at 8x, then the demo says it is over
                finished = (await proc.stdout.readline()).decode().strip()
            await until(lambda: [m for m in screen.of("notice") if m["notice"]["code"] == "demo_finished"], timeout=10)
            await screen.close()
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            status = await asyncio.wait_for(proc.wait(), 30)
            err = (await proc.stderr.read()).decode()
        return lines, passwords, screen, finished, status, err

    lines, passwords, screen, finished, status, err = asyncio.run(main())
    assert set(passwords) == {"admin", "demo-partner", "demo-supervisor"}
    # the sign-in summary comes last, after everything is up: nothing pushes it away
    assert lines[0].startswith("callshield console: ") and "/supervisor" in lines[0] and "/partner" in lines[0]
    assert lines[-1] == "passwords above are shown once; to set a new password: callshield users passwd NAME"
    assert " INFO " not in f" {err}" and "websockets" not in err, f"library chatter at the default log level: {err[-1500:]}"
    assert finished.startswith("demo: The demo played its sample call 2 times and stopped."), finished
    alert = screen.of("alert")[0]["alert"]
    calls = [m["call"] for m in screen.of("call")]
    assert any(c["id"] == alert["call_id"] and c["partner"] == "demo-partner" and c["source"] == "transcript" for c in calls)
    assert status == 0, err
    with sqlite3.connect(tmp_path / "data" / "console.db") as db:  # the screen logged in after the demo began
        notices = db.execute("SELECT call_id, message FROM notices WHERE code = 'demo_source' ORDER BY id").fetchall()
        ended = db.execute("SELECT end_reason FROM calls WHERE id = ?", (alert["call_id"],)).fetchone()
        runs = db.execute("SELECT count(*) FROM calls WHERE partner = 'demo-partner'").fetchone()[0]
    assert (alert["call_id"], "Demo call 1 of 2, replayed from its timed transcript (no English speech model installed).") in notices
    assert runs == 2, "the demo stops after its calls"
    assert ended == ("end_of_file",)
