"""The QA page in a real browser (Debian's Chromium through Playwright) on a
real console: a QA user opens a flagged call, clicks a finding and the audio
jumps there (served with HTTP ranges) while the transcript line at that time
is highlighted and scrolled into view; playback moves the transcript along;
a line or the timeline seeks too; a finding is marked; evidence is exported
and verifies."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect
from browser import CHROMIUM, CHROMIUM_ARGS
from qa_kit import PASSWORD, end_call, open_agent, p, record_call, running_console

from console.evidence import verify_evidence_zip

pytestmark = pytest.mark.browser

SECONDS = 30
THREAT_AT = 24
HOSTILE = '<img src=x onerror="window.__pwned=1"> you are a liar'


async def flagged_call(console) -> None:
    """A 30 s recorded call: one line a second, a threat at 24 s, an insult at 3 s."""
    record_call(console.config.recordings_dir, "call-b", SECONDS)
    agent = await open_agent(console)
    await agent.send(agent.event(p.CallStarted, call_id="call-b", partner="ann", seat="7", source="audiosocket",
                                 started_at="2025-03-01T09:00:00.000Z", sample_rate=8000))
    for i in range(SECONDS):
        speaker = "customer" if i % 2 == 0 else "partner"
        text = {3 - 1: "fine", 3: HOSTILE, THREAT_AT: "i will break your neck"}.get(i, f"line {i} of the call")
        if i in (3, THREAT_AT):
            speaker = "customer"
        await agent.send(agent.event(p.UtteranceFinal, call_id="call-b", speaker=speaker, start=float(i), end=i + 0.8, text=text))
    await agent.send(agent.event(p.FindingRaised, call_id="call-b", category="integrity", severity="medium", score=0.8, rule="integrity.liar",
                                 evidence="liar", start=3.0, end=3.8, text=HOSTILE, span=(HOSTILE.index("liar"), HOSTILE.index("liar") + 4)))
    await agent.send(agent.event(p.FindingRaised, call_id="call-b", category="threat", severity="high", score=0.9, rule="threat.harm",
                                 evidence="break your neck", start=float(THREAT_AT), end=THREAT_AT + 0.8, text="i will break your neck", span=(7, 22)))
    await agent.send(agent.event(p.LevelChanged, call_id="call-b", level="alert", previous="none", reason="a threat", at=THREAT_AT + 0.8))
    await end_call(agent, "call-b", at=float(SECONDS))
    async with asyncio.timeout(10):
        while await console.db(console.store.recording, "call-b") is None:
            await asyncio.sleep(0.02)
    await agent.close()


async def current_line(page) -> dict:
    """The highlighted transcript line: its index and whether it is inside the transcript's visible box."""
    return await page.evaluate("""() => {
        const box = document.getElementById('transcript');
        const line = box.querySelector('.line.current');
        if (!line) return {index: -1, visible: false};
        const b = box.getBoundingClientRect(), l = line.getBoundingClientRect();
        return {index: Number(line.dataset.index), visible: l.top >= b.top - 1 && l.bottom <= b.bottom + 1,
                text: line.querySelector('.text').textContent, marks: [...line.querySelectorAll('mark')].map(m => m.textContent)};
    }""")


async def audio_time(page) -> float:
    return await page.evaluate("() => document.getElementById('audio').currentTime")


def test_qa_player_seeks_to_findings_and_follows_playback(tmp_path):
    async def main():
        async with running_console(tmp_path) as console, async_playwright() as pw:
            await flagged_call(console)
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                base = console.http_url
                await page.goto(base + "/")
                await page.fill("#user", "quinn")
                await page.fill("#password", PASSWORD)
                await page.click("#sign-in")
                await page.wait_for_url(base + "/supervisor")
                await page.click("#nav-qa")
                await page.wait_for_url(base + "/qa")
                await expect(page.locator("#status")).to_have_text("Connected")

                row = page.locator('#calls tr[data-call="call-b"]')
                await expect(row).to_contain_text("ann")
                await expect(page.locator("#counts")).to_have_text("1 calls · 2 findings")
                await row.click()
                await expect(page.locator("#transcript .line")).to_have_count(SECONDS)
                await page.wait_for_function(f"() => document.getElementById('audio').duration > {SECONDS - 0.5}", timeout=15000)
                assert await current_line(page) == {"index": 0, "visible": True, "text": "line 0 of the call", "marks": []}

                # click the threat: the audio jumps there, the line at that time is highlighted and in view
                threat = page.locator(f'#findings .finding[data-start="{THREAT_AT}"]')
                await threat.click()
                await page.wait_for_function(f"() => Math.abs(document.getElementById('audio').currentTime - {THREAT_AT}) < 0.05")
                line = await current_line(page)
                assert line == {"index": THREAT_AT, "visible": True, "text": "i will break your neck", "marks": ["break your neck"]}
                assert await page.evaluate("() => document.getElementById('transcript').scrollTop") > 0
                if os.environ.get("CALLSHIELD_SCREENSHOTS"):  # keep a picture of the page for humans
                    Path(os.environ["CALLSHIELD_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
                    await page.screenshot(path=str(Path(os.environ["CALLSHIELD_SCREENSHOTS"]) / "qa.png"), full_page=True)

                # a line seeks too; evidence in a hostile line is marked and shown as text
                await page.locator('#transcript .line[data-index="3"]').click()
                await page.wait_for_function("() => Math.abs(document.getElementById('audio').currentTime - 3) < 0.05")
                line = await current_line(page)
                assert line["index"] == 3 and line["visible"] and line["text"] == HOSTILE and line["marks"] == ["liar"]
                assert await page.evaluate("() => [document.querySelectorAll('#transcript img').length, window.__pwned === undefined]") == [0, True]

                # the timeline: a click at 50% seeks to the middle of the call
                box = await page.locator("#timeline").bounding_box()
                await page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
                await page.wait_for_function(f"() => Math.abs(document.getElementById('audio').currentTime - {SECONDS / 2}) < 0.5")
                assert (await current_line(page))["index"] in (14, 15)

                # playback moves the transcript along
                await page.locator('#transcript .line[data-index="8"]').click()
                await page.evaluate("() => { const a = document.getElementById('audio'); a.muted = true; return a.play(); }")
                await page.wait_for_function("() => document.getElementById('audio').currentTime > 9.2", timeout=15000)
                await page.evaluate("() => document.getElementById('audio').pause()")
                line = await current_line(page)
                assert line["index"] >= 9 and line["visible"]

                # QA marks the threat confirmed, with a note
                await threat.locator("input").fill("clear threat, partner shaken")
                await threat.locator("button.confirm").click()
                await expect(threat.locator(".verdict")).to_contain_text("confirmed")
                marks = await console.db(console.store.qa_marks, "call-b")
                assert [(m["verdict"], m["note"], m["by"]) for m in marks] == [("confirmed", "clear threat, partner shaken", "quinn")]

                # evidence export from the page
                async with page.expect_download() as info:
                    await page.click("#export")
                download = await info.value
                target = tmp_path / "evidence.zip"
                await download.save_as(target)
                await expect(page.locator("#export-state")).to_contain_text("downloaded")
                report = verify_evidence_zip(target)
                assert report.ok, report.problems
                assert "2 findings" in report.summary and "1 QA marks" in report.summary and f"recording {SECONDS}.0 s" in report.summary
                assert errors == []
            finally:
                await browser.close()

    asyncio.run(main())
