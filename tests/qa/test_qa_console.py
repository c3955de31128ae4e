"""QA on a real console: recordings adopted at call end, served over real HTTP
with ranges to qa/supervisor only and never from outside the recordings
directory; QA list/detail/marks over the browser socket with role checks;
evidence export (HTTP and CLI) then verify; retention at call end and daily."""

from __future__ import annotations

import asyncio
import json
import os
import zipfile

from qa_kit import FakeClock, end_call, get, open_agent, open_browser, p, record_call, running_console

from cli.main import main
from console_kit import store_setting
from kernel.retention import RetentionPolicy
from kernel.recordings import recording_name, sha256_file, sidecar_path, write_sidecar
from console.evidence import rewrite_member, verify_evidence_zip


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def flagged_call(console, agent, call_id: str, *, seconds: float = 2.0, partner: str = "ann"):
    """A threat call whose recording the agent finished before ending the call."""
    info = record_call(console.config.recordings_dir, call_id, seconds)
    await agent.threat_call(call_id, partner=partner)
    await end_call(agent, call_id, at=seconds)
    await until(lambda: _has_recording(console, call_id))
    return info


async def _has_recording(console, call_id):
    return await console.db(console.store.recording, call_id) is not None


def test_recordings_over_http_ranges_roles_and_traversal(tmp_path):
    async def scenario():
        async with running_console(tmp_path) as console:
            agent = await open_agent(console)
            info = await flagged_call(console, agent, "call-7")
            row = await console.db(console.store.recording, "call-7")
            assert row["sha256"] == info.sha256 == sha256_file(info.path) and row["path"] == "call-7.wav"
            assert row["bytes"] == info.bytes and abs(row["duration"] - 2.0) < 1e-6
            audit = await console.db(console.store.audit_entries, action="recording_stored", call_id="call-7")
            assert len(audit) == 1 and info.sha256 in audit[0]["detail"]

            # a symlinked recording pointing at the store, adopted like any other
            (console.config.recordings_dir / "evil-call.wav").symlink_to(console.config.store_path)
            (console.config.recordings_dir / "evil-call.wav.json").write_text(json.dumps(
                {"call_id": "evil-call", "file": "evil-call.wav", "sha256": "0" * 64, "bytes": 1, "duration": 1.0,
                 "finalized_at": "2025-03-01T09:00:00.000Z"}))
            await agent.threat_call("evil-call", partner="bob")
            await end_call(agent, "evil-call")
            await until(lambda: _has_recording(console, "evil-call"))

            tokens = {}
            for user in ("quinn", "sup", "ada", "ann"):
                browser = await open_browser(console)
                tokens[user] = (await browser.login(user))["token"]
                await browser.close()
            port = console.port
            audio = info.path.read_bytes()
            size = len(audio)

            def requests():
                out = {}
                qa = {"Authorization": f"Bearer {tokens['quinn']}"}
                out["full"] = get(port, "/recordings/call-7.wav", qa)
                out["ranges"] = [get(port, "/recordings/call-7.wav", {**qa, "Range": f"bytes={a}-{b}"})
                                 for a, b in ((0, 43), (44, 44 + 3999), (size - 100, size - 1), (1000, 1000 + 30000))]
                out["suffix"] = get(port, "/recordings/call-7.wav", {**qa, "Range": "bytes=-500"})
                out["416"] = [get(port, "/recordings/call-7.wav", {**qa, "Range": r}) for r in (f"bytes={size}-", "bytes=50-10", "bytes=x-y")]
                out["roles"] = [get(port, "/recordings/call-7.wav", h)[0] for h in (
                    {"Authorization": f"Bearer {tokens['sup']}"}, {"Authorization": f"Bearer {tokens['ada']}"},
                    {"Authorization": f"Bearer {tokens['ann']}"}, {"Authorization": "Bearer forged"}, {})]
                out["traversal"] = [(path, get(port, path, qa)) for path in (
                    "/recordings/../console.db", "/recordings/%2e%2e/console.db", "/recordings/%2e%2e%2fconsole.db.wav",
                    "/recordings/..%2Fconsole.db.wav", "/recordings/" + str(console.config.store_path),
                    "/recordings//" + str(console.config.store_path) + ".wav", "/recordings/evil-call.wav",
                    "/recordings/call-7.wav/../../console.db", "/recordings/unknown.wav", "/recordings/console.db",
                    "/static/../console.db", "/evidence/../console.db")]
                return out

            out = await asyncio.to_thread(requests)
            status, headers, body = out["full"]
            assert status == 200 and body == audio and headers["Accept-Ranges"] == "bytes" and headers["Content-Type"] == "audio/wav"
            for (status, headers, body), (a, b) in zip(out["ranges"], ((0, 43), (44, 4043), (size - 100, size - 1), (1000, 31000))):
                assert status == 206 and body == audio[a:b + 1] and headers["Content-Range"] == f"bytes {a}-{b}/{size}"
                assert int(headers["Content-Length"]) == b - a + 1
            assert out["suffix"][0] == 206 and out["suffix"][2] == audio[-500:]
            assert all(s == 416 and h["Content-Range"] == f"bytes */{size}" for s, h, _ in out["416"])
            assert out["roles"] == [200, 200, 403, 403, 403]
            for path, (status, _, body) in out["traversal"]:
                assert status in (403, 404), path
                assert b"SQLite format" not in body, path
            refused = await console.db(console.store.audit_entries, action="refused")
            assert sum("recordings of call call-7" in e["detail"] for e in refused) == 3
            await agent.close()

    asyncio.run(scenario())


