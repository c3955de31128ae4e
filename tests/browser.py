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
