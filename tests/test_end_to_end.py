"""The whole house, for real: `callshield replay` (a subprocess agent running the
real detector and ladder) streams a call with a threat into a real Console (real
websockets, real SQLite file); a supervisor in Debian's Chromium sees the alert
and authorizes ending the call; the partner's page shows the authorization; the
agent receives it; the audit log has who, when and why."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from browser import launch
from playwright.async_api import async_playwright, expect

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


def test_replayed_threat_reaches_the_supervisor_who_authorizes_ending_the_call(tmp_path):
    call_file = tmp_path / "call.jsonl"
    call_file.write_text("".join(json.dumps({"speaker": s, "start": a, "end": b, "text": t}) + "\n" for s, a, b, t in CALL))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSHIELD_")}
    env.update(CALLSHIELD_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONUNBUFFERED="1")

    async def main():
        console = Console(ConsoleConfig(data_dir=tmp_path / "data", host="127.0.0.1", port=0))
        await console.start()
        replay = None
        try:
            token = await console.db(console.store.add_user, "floor-1", "agent")
            await console.db(console.store.add_user, "sue", "supervisor", PASSWORD)
            await console.db(console.store.add_user, "ann", "partner", PASSWORD)
            async with async_playwright() as pw:
                browser = await launch(pw)
                try:
                    supervisor = await (await browser.new_context()).new_page()
                    partner = await (await browser.new_context()).new_page()
                    errors: list[str] = []
                    for page, user, home in ((supervisor, "sue", "/supervisor"), (partner, "ann", "/partner")):
                        page.on("pageerror", lambda exc: errors.append(str(exc)))
                        await page.goto(console.http_url + "/")
                        await page.fill("#user", user)
                        await page.fill("#password", PASSWORD)
                        await page.click("#sign-in")
                        await page.wait_for_url(console.http_url + home)

                    replay = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "cli", "replay", str(call_file), "--console", console.url,
                        "--token", token, "--agent-id", "floor-1", "--partner", "ann", "--seat", "4", "--realtime",
                        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                    )
                    # the supervisor sees the live call and the alert with the evidence words
                    card = supervisor.locator("#alerts [data-alert]").first
                    await expect(card).to_be_visible(timeout=20000)
                    row = supervisor.locator("#calls tr[data-call]").first
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
                    assert errors == []
                finally:
                    await browser.close()
            out, err = await asyncio.wait_for(replay.communicate(), 120)
            calls = await console.db(console.store.recent_calls, 5)
            audit = await console.db(console.store.audit_entries, action="authorize_end", call_id=calls[0]["id"])
            return replay.returncode, out.decode(), err.decode(), calls, audit
        finally:
            if replay is not None and replay.returncode is None:
                replay.kill()
                await replay.wait()
            await console.stop()

    status, out, err, calls, audit = asyncio.run(main())
    assert status == 0, err
    call_id = calls[0]["id"]
    assert f"call {call_id}: end authorized by sue" in out  # the agent got the authorization while the call was live
    assert out.rstrip().endswith("every event acknowledged by the console")
    assert len(audit) == 1 and audit[0]["who"] == "sue"
    assert "Threat of violence against the partner" in audit[0]["detail"]
