"""The demo as a new user meets it, at human speed, in Debian's Chromium.

``callshield serve --demo`` as the README says (default speed, no config):
a supervisor and a partner sign in side by side; the partner gets a caution,
then the supervisor an alert; the supervisor takes 3 s to read it, opens the
call, types a reason at typing speed and authorizes ending the call while it
is still going on; the partner sees the banner, then the call ends and the
screens say so without contradicting each other. Every page is screenshot
when ``CALLSHIELD_SCREENSHOTS=DIR`` is set (the README's pictures:
``CALLSHIELD_SCREENSHOTS=docs/screenshots``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from browser import launch, sign_in
from test_demo import read_sign_in

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
REASON = "Threat against the partner after a warning"
INTERNAL_WORDS = ("local-agent", "end_of_file", "points)", "finding", "critical", "medium")


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(CALLSHIELD_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONUNBUFFERED="1")
    for name in ("CALLSHIELD_CONFIG", "CALLSHIELD_MODEL", "CALLSHIELD_MODELS_DIR", "CALLSHIELD_AGENT_TOKEN", "CALLSHIELD_DEBUG"):
        env.pop(name, None)
    return env


async def _shot(page, name: str) -> None:
    folder = os.environ.get("CALLSHIELD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


async def _sign_in(page, base: str, user: str, password: str, home: str, shot: str | None = None) -> None:
    await sign_in(page, base, user, password, home, before_submit=(lambda page: _shot(page, shot)) if shot else None)


async def _visible_text(page, selector: str) -> str:
    return await page.locator(selector).inner_text()


def test_a_supervisor_at_human_speed_authorizes_ending_the_demo_call(tmp_path):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "serve", "--demo", "--port", "0", "--data-dir", str(tmp_path / "data"),
            cwd=ROOT, env=_env(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            lines, passwords, base = await read_sign_in(proc, timeout=90)
            async with async_playwright() as pw:
                browser = await launch(pw)
                try:
                    return await _act(browser, base, passwords), lines
                finally:
                    await browser.close()
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)

    result, lines = asyncio.run(main())
    call_id = result
    with sqlite3.connect(tmp_path / "data" / "console.db") as db:
        audit = db.execute("SELECT who, detail FROM audit_log WHERE action = 'authorize_end' AND call_id = ?", (call_id,)).fetchall()
        ended = db.execute("SELECT ended_at FROM calls WHERE id = ?", (call_id,)).fetchone()
    assert len(audit) == 1 and audit[0][0] == "demo-supervisor" and REASON in audit[0][1]
    assert ended[0] is not None


async def _act(browser, base: str, passwords: dict) -> str:
    errors: list[str] = []
    supervisor = await (await browser.new_context(viewport={"width": 1400, "height": 900})).new_page()
    partner = await (await browser.new_context(viewport={"width": 1000, "height": 760})).new_page()
    for page in (supervisor, partner):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
    await _sign_in(supervisor, base, "demo-supervisor", passwords["demo-supervisor"], "/supervisor", shot="login")
    await _sign_in(partner, base, "demo-partner", passwords["demo-partner"], "/partner")

    # the caution reaches the partner first, in plain words, with a sentence to say
    warning = partner.locator("#warnings .warning").last  # newest first: the last is the first warning
    await expect(warning).to_be_visible(timeout=40000)
    await expect(warning.locator(".level")).to_have_text("Caution")
    await expect(warning.locator(".why")).to_contain_text('An insult: "')
    await expect(warning.locator(".say")).not_to_be_empty()

    # then the alert reaches the supervisor
    card = supervisor.locator("#alerts [data-alert]").first
    await expect(card).to_be_visible(timeout=30000)
    alerted = asyncio.get_running_loop().time()
    await expect(card.locator(".what")).to_contain_text('A threat: "i know where you live"')
    # the detail panel followed the demo call without a click
    await expect(supervisor.locator("#following")).to_be_visible()
    call_id = await supervisor.locator("#calls tr.selected").get_attribute("data-call")

    # a person: reads the alert (3 s), opens the call, types a reason, authorizes
    await asyncio.sleep(3)
    await card.get_by_role("button", name="Open call").click()
    await expect(supervisor.locator("#follow")).to_have_text("Follow new calls")  # opened by hand: pinned
    await supervisor.locator("#authorize-reason").press_sequentially(REASON, delay=60)
    await supervisor.click("#authorize-button")
    await expect(supervisor.locator("#authorized-note")).to_contain_text("Ending authorized by demo-supervisor at")
    took = asyncio.get_running_loop().time() - alerted
    assert took > 5, took

    # the partner sees it while the call is still going on
    banner = partner.locator("#auth-banner")
    await expect(banner).to_be_visible()
    await expect(partner.locator("#call-state")).to_have_text("On a call")
    await expect(partner.locator("#auth-title")).to_have_text("You may end this call")
    await expect(banner).to_contain_text("demo-supervisor authorized ending this call")

    # the final transcript line of the threat is highlighted, not only the live partial
    threat_line = supervisor.locator("#transcript .line.customer:not(.partial)", has_text="regret this")
    await expect(threat_line.locator("mark")).to_contain_text("know where you live")
    await expect(supervisor.locator("#transcript .line.customer:not(.partial)", has_text="stupid idiot").locator("mark").first).to_be_visible()
    await expect(supervisor.locator("#findings .finding .cat").first).to_have_text("An insult")
    await _shot(supervisor, "supervisor")
    await _shot(partner, "partner")

    # the screens say what they mean: no internal words
    for selector in ("#detail-head", "#alerts", "#checkins", "#findings"):
        text = await _visible_text(supervisor, selector)
        assert not [w for w in INTERNAL_WORDS if w in text], (selector, text)
    text = await _visible_text(partner, "#warnings")
    assert not [w for w in INTERNAL_WORDS if w in text], text

    # the call ends: the partner's banner records the authorization without asking for anything
    await expect(partner.locator("#call-state")).to_have_text("Call ended", timeout=60000)
    await expect(partner.locator("#auth-title")).to_have_text("Ending this call was authorized")
    await expect(banner).to_contain_text("The call has ended.")
    await expect(partner.locator("#help-button")).to_be_enabled()
    await _shot(partner, "partner-call-ended")

    # the supervisor: the call moves to "Ended calls"; "Live calls" keeps only live ones
    await expect(supervisor.locator("#calls-count")).to_have_text("0 live")
    await expect(supervisor.locator("#calls tr")).to_have_count(0)
    await expect(supervisor.locator(f'#ended-calls tr[data-call="{call_id}"]')).to_contain_text("the recording ended")
    await expect(supervisor.locator("#detail-head .meta")).to_contain_text("the recording ended")
    text = await _visible_text(supervisor, "#detail-head")
    assert "end_of_file" not in text and "local-agent" not in text, text
    await _shot(supervisor, "supervisor-call-ended")

    # QA replay of the call, for the README's pictures
    await supervisor.goto(base + "/qa")
    await expect(supervisor.locator(f'#calls tr[data-call="{call_id}"]')).to_be_visible(timeout=10000)
    await supervisor.locator(f'#calls tr[data-call="{call_id}"]').click()
    await expect(supervisor.locator("#transcript mark").first).to_be_visible()
    await _shot(supervisor, "qa")
    assert errors == []
    return call_id