def test_qa_requests_marks_and_role_checks(tmp_path):
    async def scenario():
        async with running_console(tmp_path) as console:
            agent = await open_agent(console)
            await flagged_call(console, agent, "call-1", partner="ann")
            await agent.threat_call("call-2", partner="bob", text="you are a liar and i will break your neck")
            await end_call(agent, "call-2")
            await agent.send(agent.event(p.CallStarted, call_id="quiet", partner="bob", seat="3", source="transcript", started_at="2025-03-01T10:00:00.000Z"))
            await end_call(agent, "quiet")

            qa = await open_browser(console)
            await qa.login("quinn")
            await qa.request("qa_calls")
            listing = await qa.expect("qa_calls")
            assert sorted(c["id"] for c in listing["calls"]) == ["call-1", "call-2"]  # flagged only
            assert listing["counts"]["calls"] == 2 and listing["counts"]["by_category"] == {"threat": 2}
            assert listing["partners"] == ["ann", "bob"] and listing["categories"] == ["threat"]
            for filters, expected in (({"partner": "bob"}, ["call-2"]), ({"category": "insult"}, []), ({"level": "alert"}, ["call-1", "call-2"]),
                                      ({"since": "2025-03-02"}, []), ({"until": "2025-03-01"}, ["call-1", "call-2"])):
                await qa.request("qa_calls", **filters)
                got = await qa.expect("qa_calls")
                assert sorted(c["id"] for c in got["calls"]) == expected, filters
            assert await qa.refused("qa_calls", since="yesterday") == "bad_date"

            await qa.request("qa_call", call_id="call-1")
            detail = (await qa.expect("qa_call"))["detail"]
            assert detail["call"]["id"] == "call-1" and detail["utterances"][0]["text"] == "i will break your neck"
            finding = detail["findings"][0]
            assert finding["mark"] is None and finding["category"] == "threat"
            rec = detail["recording"]
            assert rec["url"].startswith("/recordings/call-1.wav?user=quinn&exp=") and abs(rec["duration"] - 2.0) < 1e-6
            loud = detail["loudness"]
            assert abs(loud["step"] - 0.1) < 1e-9 and len(loud["customer"]) == len(loud["partner"]) == 20
            assert max(loud["customer"][8:12]) > max(loud["customer"][:4]) + 10  # the loud stretch shows
            status, _, body = await asyncio.to_thread(get, console.port, rec["url"], {"Range": "bytes=0-3"})
            assert status == 206 and body == b"RIFF"
            await qa.request("qa_call", call_id="call-2")
            assert (await qa.expect("qa_call"))["detail"]["recording"] is None  # no recording arrived for it

            await qa.request("qa_mark", finding_id=finding["id"], verdict="confirmed", note="clear threat")
            mark = (await qa.expect("qa_marked"))["mark"]
            assert mark["verdict"] == "confirmed" and mark["by"] == "quinn" and mark["call_id"] == "call-1"
            await qa.request("qa_mark", finding_id=finding["id"], verdict="false_alarm", note="joke between friends")
            assert (await qa.expect("qa_marked"))["mark"]["verdict"] == "false_alarm"  # the latest verdict counts
            assert await qa.refused("qa_mark", finding_id=finding["id"], verdict="maybe") == "bad_verdict"
            assert await qa.refused("qa_mark", finding_id=99999, verdict="confirmed") == "no_finding"
            await qa.request("qa_calls")
            assert {c["id"]: c["marked"] for c in (await qa.expect("qa_calls"))["calls"]} == {"call-1": 1, "call-2": 0}

            # a partner may do none of it, and nothing changes
            partner = await open_browser(console)
            await partner.login("ann")
            before = await console.db(console.store.qa_marks, "call-1")
            for kind, fields in (("qa_calls", {}), ("qa_call", {"call_id": "call-1"}), ("qa_export", {"call_id": "call-1"}),
                                 ("qa_mark", {"finding_id": finding["id"], "verdict": "confirmed"})):
                assert await partner.refused(kind, **fields) == "forbidden", kind
            assert await console.db(console.store.qa_marks, "call-1") == before
            marks_audit = await console.db(console.store.audit_entries, action="qa_mark", call_id="call-1")
            assert [e["who"] for e in marks_audit] == ["quinn", "quinn"] and "joke between friends" in marks_audit[1]["detail"]
            for browser in (qa, partner):
                await browser.close()
            await agent.close()

        # the marks leave for the detector's tuning
        out = tmp_path / "marks.jsonl"
        assert main(["export", "--qa-marks", str(out), "--data-dir", str(tmp_path)]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["verdict"] == "false_alarm" and rows[0]["rule"] == "threat.harm"
        assert rows[0]["text"] == "i will break your neck" and rows[0]["evidence"] == "break your neck"

    asyncio.run(scenario())


def test_export_then_verify_over_http_and_cli(tmp_path, store_where, capsys, monkeypatch):
    """On both stores: the console's, and ``callshield export`` reading ``[console] store``."""
    config = tmp_path / "callshield.toml"
    config.write_text(f'[console]\nstore = "{store_where}"\n' if isinstance(store_where, str) else "")
    monkeypatch.setenv("CALLSHIELD_CONFIG", str(config))

    async def scenario():
        async with running_console(tmp_path, **store_setting(store_where)) as console:
            agent = await open_agent(console)
            info = record_call(console.config.recordings_dir, "call-9")
            await agent.threat_call("call-9", partner="ann")
            sup = await open_browser(console)
            await sup.login("sup")
            await sup.request("authorize_end", call_id="call-9", reason="threats after two warnings")
            await sup.expect("ok")
            await end_call(agent, "call-9", at=2.0)
            await until(lambda: _has_recording(console, "call-9"))
            qa = await open_browser(console)
            await qa.login("quinn")
            await qa.request("qa_export", call_id="call-9")
            url = (await qa.expect("qa_link"))["url"]
            assert await qa.refused("qa_export", call_id="nope") == "unknown_call"
            status, headers, body = await asyncio.to_thread(get, console.port, url)
            forged = await asyncio.to_thread(get, console.port, url.replace("user=quinn", "user=ann"))
            for browser in (qa, sup):
                await browser.close()
            await agent.close()
            exported = await console.db(console.store.audit_entries, action="evidence_exported", call_id="call-9")
            return info, status, headers, body, forged, exported

    info, status, headers, body, forged, exported = asyncio.run(scenario())
    assert status == 200 and headers["Content-Type"] == "application/zip" and "attachment" in headers["Content-Disposition"]
    assert forged[0] == 403
    assert not list((tmp_path / "exports").iterdir())  # the temporary zip is gone once sent
    downloaded = tmp_path / "download.zip"
    downloaded.write_bytes(body)
    report = verify_evidence_zip(downloaded)
    assert report.ok, report.problems
    assert exported[0]["who"] == "quinn" and report.manifest_sha256 in exported[0]["detail"]
    with zipfile.ZipFile(downloaded) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        auths = [json.loads(line) for line in zf.read("authorizations.jsonl").decode().splitlines()]
        audit = [json.loads(line) for line in zf.read("audit.jsonl").decode().splitlines()]
        assert zf.read("recording.wav") == info.path.read_bytes()
    assert manifest["recording"]["sha256_first_stored"] == info.sha256 and manifest["exported_by"] == "quinn"
    assert auths[0]["reason"] == "threats after two warnings" and auths[0]["by"] == "sup"
    assert {"recording_stored", "authorize_end"} <= {a["action"] for a in audit}

    # the command line, on the store the console left
    out = tmp_path / "cli.zip"
    assert main(["export", "call-9", "--out", str(out), "--data-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: call call-9" in printed and "recording 2.0 s" in printed
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.startswith("OK call call-9:")
    bad = tmp_path / "bad.zip"
    rewrite_member(out, bad, "recording.wav", lambda b: b[:5000] + bytes([b[5000] ^ 1]) + b[5001:])
    assert main(["verify", str(bad)]) == 1
    assert "FAIL recording.wav: SHA-256 differs from the manifest" in capsys.readouterr().out
    # the recording changed on the console's disk after it was stored: the export shows it
    data = bytearray(info.path.read_bytes())
    data[-1] ^= 1
    info.path.write_bytes(bytes(data))
    assert main(["export", "call-9", "--out", str(tmp_path / "late.zip"), "--data-dir", str(tmp_path)]) == 0
    assert "changed since it was first stored" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "late.zip")]) == 1
    assert main(["export", "nope", "--out", str(tmp_path / "x.zip"), "--data-dir", str(tmp_path)]) == 2
    assert "no call 'nope'" in capsys.readouterr().err
    if not isinstance(store_where, str):  # SQLite: the store is a file in the data directory
        assert main(["export", "call-9", "--out", str(tmp_path / "x.zip"), "--data-dir", str(tmp_path / "empty")]) == 2
        assert "no console store" in capsys.readouterr().err


