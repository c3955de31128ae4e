"""End to end in a real browser: Debian's Chromium driven by Playwright.

A call with a threat is streamed by an agent socket; the supervisor page shows
the alert and the evidence; the supervisor acknowledges it and authorizes
ending the call; the partner page (another browser context) shows the warning
with its suggested sentence, then the authorization banner; the audit log has
it. A transcript carrying HTML and script is shown as text.

Set ``CALLSHIELD_SCREENSHOTS=DIR`` to keep a screenshot of each page.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from browser import CHROMIUM, CHROMIUM_ARGS, sign_in
from console_kit import PASSWORD, FakeClock, open_agent, running_console
from kernel import protocol as p

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> i will break your neck'


async def _sign_in(page, base: str, user: str, home: str) -> None:
    await sign_in(page, base, user, PASSWORD, home)


def _shot(page, name: str):
    folder = os.environ.get("CALLSHIELD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
    return asyncio.sleep(0)


def test_supervisor_authorizes_ending_and_partner_sees_it(tmp_path):
    async def main():
        async with running_console(tmp_path) as console, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                base = console.http_url
                supervisor = await (await browser.new_context(viewport={"width": 1400, "height": 900})).new_page()
                partner = await (await browser.new_context(viewport={"width": 1000, "height": 800})).new_page()
                errors: list[str] = []
                for page in (supervisor, partner):
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                await _sign_in(supervisor, base, "sup", "/supervisor")
                await _sign_in(partner, base, "ann", "/partner")
                await expect(partner.locator("#call-state")).to_have_text("No active call")

                agent = await open_agent(console)
                await agent.threat_call("call-7", partner="ann", text=HOSTILE)

                # supervisor: live call, alert, transcript as text with the evidence marked
                row = supervisor.locator('#calls tr[data-call="call-7"]')
                await expect(row).to_contain_text("ann")
                await expect(row.locator(".level")).to_have_text("Alert")
                card = supervisor.locator("#alerts [data-alert]")
                await expect(card).to_contain_text("a threat against the partner")
                line = supervisor.locator("#transcript .line .text").first
                await expect(line).to_have_text(HOSTILE)
                await expect(supervisor.locator("#transcript mark").first).to_have_text("break your neck")
                await expect(supervisor.locator("#findings .finding mark")).to_have_text("break your neck")
                injected = await supervisor.evaluate(
                    "() => [document.querySelectorAll('#transcript img, #transcript script, #findings img, #findings script').length, window.__pwned === undefined]")
                assert injected == [0, True]

                # partner: the warning with the sentence to say
                await expect(partner.locator("#call-state")).to_have_text("On a call")
                await expect(partner.locator("#call-level")).to_have_text("Alert")
                await expect(partner.locator("#warnings .warning .say")).to_have_text("I will not continue while threats are made.")
                await expect(partner.locator("#auth-banner")).to_be_hidden()

                # partner asks for help; supervisors see it
                await partner.click("#help-button")
                await expect(supervisor.locator("#help [data-help]")).to_contain_text("ann")
                await expect(partner.locator("#help-state")).to_contain_text("the supervisors have been told")
                await _shot(partner, "partner")

                # supervisor acknowledges, then authorizes ending with a reason
                await card.locator("button.ack").click()
                await expect(card).to_contain_text("Acknowledged by sup")
                await expect(supervisor.locator("#authorize-button")).to_be_disabled()
                await supervisor.fill("#authorize-reason", "Repeated threats after a warning")
                await supervisor.click("#authorize-button")
                await expect(supervisor.locator("#authorized-note")).to_contain_text("Repeated threats after a warning")
                await _shot(supervisor, "supervisor")

                # partner: the banner; agent: the authorization; audit log: who, when, why
                banner = partner.locator("#auth-banner")
                await expect(banner).to_be_visible()
                await expect(banner).to_contain_text("sup authorized ending this call")
                await expect(banner).to_contain_text("Repeated threats after a warning")
                await _shot(partner, "partner-authorized")
                end = await agent.expect("end_call_authorized")
                assert end["call_id"] == "call-7" and end["by"] == "sup"
                audit = await console.db(console.store.audit_entries, action="authorize_end", call_id="call-7")
                assert len(audit) == 1 and audit[0]["who"] == "sup"
                assert "Repeated threats after a warning" in audit[0]["detail"]
                assert [a["who"] for a in await console.db(console.store.audit_entries, action="need_help")] == ["ann"]
                assert errors == []
                await agent.close()
            finally:
                await browser.close()

    asyncio.run(main())


def test_login_page_refuses_a_wrong_password_and_guards_pages(tmp_path):
    async def main():
        async with running_console(tmp_path) as console, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await (await browser.new_context()).new_page()
                await page.goto(console.http_url + "/supervisor")  # no session: back to sign-in
                await page.wait_for_url(console.http_url + "/")
                await _shot(page, "login")
                await page.fill("#user", "sup")
                await page.fill("#password", "not the password")
                await page.click("#sign-in")
                await expect(page.locator("#login-error")).to_have_text("wrong user name or password")
                # a partner who opens the supervisor page is sent to their own
                await page.fill("#user", "bob")
                await page.fill("#password", PASSWORD)
                await page.click("#sign-in")
                await page.wait_for_url(console.http_url + "/partner")
                await page.goto(console.http_url + "/supervisor")
                await page.wait_for_url(console.http_url + "/partner")

                # qa reads stored calls on the same page, without supervisor controls
                agent = await open_agent(console)
                await agent.threat_call("old-call", partner="bob")
                qa = await (await browser.new_context()).new_page()
                await _sign_in(qa, console.http_url, "quinn", "/supervisor")
                await expect(qa.locator("#page-title")).to_have_text("Quality review")
                await expect(qa.locator('#calls tr[data-call="old-call"]')).to_contain_text("bob")
                await expect(qa.locator("#findings .finding mark")).to_have_text("break your neck")
                await expect(qa.locator("#alerts-panel")).to_be_hidden()
                await expect(qa.locator("#authorize-form")).to_be_hidden()
                await agent.close()
            finally:
                await browser.close()

    asyncio.run(main())


def test_supervisor_and_partner_see_that_monitoring_was_lost(tmp_path):
    async def main():
        clock = FakeClock()
        async with running_console(tmp_path, clock=clock) as console, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                base = console.http_url
                supervisor = await (await browser.new_context()).new_page()
                partner = await (await browser.new_context()).new_page()
                await _sign_in(supervisor, base, "sup", "/supervisor")
                await _sign_in(partner, base, "ann", "/partner")
                agent = await open_agent(console)
                await agent.send(agent.event(p.CallStarted, call_id="call-9", partner="ann", seat="12", source="transcript",
                                             started_at="2025-03-01T09:00:00.000Z"))
                row = supervisor.locator('#calls tr[data-call="call-9"]')
                await expect(row).to_contain_text("ann")
                await expect(partner.locator("#call-state")).to_have_text("On a call")

                await agent.close()  # the agent dies; its call goes silent
                async with asyncio.timeout(5):
                    while "agent-1" in console.agents.connected:
                        await asyncio.sleep(0.01)
                clock.advance(seconds=console.config.agent_lost_seconds + 1)
                assert await console.agents.sweep() == ["call-9"]

                await expect(row.locator(".tag.lost")).to_have_text("Monitoring lost")  # still among the live calls: it may go on
                await expect(supervisor.locator("#calls-count")).to_have_text("0 live · 1 monitoring lost")
                await expect(supervisor.locator("#alerts article").first).to_contain_text("Monitoring lost")
                await expect(partner.locator("#call-state")).to_have_text("Monitoring lost")
            finally:
                await browser.close()

    asyncio.run(main())


def test_supervisor_sees_what_load_kept_off_the_screen(tmp_path):
    async def main():
        async with running_console(tmp_path) as console, async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                supervisor = await (await browser.new_context()).new_page()
                await _sign_in(supervisor, console.http_url, "sup", "/supervisor")
                load = supervisor.locator("#load")
                await expect(load).to_be_hidden()  # nothing shed: nothing said
                agent = await open_agent(console)
                await agent.send(p.Heartbeat(calls=(), partials_dropped=1234), ack=False)
                await expect(load).to_be_visible()
                await expect(load).to_contain_text("1,234 not sent by agent-1")
                await expect(load).to_contain_text("Final lines and alerts are all kept")
            finally:
                await browser.close()

    asyncio.run(main())
