"""Serving recordings over real HTTP: ranges, credentials, and no way out of the directory."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from websockets.asyncio.server import serve

import console.recordings as recordings
from console.recordings import LinkSigner, QaFiles, RangeNotSatisfiable, StoredRecording, inside, parse_range
from qa_kit import get

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
SESSIONS = {"qa-token": ("qa1", "qa"), "sup-token": ("sup1", "supervisor"), "partner-token": ("mina", "partner")}
ROLES = {user: role for user, role in SESSIONS.values()}


def test_parse_range():
    assert parse_range(None, 100) is None
    assert parse_range("items=0-5", 100) is None  # another unit: ignored
    assert parse_range("bytes=0-1,5-6", 100) is None  # several ranges: whole file
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=95-200", 100) == (95, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-500", 100) == (0, 99)
    for bad in ("bytes=100-", "bytes=5-4", "bytes=-0", "bytes=-", "bytes=a-b", "bytes=1-2-3"):
        with pytest.raises(RangeNotSatisfiable):
            parse_range(bad, 100)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


def test_signed_links_expire_and_bind_path_and_user():
    clock = [NOW]
    signer = LinkSigner(lambda: clock[0], seconds=60)
    link = signer.sign("/recordings/c1.wav", "qa1")
    path, query = link.split("?")
    assert signer.check(path, query) == "qa1"
    assert signer.check("/recordings/c2.wav", query) is None
    assert signer.check(path, query.replace("user=qa1", "user=admin")) is None
    assert signer.check(path, query[:-1] + ("0" if query[-1] != "0" else "1")) is None
    assert LinkSigner(lambda: NOW).check(path, query) is None  # another console's secret
    assert signer.check(path, "user=qa1") is None
    clock[0] = NOW + timedelta(seconds=61)
    assert signer.check(path, query) is None


def test_inside_refuses_everything_outside(tmp_path):
    root = tmp_path / "recordings"
    root.mkdir()
    (root / "a.wav").write_bytes(b"x")
    (tmp_path / "console.db").write_bytes(b"secret")
    (root / "out.wav").symlink_to(tmp_path / "console.db")
    (root / "sub").mkdir()
    assert inside(root, "a.wav") == (root / "a.wav").resolve()
    for bad in ("../console.db", str(tmp_path / "console.db"), "out.wav", "sub", "", ".", "missing.wav", "sub/../../console.db"):
        assert inside(root, bad) is None, bad


class Site:
    """A real websockets server answering only through :class:`QaFiles`."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "recordings"
        self.root.mkdir()
        self.audio = bytes(range(256)) * 400  # 102400 bytes standing in for a WAV
        (self.root / "call-1.wav").write_bytes(self.audio)
        (tmp_path / "console.db").write_bytes(b"the store: do not serve")
        (self.root / "escape.wav").symlink_to(tmp_path / "console.db")
        self.stored = {
            "call-1": StoredRecording("call-1.wav"),
            "dotdot": StoredRecording("../console.db"),
            "absolute": StoredRecording(str(tmp_path / "console.db")),
            "symlink": StoredRecording("escape.wav"),
            "vanished": StoredRecording("gone.wav"),
        }
        self.refusals: list[str] = []
        self.signer = LinkSigner(lambda: NOW)

        async def session_role(token):
            return SESSIONS.get(token)

        async def user_role(user):
            return ROLES.get(user)

        async def recording_of(call_id):
            return self.stored.get(call_id)

        async def refusal(who, what):
            self.refusals.append(what)

        self.files = QaFiles(self.root, signer=self.signer, session_role=session_role, user_role=user_role,
                             recording_of=recording_of, on_refusal=refusal)

    async def run(self, requests):
        async def process_request(connection, request):
            return await self.files.answer(request)

        async def never(ws):  # pragma: no cover - every request is answered over HTTP
            await ws.close()

        async with serve(never, "127.0.0.1", 0, process_request=process_request) as server:
            port = server.sockets[0].getsockname()[1]
            return await asyncio.to_thread(lambda: [get(port, *r) for r in requests])


def bearer(token="qa-token"):
    return {"Authorization": f"Bearer {token}"}


def test_range_requests_over_http(tmp_path, monkeypatch):
    site = Site(tmp_path)
    size = len(site.audio)
    requests = [("/recordings/call-1.wav", bearer())]
    for first, last in ((0, 0), (0, 43), (1000, 1999), (size - 10, size - 1), (5000, 5000 + 65535)):
        requests.append(("/recordings/call-1.wav", {**bearer(), "Range": f"bytes={first}-{last}"}))
    requests += [
        ("/recordings/call-1.wav", {**bearer("sup-token"), "Range": "bytes=100000-"}),
        ("/recordings/call-1.wav", {**bearer(), "Range": "bytes=-100"}),
        ("/recordings/call-1.wav", {**bearer(), "Range": f"bytes={size}-"}),
        ("/recordings/call-1.wav", {**bearer(), "Range": "bytes=9-3"}),
    ]
    answers = asyncio.run(site.run(requests))
    status, headers, body = answers[0]
    assert status == 200 and body == site.audio and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "audio/wav" and int(headers["Content-Length"]) == size
    for (status, headers, body), (first, last) in zip(answers[1:6], ((0, 0), (0, 43), (1000, 1999), (size - 10, size - 1), (5000, 5000 + 65535))):
        assert status == 206
        assert body == site.audio[first:last + 1]
        assert headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert int(headers["Content-Length"]) == last - first + 1
    assert answers[6][0] == 206 and answers[6][2] == site.audio[100000:]
    assert answers[7][0] == 206 and answers[7][2] == site.audio[-100:]
    for status, headers, _ in answers[8:]:
        assert status == 416 and headers["Content-Range"] == f"bytes */{size}"


