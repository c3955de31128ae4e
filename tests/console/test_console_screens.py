"""The supervisor and partner screens say what they mean, in a real browser
(Debian's Chromium through Playwright) on a real console, fed by an agent socket.

- the supervisor's detail panel follows a new live call unless the
  supervisor chose another (pinned), and "Follow new calls" lets go;
- "Live calls" lists live calls only; an ended call moves to "Ended calls",
  how it ended in words;
- a call that ends before anyone authorized ending it says why the form is gone;
- a finding raised on the live partial marks the final transcript line;
- open alerts are shown whole (no scroll box cutting a card), acknowledged
  ones only the latest few;
- the partner's "Need help" shows it was sent, then resets after the call;
- an authorization banner on an ended call does not contradict "Call ended".
"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import async_playwright, expect

from browser import launch, sign_in
from console_kit import PASSWORD, Browser, open_agent, open_browser, running_console
from kernel import protocol as p

pytestmark = pytest.mark.browser


async def _page(browser, base: str, user: str, home: str, errors: list):
    page = await (await browser.new_context(viewport={"width": 1400, "height": 900})).new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await sign_in(page, base, user, PASSWORD, home)
    return page


async def _start(agent, call_id: str, partner: str, minute: int) -> None:
    await agent.send(agent.event(p.CallStarted, call_id=call_id, partner=partner, seat=f"s{minute}", source="transcript",
                                 started_at=f"2025-03-01T09:{minute:02d}:00.000Z"))


async def _end(agent, call_id: str, reason: str = "hangup") -> None:
    await agent.send(agent.event(p.CallEnded, call_id=call_id, at=30.0, reason=reason))


def _run(tmp_path, scenario, *pages):
    async def main():
        async with running_console(tmp_path) as console, async_playwright() as pw:
            browser = await launch(pw)
            try:
                errors: list[str] = []
                opened = [await _page(browser, console.http_url, user, home, errors) for user, home in pages]
                agent = await open_agent(console)
                await scenario(console, agent, *opened)
                assert errors == []
            finally:
                await browser.close()
    asyncio.run(main())


def test_detail_follows_a_new_live_call_unless_the_supervisor_pinned_one(tmp_path):
    async def scenario(console, agent, sup):
        meta = sup.locator("#detail-head h3")
        await _start(agent, "call-1", "ann", 1)
        await expect(meta).to_have_text("ann")
        await expect(sup.locator("#following")).to_have_text("Following new calls")
        await _start(agent, "call-2", "bob", 2)
        await expect(meta).to_have_text("bob")  # followed, no click
        await sup.locator('#calls tr[data-call="call-1"]').click()  # the supervisor chooses ann's call: pinned
        await expect(meta).to_have_text("ann")
        await expect(sup.locator("#follow")).to_have_text("Follow new calls")
        await _start(agent, "call-3", "cy", 3)
        await expect(sup.locator('#calls tr[data-call="call-3"]')).to_be_visible()
        await asyncio.sleep(0.3)
        await expect(meta).to_have_text("ann")  # stays
        await sup.click("#follow")
        await expect(meta).to_have_text("cy")  # the newest live call
        await expect(sup.locator("#following")).to_be_visible()

    _run(tmp_path, scenario, ("sup", "/supervisor"))


def test_an_ended_call_leaves_live_calls_and_says_why_it_cannot_be_authorized(tmp_path):
    async def scenario(console, agent, sup):
        await agent.threat_call("call-7", partner="ann")
        await expect(sup.locator("#calls-count")).to_have_text("1 live")
        await expect(sup.locator("#authorize-form")).to_be_visible()
        await sup.fill("#authorize-reason", "Threats")  # typing when the customer hangs up
        await _end(agent, "call-7", "end_of_file")
        closed = sup.locator("#authorize-closed")
        await expect(closed).to_contain_text("This call ended at")
        await expect(closed).to_contain_text("before anyone authorized ending it: there is nothing left to end. Your reason was not sent.")
        await expect(sup.locator("#authorize-form")).to_be_hidden()
        await expect(sup.locator("#calls-count")).to_have_text("0 live")
        await expect(sup.locator("#calls tr")).to_have_count(0)
        await expect(sup.locator("#calls-empty")).to_be_visible()
        ended = sup.locator('#ended-calls tr[data-call="call-7"]')
        await expect(ended).to_contain_text("the recording ended")
        await expect(ended.locator(".level")).to_have_text("Alert")  # the peak
        head = await sup.locator("#detail-head").inner_text()
        assert "end_of_file" not in head and "agent-1" not in head and "the recording ended" in head, head

    _run(tmp_path, scenario, ("sup", "/supervisor"))


def test_a_finding_on_the_live_partial_marks_the_final_line(tmp_path):
    async def scenario(console, agent, sup):
        await _start(agent, "call-9", "ann", 1)
        partial = "i know where you"  # what the recognizer had heard when the finding was raised
        await agent.send(agent.event(p.FindingRaised, call_id="call-9", category="privacy", severity="high", score=0.9, rule="privacy.home",
                                     evidence="know where you", start=3.0, end=4.0, text=partial, span=(2, 16)))
        await agent.send(agent.event(p.UtteranceFinal, call_id="call-9", speaker="customer", start=3.0, end=5.2,
                                     text="i know where you live and you will regret this",
                                     words=({"word": "i", "start": 3.0, "end": 3.2, "conf": 1.0},)))
        line = sup.locator("#transcript .line.customer")
        await expect(line.locator("mark")).to_have_text("know where you")
        await expect(sup.locator("#findings .finding .quote")).to_have_text("i know where you live and you will regret this")
        await expect(sup.locator("#findings .finding .quote mark")).to_have_text("know where you")
        await expect(sup.locator("#findings .finding .cat")).to_have_text("A question about private life")
        await expect(sup.locator("#findings .finding .sev")).to_contain_text("serious")

    _run(tmp_path, scenario, ("sup", "/supervisor"))


def test_partner_need_help_shows_it_was_sent_and_resets_after_the_call(tmp_path):
    async def scenario(console, agent, partner, sup):
        await agent.threat_call("call-4", partner="ann")
        await expect(partner.locator("#call-state")).to_have_text("On a call")
        button, state = partner.locator("#help-button"), partner.locator("#help-state")
        await button.click()
        await expect(state).to_contain_text("Sent at")
        await expect(button).to_have_text("Help requested")
        await expect(button).to_be_disabled()  # no second request by a nervous double click
        await sup.locator("#help [data-help]").get_by_role("button", name="I\u2019m going").click()
        await expect(state).to_have_text("sup is coming to help you.")
        await expect(button).to_be_enabled()
        await _end(agent, "call-4")
        await expect(partner.locator("#call-state")).to_have_text("Call ended")
        await expect(state).to_have_text("Press to call a supervisor to your call.")
        await expect(button).to_have_text("Need help")

    _run(tmp_path, scenario, ("ann", "/partner"), ("sup", "/supervisor"))


def test_an_authorization_banner_on_an_ended_call_agrees_with_call_ended(tmp_path):
    async def scenario(console, agent, partner):
        await agent.threat_call("call-5", partner="ann")
        await expect(partner.locator("#call-level")).to_have_text("Alert")
        sup: Browser = await open_browser(console)
        await sup.login("sup")
        await sup.request("authorize_end", call_id="call-5", reason="Threats")
        title = partner.locator("#auth-title")
        await expect(title).to_have_text("You may end this call")
        await _end(agent, "call-5", "authorized_end")
        await expect(partner.locator("#call-state")).to_have_text("Call ended")
        await expect(title).to_have_text("Ending this call was authorized")
        await expect(partner.locator("#auth-text")).to_contain_text("The call has ended.")
        assert "You may close the call" not in await partner.locator("#auth-banner").inner_text()
        await sup.close()

    _run(tmp_path, scenario, ("ann", "/partner"))


def test_open_alerts_are_shown_whole_and_acknowledged_ones_fold_away(tmp_path):
    async def scenario(console, agent, sup):
        for n in range(6):
            await agent.threat_call(f"call-{n}", partner="ann")
        cards = sup.locator("#alerts [data-alert]")
        await expect(cards).to_have_count(6)
        clipped = await sup.evaluate("""() => [...document.querySelectorAll('#alerts, #checkins, #help')]
            .filter((box) => box.scrollHeight > box.clientHeight + 1).map((box) => box.id)""")
        assert clipped == [], f"a feed cuts its cards off: {clipped}"
        for n in range(5):
            await sup.locator("#alerts [data-alert] button.ack").first.click()
            await expect(sup.locator("#alerts-count")).to_have_text(f"{5 - n} open")
        await expect(cards).to_have_count(1 + 3)  # the open one, and the latest three acknowledged
        await expect(sup.locator("#alerts .more")).to_have_text("and 2 older acknowledged alerts (see QA replay)")

    _run(tmp_path, scenario, ("sup", "/supervisor"))
