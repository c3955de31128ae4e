"""The whole house, for real: `callshield replay` (a subprocess agent running the
real detector and ladder) streams a call with a threat into a real Console (real
websockets, real SQLite file); a supervisor in Debian's Chromium sees the alert
and authorizes ending the call; the partner's page shows the authorization; the
agent receives it; the audit log has who, when and why.

A replayed call has no control of its own (the agent cannot hang it up), as
SIPREC and media-stream calls: with ``[end_call_webhook]`` configured, the
authorization goes out as a signed webhook to a real HTTP server, and the
supervisor's screen shows what became of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import pytest
from browser import launch
from playwright.async_api import async_playwright, expect
from webhook_receiver import SECRET, Receiver, check_signature

from console.config import ConsoleConfig
from console.server import Console

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct-horse-battery-9"

# A call in recognizer style; the threat comes early, the call goes on for a while
# so that the authorization reaches the agent while the call is live.
CALL = [
    ("partner", 0.3, 2.0, "thank you for calling this is ann how can i help"),
    ("customer", 2.3, 4.5, "my internet has been down for three days"),
    ("partner", 4.8, 6.0, "i am sorry let me check that for you"),
    ("customer", 6.3, 8.8, "if you dont fix it today i will come there and break your neck"),
    ("partner", 9.0, 10.5, "sir please do not speak to me like that"),
]
CALL += [("customer" if i % 2 else "partner", 11.0 + 2 * i, 12.5 + 2 * i, "ok" if i % 2 else "let me see what i can do")
         for i in range(20)]


def call_file(tmp_path: Path, lines=CALL) -> Path:
    """The call's timed transcript file."""
    path = tmp_path / "call.jsonl"
    path.write_text("".join(json.dumps({"speaker": s, "start": a, "end": b, "text": t}) + "\n" for s, a, b, t in lines))
    return path


class Floor:
    """A real console (agent ``floor-1``, supervisor ``sue``, partner ``ann``), both
    people signed in in Chromium, and `callshield replay` subprocesses as the agent."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.console = Console(ConsoleConfig(data_dir=tmp_path / "data", host="127.0.0.1", port=0))
        self.errors: list[str] = []
        self.replays: list[Replay] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSHIELD_")}
        self.env.update(CALLSHIELD_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONUNBUFFERED="1")

    async def __aenter__(self) -> "Floor":
        console = self.console
        await console.start()
        self._stack = contextlib.AsyncExitStack()
        self._stack.push_async_callback(console.stop)
        try:
            self.token = await console.db(console.store.add_user, "floor-1", "agent")
            await console.db(console.store.add_user, "sue", "supervisor", PASSWORD)
            await console.db(console.store.add_user, "ann", "partner", PASSWORD)
            pw = await self._stack.enter_async_context(async_playwright())
            self.browser = await launch(pw)
            self._stack.push_async_callback(self.browser.close)
            self._stack.push_async_callback(self._kill_replays)
            self.supervisor = await self._page("sue", "/supervisor")
            self.partner = await self._page("ann", "/partner")
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self._stack.aclose()

    async def _page(self, user: str, home: str):
        page = await (await self.browser.new_context()).new_page()
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        await page.goto(self.console.http_url + "/")
        await page.fill("#user", user)
        await page.fill("#password", PASSWORD)
        await page.click("#sign-in")
        await page.wait_for_url(self.console.http_url + home)
        return page

    async def replay(self, call: Path, *args: str, config: Path | None = None) -> "Replay":
        """`callshield [--config FILE] replay CALL` as agent floor-1, for partner ann at seat 4, paced."""
        before = ("--config", str(config)) if config else ()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", *before, "replay", str(call), "--console", self.console.url,
            "--token", self.token, "--agent-id", "floor-1", "--partner", "ann", "--seat", "4", "--realtime", *args,
            cwd=ROOT, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        replay = Replay(process)
        self.replays.append(replay)
        return replay

    async def _kill_replays(self) -> None:
        for replay in self.replays:
            await replay.kill()


class Replay:
    """A `callshield replay` subprocess whose output is read as it comes (an unread
    pipe that fills would stall the agent), so a failure can quote what it said."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.out, self.err = bytearray(), bytearray()
        self._readers = [asyncio.create_task(self._drain(process.stdout, self.out)),
                         asyncio.create_task(self._drain(process.stderr, self.err))]

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into.extend(chunk)

    async def started(self, page, timeout_ms: int = 90000):
        """The call's row on ``page``: the replay's start-up first (loading the encoder and the
        detector from a fresh clone's cold caches has taken over 20 s on CI)."""
        row = page.locator("#calls tr[data-call]").first
        try:
            await expect(row).to_be_visible(timeout=timeout_ms)
        except AssertionError as exc:
            state = "still running" if self.process.returncode is None else f"exited {self.process.returncode}"
            said = self.err.decode(errors="replace")[-3000:] or "(nothing)"
            raise AssertionError(f"{exc}\nthe replay agent, {state}, said on stderr:\n{said}") from None
        return row

    async def finish(self, timeout: float) -> tuple[int, str, str]:
        await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._readers)
        return self.process.returncode, self.out.decode(), self.err.decode()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)