def test_retention_at_call_end_and_daily(tmp_path):
    clock = FakeClock()

    async def scenario():
        policy = RetentionPolicy(flagged_days=90, keep_unflagged_audio=False, keep_unflagged_transcripts=False)
        async with running_console(tmp_path, clock=clock) as console:
            console.qa.policy = policy
            rec_dir = console.config.recordings_dir
            agent = await open_agent(console)
            await flagged_call(console, agent, "flagged")
            # an unflagged call whose audio reached the console (an agent configured to keep it, say)
            record_call(rec_dir, "quiet")
            await agent.send(agent.event(p.CallStarted, call_id="quiet", partner="bob", seat="3", source="wav", started_at="2025-03-01T09:00:00.000Z"))
            await agent.send(agent.event(p.UtteranceFinal, call_id="quiet", speaker="customer", start=0.5, end=1.5, text="thanks for your help"))
            await end_call(agent, "quiet")

            async def quiet_gone():
                calls = {r.call_id: r for r in await console.db(console.store.retention_calls)}
                return calls["quiet"].recording is None and not calls["quiet"].has_transcript

            await until(quiet_gone)
            assert not (rec_dir / "quiet.wav").exists() and (rec_dir / "flagged.wav").exists()
            removed = await console.db(console.store.audit_entries, call_id="quiet")
            assert {"retention_removed_audio", "retention_removed_transcript"} <= {e["action"] for e in removed}

            report = await console.qa.run_cleanup()
            assert report.removed == () and (rec_dir / "flagged.wav").exists()
            clock.advance(days=91)
            report = await console.qa.run_cleanup()
            assert {(r.removal.call_id, r.removal.what) for r in report.removed} == {("flagged", "audio"), ("flagged", "transcript")}
            assert report.lines()[-1].startswith("retention clean-up: 1 recordings")
            assert not (rec_dir / "flagged.wav").exists() and not (rec_dir / "flagged.wav.json").exists()
            row = await console.db(console.store.recording, "flagged")
            assert row["removed_at"] is not None  # the row and its first hash stay, the audio is gone
            detail = await console.db(console.store.call_detail, "flagged")
            assert detail["findings"] and not detail["utterances"]  # findings stay, the transcript went
            qa = await open_browser(console)
            await qa.login("quinn")
            await qa.request("qa_call", call_id="flagged")
            assert (await qa.expect("qa_call"))["detail"]["recording"] is None
            status = (await asyncio.to_thread(get, console.port, "/recordings/flagged.wav", {"Authorization": f"Bearer {(await _token(console))}"}))[0]
            assert status == 404
            await qa.close()
            await agent.close()

    asyncio.run(scenario())