def test_long_ranges_are_sent_in_bounded_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(recordings, "MAX_CHUNK", 1000)
    site = Site(tmp_path)
    (status, headers, body), = asyncio.run(site.run([("/recordings/call-1.wav", {**bearer(), "Range": "bytes=500-"})]))
    assert status == 206 and body == site.audio[500:1500]
    assert headers["Content-Range"] == f"bytes 500-1499/{len(site.audio)}"


def test_who_may_listen(tmp_path):
    site = Site(tmp_path)
    link = site.files.recording_link("call-1", "qa1")
    partner_link = site.files.recording_link("call-1", "mina")
    other_call_link = site.files.recording_link("call-2", "qa1").replace("call-2", "call-1")
    answers = asyncio.run(site.run([
        ("/recordings/call-1.wav", None),
        ("/recordings/call-1.wav", bearer("partner-token")),
        ("/recordings/call-1.wav", bearer("made-up")),
        ("/recordings/call-1.wav", {"Authorization": "Basic cWE6cWE="}),
        (partner_link, None),
        (other_call_link, None),
        (link, None),
        (link, {"Range": "bytes=0-9"}),
    ]))
    assert [a[0] for a in answers] == [403, 403, 403, 403, 403, 403, 200, 206]
    assert answers[-1][2] == site.audio[:10]
    assert all(site.audio[:50] not in a[2] for a in answers[:6])
    assert len(site.refusals) == 6


def test_no_path_ever_leaves_the_recordings_dir(tmp_path):
    site = Site(tmp_path)
    attempts = [
        "/recordings/../console.db",
        "/recordings/..%2fconsole.db",
        "/recordings/%2e%2e/console.db",
        "/recordings/%2e%2e%2fconsole.db.wav",
        "/recordings/..%2Fconsole.db.wav",
        "/recordings/..wav",
        "/recordings//etc/passwd.wav",
        "/recordings/" + str(tmp_path / "console.db"),
        "/recordings/call-1.wav/../../console.db",
        "/recordings/call-1.zip",
        "/evidence/call-1.wav",
        "/recordings/dotdot.wav",
        "/recordings/absolute.wav",
        "/recordings/symlink.wav",
        "/recordings/escape.wav",  # a file name, not a call id the store knows
        "/recordings/vanished.wav",
        "/evidence/call-1.zip",  # no export hook in this site
    ]
    answers = asyncio.run(site.run([(a, bearer()) for a in attempts]))
    for attempt, (status, _, body) in zip(attempts, answers):
        assert status == 404, attempt
        assert b"do not serve" not in body, attempt


def test_hostile_range_authorization_and_links_on_a_real_console(tmp_path, caplog):
    """Issue 13, #11: a 5,000-digit Range is a 416, doubled Range or
    Authorization headers and a link with 5,000 ``&`` a 400, each without a
    traceback; the recording is still served to a proper request."""
    from qa_kit import end_call, open_agent, open_browser, record_call, running_console
    from console_kit import raw_http

    async def scenario():
        async with running_console(tmp_path) as console:
            agent = await open_agent(console)
            info = record_call(console.config.recordings_dir, "call-5")
            await agent.threat_call("call-5")
            await end_call(agent, "call-5", at=2.0)
            async with asyncio.timeout(10):
                while await console.db(console.store.recording, "call-5") is None:
                    await asyncio.sleep(0.02)
            sup = await open_browser(console)
            token = (await sup.login("sup"))["token"]
            port, size = console.port, info.bytes
            head = f"GET /recordings/call-5.wav HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            cases = {
                "range 5,000 digits": head + "Range: bytes=" + "9" * 5000 + "-\r\n",
                "suffix 5,000 digits": head + "Range: bytes=-" + "1" * 5000 + "\r\n",
                "end 5,000 digits": head + "Range: bytes=0-" + "7" * 5000 + "\r\n",
                "range 20 digits": head + "Range: bytes=99999999999999999999-\r\n",
                "doubled range": head + "Range: bytes=0-10\r\nRange: bytes=5-\r\n",
                "doubled authorization": head + "Authorization: Bearer x\r\n",
                "5,000 &": f"GET /recordings/call-5.wav?{'&' * 5000} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n",
                "fine": head + "Range: bytes=0-99\r\n",
            }
            return {name: await asyncio.to_thread(raw_http, port, request) for name, request in cases.items()}, size

    answers, size = asyncio.run(scenario())
    for name in ("range 5,000 digits", "suffix 5,000 digits", "end 5,000 digits", "range 20 digits"):
        status, headers, _ = answers[name]
        assert status == 416 and headers["content-range"] == f"bytes */{size}", (name, status)
    assert answers["doubled range"][:3:2] == (400, b"more than one Range header\n")
    assert answers["doubled authorization"][:3:2] == (400, b"more than one Authorization header\n")
    assert answers["5,000 &"][0] == 400 and b"too many query fields" in answers["5,000 &"][2]
    status, headers, body = answers["fine"]
    assert status == 206 and len(body) == 100 and headers["content-range"] == f"bytes 0-99/{size}"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