def test_replayed_threat_reaches_the_supervisor_who_authorizes_ending_the_call(tmp_path):
    async def main():
        async with Floor(tmp_path) as floor:
            supervisor, partner, console = floor.supervisor, floor.partner, floor.console
            replay = await floor.replay(call_file(tmp_path))
            # the supervisor sees the live call, then the alert with the evidence words
            row = await replay.started(supervisor)
            card = supervisor.locator("#alerts [data-alert]").first
            await expect(card).to_be_visible(timeout=20000)
            await expect(row).to_contain_text("ann")
            await row.click()
            await expect(supervisor.locator("#findings .finding mark").first).to_contain_text("break your neck")
            await expect(supervisor.get_by_text("replayed from a timed transcript")).to_be_visible()  # the screen says how the call came
            # the partner sees the warning with a sentence to say
            await expect(partner.locator("#warnings .warning .say").first).not_to_be_empty()
            # the supervisor authorizes ending the call, with a reason
            await supervisor.fill("#authorize-reason", "Threat of violence against the partner")
            await supervisor.click("#authorize-button")
            banner = partner.locator("#auth-banner")
            await expect(banner).to_be_visible()
            await expect(banner).to_contain_text("sue authorized ending this call")
            assert floor.errors == []
            status, out, err = await replay.finish(120)
            calls = await console.db(console.store.recent_calls, 5)
            audit = await console.db(console.store.audit_entries, action="authorize_end", call_id=calls[0]["id"])
            return status, out, err, calls, audit

    status, out, err, calls, audit = asyncio.run(main())
    assert status == 0, err
    call_id = calls[0]["id"]
    assert f"call {call_id}: end authorized by sue" in out  # the agent got the authorization while the call was live
    assert out.rstrip().endswith("every event acknowledged by the console")
    assert len(audit) == 1 and audit[0]["who"] == "sue"
    assert "Threat of violence against the partner" in audit[0]["detail"]


HOSTILE_REASON = '<img src=x onerror="window.__pwned=1">'


def test_a_call_the_agent_cannot_hang_up_is_ended_through_the_signed_webhook(tmp_path):
    """The receiver is briefly unavailable (a 503 whose reason phrase carries
    markup): the supervisor sees the retry, then the delivery, as text."""
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(SECRET + "\n")

    async def main():
        with Receiver([(503, {}, HOSTILE_REASON)]) as receiver:
            config = tmp_path / "callshield.toml"
            config.write_text(f'[end_call_webhook]\nurl = "{receiver.url}"\nsecret_file = "{secret_file}"\nbackoff_initial_s = 0.3\n')
            async with Floor(tmp_path) as floor:
                supervisor, partner, console = floor.supervisor, floor.partner, floor.console
                replay = await floor.replay(call_file(tmp_path, CALL[:12]), "--speed", "2", config=config)
                await replay.started(supervisor)
                await expect(supervisor.locator("#alerts [data-alert]").first).to_be_visible(timeout=20000)
                await supervisor.locator("#calls tr[data-call]").first.click()
                await expect(supervisor.locator("#end-request")).to_be_hidden()
                await supervisor.fill("#authorize-reason", "Threat of violence against the partner")
                await supervisor.click("#authorize-button")
                await expect(partner.locator("#auth-banner")).to_contain_text("sue authorized ending this call")  # as before
                outcome = supervisor.locator("#end-request")
                await expect(outcome).to_have_attribute("data-outcome", "delivered", timeout=20000)
                await expect(outcome.locator(".latest")).to_contain_text("End-call request delivered")
                await expect(outcome.locator(".what")).to_contain_text("HTTP 200, attempt 2 of 5")
                await expect(outcome.locator("ol li")).to_contain_text(f"HTTP 503 {HOSTILE_REASON}")  # the retry, as text
                assert await supervisor.evaluate("() => [document.querySelectorAll('#end-request img').length, window.__pwned]") == [0, None]
                await expect(supervisor.locator("#alerts")).not_to_contain_text("End-call request")  # the feed keeps to what needs acting on
                await expect(partner.locator("body")).not_to_contain_text("End-call request")
                assert floor.errors == []
                status, _, err = await replay.finish(120)
                calls = await console.db(console.store.recent_calls, 5)
                audit = await console.db(console.store.audit_entries, action="end_call_webhook", call_id=calls[0]["id"])
                return status, err, calls[0], audit, receiver.received

    status, err, call, audit, received = asyncio.run(main())
    assert status == 0, err
    assert SECRET not in err  # never logged
    assert len(received) == 2
    first, second = (check_signature(SECRET, r.headers["callshield-signature"], r.body, now=time.time()) for r in received)
    assert first == second  # the same request, signed twice
    assert (first["call_id"], first["source"], first["partner"], first["seat"]) == (call["id"], "transcript", "ann", "4")
    assert (first["authorized_by"], first["reason"], first["agent_id"]) == ("sue", "Threat of violence against the partner", "floor-1")
    assert [(json.loads(a["detail"])["outcome"], a["who"]) for a in audit] == [("retrying", "agent:floor-1"), ("delivered", "agent:floor-1")]
