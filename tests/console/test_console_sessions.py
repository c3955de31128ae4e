"""Sign-in and sessions under attack (issue 13 #2, #3, #6, #12): real
sockets, a real SQLite store, and ``callshield users`` on its own store
connection, as another process would run it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from cli.main import main
from console.store import Store
from console_kit import PASSWORD, Browser, FakeClock, open_agent, open_browser, running_console

SIGNED_OUT = 4401  # the close code the pages show as "signed out" (docs/console.md)


async def browser_from(console, address: str) -> Browser:
    """A browser socket from another loopback address (a different client)."""
    return Browser(await connect(console.url + "/ws/browser", local_addr=(address, 0)))


async def answer(browser: Browser) -> str:
    """The code of the reply to a login: ``session`` or the error's code."""
    while True:
        message = await browser.recv_json()
        if message["type"] in ("session", "error"):
            return "session" if message["type"] == "session" else message["code"]


async def try_login(console, user: str, password: str, *, address: str = "127.0.0.1") -> str:
    browser = await browser_from(console, address)
    await browser.request("login", user=user, password=password)
    code = await answer(browser)
    await browser.close()
    return code


async def closed_with(browser: Browser, timeout: float = 5.0) -> tuple[int | None, str | None]:
    await asyncio.wait_for(browser.ws.wait_closed(), timeout)
    return browser.ws.close_code, browser.ws.close_reason


async def eventually(check, timeout: float = 5.0):
    """Await ``check()`` (a coroutine function) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (found := await check()):
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
    return found


@contextlib.asynccontextmanager
async def sweeping_console(data_dir: Path, *, sweep: float = 0.02, **config):
    """A running console (console_kit) whose session sweep runs every ``sweep`` seconds."""
    async with running_console(data_dir, **config) as console:
        console.browsers.sweep_seconds = sweep
        yield console


async def users_command(data_dir: Path, *args: str) -> int:
    """``callshield users ...`` on its own store connection, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, main, ["users", "--data-dir", str(data_dir), *args])


def test_concurrent_guesses_check_no_more_than_the_limit(tmp_path):
    """#2: 24 guesses on 24 sockets at once; the right one is sent last."""
    async def main_():
        async with running_console(tmp_path, login_failures=3) as console:
            guessers = [await open_browser(console) for _ in range(24)]
            passwords = [f"wrong password {i}" for i in range(23)] + [PASSWORD]
            await asyncio.gather(*(g.request("login", user="ann", password=pw) for g, pw in zip(guessers, passwords)))
            codes = await asyncio.gather(*(answer(g) for g in guessers))
            checked = [c for c in codes if c in ("bad_login", "session")]
            assert len(checked) <= 3, codes
            assert codes.count("too_many_attempts") >= 21
            assert len(await console.db(console.store.audit_entries, action="login_failed")) <= 3
            for g in guessers:
                await g.close()

    asyncio.run(main_())


def test_a_guesser_cannot_lock_a_user_out(tmp_path):
    """#12: locks are per (user, address), back off, and spare an address the user signed in from."""
    async def main_():
        clock = FakeClock()
        async with running_console(tmp_path, clock=clock, login_failures=3, lockout_seconds=60) as console:
            assert await try_login(console, "ann", PASSWORD) == "session"  # ann works from 127.0.0.1
            for _ in range(3):  # a guesser on another machine
                assert await try_login(console, "bob", "wrong password", address="127.0.0.2") == "bad_login"
            assert await try_login(console, "bob", PASSWORD, address="127.0.0.2") == "too_many_attempts"
            assert await try_login(console, "bob", PASSWORD) == "session"  # bob elsewhere: not locked out

            for _ in range(3):  # someone at ann's own address guesses her password
                assert await try_login(console, "ann", "wrong password") == "bad_login"
            assert await try_login(console, "ann", PASSWORD) == "too_many_attempts"
            clock.advance(seconds=20)  # paced (lockout_seconds / login_failures), never locked
            assert await try_login(console, "ann", PASSWORD) == "session"

            clock.advance(seconds=41)  # the guesser's lock is over; the next one lasts twice as long
            for _ in range(3):
                assert await try_login(console, "bob", "wrong password", address="127.0.0.2") == "bad_login"
            clock.advance(seconds=61)
            assert await try_login(console, "bob", PASSWORD, address="127.0.0.2") == "too_many_attempts"
            clock.advance(seconds=60)
            assert await try_login(console, "bob", PASSWORD, address="127.0.0.2") == "session"

    asyncio.run(main_())