async def _token(console) -> str:
    browser = await open_browser(console)
    token = (await browser.login("quinn"))["token"]
    await browser.close()
    return token


def test_console_start_adopts_recordings_of_calls_that_ended_while_it_was_down(tmp_path):
    async def first():
        async with running_console(tmp_path) as console:
            agent = await open_agent(console)
            await agent.threat_call("late", partner="ann")
            await end_call(agent, "late")
            await agent.close()
            return console.config.recordings_dir

    rec_dir = asyncio.run(first())
    assert not os.path.exists(rec_dir / recording_name("late"))
    info = record_call(rec_dir, "late")  # the file only reached the share afterwards

    async def second():
        async with running_console(tmp_path, users=False) as console:
            async def adopted():
                return await console.db(console.store.recording, "late") is not None
            await until(adopted)  # the start-up clean-up adopts it
            return await console.db(console.store.recording, "late")

    assert asyncio.run(second())["sha256"] == info.sha256


def test_a_recording_whose_sidecar_names_another_call_is_not_adopted(tmp_path):
    """A later call that had this call's id (a PBX reusing a UUID across an
    agent restart) may leave its finished recording under the id until its
    agent renames it: its sidecar's call start is not this call's, so the
    console never adopts it as this call's evidence."""
    from console.qa import adopt_recording
    from console.store import Store

    recordings = tmp_path / "recordings"
    recordings.mkdir()
    store = Store.open(tmp_path / "console.db", clock=FakeClock())
    store.add_user("agent-1", "agent", "token-1")
    for seq, call_id in ((1, "X"), (2, "Y")):
        store.record_event("agent-1", p.CallStarted(seq=seq, event_id=f"{call_id}:1", call_id=call_id, partner="ann", seat="4",
                                                    source="audiosocket", started_at="2025-03-01T09:00:00.000Z", sample_rate=8000))
    info = record_call(recordings, "X")
    write_sidecar("X", info, "2025-03-01T10:05:00.000Z", call_started_at="2025-03-01T10:00:00.000Z")  # the later call's
    assert adopt_recording(store, recordings, "X") is None and store.recording("X") is None
    write_sidecar("X", info, "2025-03-01T09:05:00.000Z", call_started_at="2025-03-01T09:00:00.000Z")  # its own
    assert adopt_recording(store, recordings, "X").sha256 == info.sha256
    info_y = record_call(recordings, "Y")
    write_sidecar("Z", info_y, "2025-03-01T09:05:00.000Z")  # a sidecar naming another id
    assert adopt_recording(store, recordings, "Y") is None
    assert sidecar_path(recordings / recording_name("Y")).exists()  # left as it is, for people to look at
