"""Debian's Chromium driven by Playwright, the same way in every browser test.

Never a downloaded browser: ``executable_path`` is Debian's ``/usr/bin/chromium``
(.ci/run installs it). The flags keep it headless, root-safe and quiet on a
machine with no network beyond loopback.
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


async def launch(playwright):
    """A headless Chromium browser (async Playwright API)."""
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


async def sign_in(page, base: str, user: str, password: str, home: str, *, before_submit=None) -> None:
    """Sign ``user`` in on the login page at ``base`` and wait for ``home`` to be
    connected; ``before_submit(page)`` is awaited with the form filled (a screenshot)."""
    from playwright.async_api import expect

    await page.goto(base + "/")
    await page.fill("#user", user)
    await page.fill("#password", password)
    if before_submit is not None:
        await before_submit(page)
    await page.click("#sign-in")
    await page.wait_for_url(base + home)
    await expect(page.locator("#status")).to_have_text("Connected")