def test_a_throttled_flood_is_closed_and_audited_once_per_address(tmp_path):
    """#6: throttled sockets are closed; refusals make one audit row per address per window."""
    async def main_():
        clock = FakeClock()
        async with sweeping_console(tmp_path, clock=clock, login_failures=2) as console:
            for _ in range(2):
                assert await try_login(console, "ann", "wrong password") == "bad_login"
            flood = [await open_browser(console) for _ in range(5)]
            for browser in flood:
                for _ in range(3):
                    await browser.request("login", user="ann", password="wrong password")
                    assert await answer(browser) == "too_many_attempts"
            for browser in flood:
                assert (await closed_with(browser))[0] == 1008
            assert await console.db(console.store.audit_entries, action="login_throttled") == []
            assert console.stats.logins_throttled == 15

            clock.advance(minutes=1)
            rows = await eventually(lambda: console.db(console.store.audit_entries, action="login_throttled"))
            assert len(rows) == 1 and rows[0]["who"] == "ann"
            assert rows[0]["detail"].startswith("15 sign-ins refused (too many failures) from 127.0.0.1 since 2025-03-01T09:00:00")
            assert await try_login(console, "ann", PASSWORD) == "too_many_attempts"  # tallied, written at stop
        store = Store.open(tmp_path / "console.db")
        rows = store.audit_entries(action="login_throttled")
        store.close()
        assert [r["detail"].split(" sign-ins")[0] for r in rows] == ["15", "1"]

    asyncio.run(main_())


def test_a_removed_supervisor_cannot_act_from_an_open_tab(tmp_path):
    """#3: rights are checked against the store before every request."""
    async def main_():
        async with sweeping_console(tmp_path, sweep=3600) as console:  # only the check on each request
            agent = await open_agent(console)
            await agent.threat_call("call-1")
            sup = await open_browser(console)
            await sup.login("sup")
            assert await users_command(tmp_path, "remove", "sup") == 0
            assert await sup.refused("authorize_end", call_id="call-1", reason="repeated threats") == "not_authenticated"
            assert await closed_with(sup) == (SIGNED_OUT, "signed out")
            await agent.nothing("end_call_authorized")
            assert await console.db(console.store.authorizations, "call-1") == []
            assert [r["who"] for r in await console.db(console.store.audit_entries, action="signed_out")] == ["sup"]
            await agent.close()

    asyncio.run(main_())


def test_a_tab_resuming_while_its_session_ends_elsewhere_is_refused(tmp_path):
    """Revoke on logout, with no window: a tab's resume reads the session, and
    before the tab holds the token the session is ended on another replica and
    word of it arrives here (so that replica's check of this one's sockets
    cannot see the tab yet). The stale read is read again, and the tab is
    refused instead of being signed in until the next sweep."""
    async def main_():
        async with sweeping_console(tmp_path, sweep=3600) as console:  # no sweep to close the window by luck
            loop = asyncio.get_running_loop()
            session = await (await open_browser(console)).login("bob")
            real_read, pending = console.store.session, []

            def read_then_logout_elsewhere(token):  # runs on the store's thread
                found = real_read(token)
                if not pending:
                    console.store.end_session(token)  # the other replica's logout, committed
                    loop.call_soon_threadsafe(lambda: pending.append(loop.create_task(console.browsers.sessions_changed())))
                return found  # alive when it was read

            console.store.session = read_then_logout_elsewhere
            tab = await open_browser(console)
            assert await tab.refused("resume", token=session["token"]) == "not_authenticated"
            await asyncio.gather(*pending)
            assert await tab.refused("list_calls") == "not_authenticated"

    asyncio.run(main_())


def test_a_resume_reads_its_session_again_a_bounded_number_of_times(tmp_path):
    """While other sessions keep ending during every read, a resume is refused
    after RESUME_READS reads (the page resumes again) rather than reading forever;
    when they stop, it signs in."""
    from console.browsers import RESUME_READS

    async def main_():
        async with sweeping_console(tmp_path, sweep=3600) as console:
            loop = asyncio.get_running_loop()
            session = await (await open_browser(console)).login("bob")
            real_read, reads, busy = console.store.session, [], [True]

            def read_while_others_log_out(token):  # runs on the store's thread
                reads.append(token)
                if busy[0]:  # another session ends during this read
                    loop.call_soon_threadsafe(setattr, console.browsers, "_sessions_ended", console.browsers._sessions_ended + 1)
                return real_read(token)

            console.store.session = read_while_others_log_out
            tab = await open_browser(console)
            assert await tab.refused("resume", token=session["token"]) == "not_authenticated"
            assert len(reads) == RESUME_READS
            busy[0] = False
            await tab.request("resume", token=session["token"])
            await tab.expect("session")
            await tab.expect("snapshot")

    asyncio.run(main_())


def test_a_socket_that_signs_in_again_during_a_sweep_keeps_its_new_session(tmp_path):
    """The sweep reads the sessions of the tokens its sockets hold; a socket
    that signs in again while that read runs holds a newer token, which the
    read did not cover, and is not signed out for it."""
    async def main_():
        async with sweeping_console(tmp_path, sweep=3600) as console:
            loop = asyncio.get_running_loop()
            sup = await open_browser(console)
            first = await sup.login("sup")
            link = next(iter(console.screens.links))
            real_read, done = console.store.live_sessions, []

            def read_while_signing_in_again(tokens):  # runs on the store's thread
                found = real_read(tokens)
                if not done:
                    console.store.end_session(first["token"])  # the old session is gone ...
                    token, _ = console.store.create_session("sup", 1)  # ... and the socket signed in anew
                    loop.call_soon_threadsafe(console.screens.sign_in, link, "sup", "supervisor", token)
                    done.append(token)
                return found

            console.store.live_sessions = read_while_signing_in_again
            await console.browsers.sessions_changed()
            assert link.token == done[0] and not sup.ws.close_code
            await sup.request("list_calls", ref="still")
            await sup.expect("calls", ref="still")

    asyncio.run(main_())


def test_open_sockets_are_signed_out_when_their_session_ends(tmp_path):
    """#3: `users passwd`, `users remove`, expiry and logout in another tab close open sockets."""
    async def main_():
        clock = FakeClock()
        async with sweeping_console(tmp_path, clock=clock, session_hours=1) as console:
            ann, quinn, sup = [await open_browser(console) for _ in range(3)]
            for browser, name in ((ann, "ann"), (quinn, "quinn"), (sup, "sup")):
                await browser.login(name)
            bob_tab1 = await open_browser(console)
            session = await bob_tab1.login("bob")
            bob_tab2 = await open_browser(console)
            await bob_tab2.request("resume", token=session["token"])
            await bob_tab2.expect("snapshot")

            assert await users_command(tmp_path, "passwd", "ann", "--generate") == 0
            assert await closed_with(ann) == (SIGNED_OUT, "signed out")
            assert await users_command(tmp_path, "remove", "quinn") == 0
            assert await closed_with(quinn) == (SIGNED_OUT, "signed out")

            await bob_tab1.request("logout", ref="out")
            await bob_tab1.expect("ok", ref="out")
            assert await closed_with(bob_tab2) == (SIGNED_OUT, "signed out")
            assert await bob_tab1.refused("list_calls") == "not_authenticated"  # the tab itself stays, signed out

            clock.advance(hours=1, seconds=1)
            assert await closed_with(sup) == (SIGNED_OUT, "signed out")
            assert console.stats.browsers_signed_out == 4

    asyncio.run(main_())


@pytest.mark.browser
def test_the_page_of_a_removed_user_shows_signed_out(tmp_path):
    """#3 as a person sees it: the supervisor page goes back to sign-in, saying why."""
    from playwright.async_api import async_playwright, expect

    from browser import launch

    async def main_():
        async with sweeping_console(tmp_path, sweep=0.05) as console, async_playwright() as pw:
            browser = await launch(pw)
            try:
                page = await browser.new_page()
                await page.goto(console.http_url + "/")
                await page.fill("#user", "sup")
                await page.fill("#password", PASSWORD)
                await page.click("#sign-in")
                await page.wait_for_url(console.http_url + "/supervisor")
                await expect(page.locator("#status")).to_have_text("Connected")
                assert await users_command(tmp_path, "remove", "sup") == 0
                await page.wait_for_url(console.http_url + "/")
                await expect(page.locator("#login-error")).to_have_text("You were signed out: your session has ended.")
                assert await page.evaluate("sessionStorage.getItem('callshield.token')") is None
            finally:
                await browser.close()

    asyncio.run(main_())
