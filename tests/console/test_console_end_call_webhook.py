"""End-call webhooks through the whole middle of the house: a real agent runtime
linked to a real console (real websockets, real SQLite file), a supervisor's
socket authorizes ending a call that has no control of its own (a timed
transcript call), and a real HTTP server in a thread receives the webhook
(tests/webhook_receiver.py checks its signature on its own). What became of
it reaches the supervisors and the audit log, never the partner."""

from __future__ import annotations

import asyncio
import json
import random
import time

from console_kit import PASSWORD, open_browser, running_console
from webhook_receiver import SECRET, Receiver, check_signature, closed_port

from agent.end_call_webhook import EndCallWebhookSettings
from agent.link import Backoff, ConsoleLink
from agent.runtime import Agent
from agent.transcript_source import TimedTranscript, TranscriptSource

LINES = [
    {"speaker": "customer", "start": 0.2, "end": 1.0, "text": "i will break your neck"},
    {"speaker": "partner", "start": 29.0, "end": 30.0, "text": "goodbye"},
]


def webhook(url: str, **overrides) -> EndCallWebhookSettings:
    values = dict(url=url, secret=SECRET, timeout_s=2.0, max_attempts=3, backoff_initial_s=0.05, backoff_max_s=0.2, backoff_jitter=0.0)
    values.update(overrides)
    return EndCallWebhookSettings(**values)


async def authorized_call(console, settings: EndCallWebhookSettings | None, final_code: str, *, hang_up_first: bool = False):
    """Run a live transcript call on a real agent, have ``sup`` authorize its end,
    wait for the notice ``final_code``; returns (call id, supervisor's and
    partner's messages, the call's end_call_webhook audit details, call_detail)."""
    link = ConsoleLink(console.url, agent_id="agent-1", token=console.tokens["agent-1"], backoff=Backoff(initial=0.02, maximum=0.1),
                       rng=random.Random(1))
    agent = Agent(link, end_call_webhook=settings)
    await agent.start()
    sup = await open_browser(console)
    ann = await open_browser(console)
    try:
        await link.wait_connected(timeout=10)
        await sup.login("sup")
        await ann.login("ann", PASSWORD)
        source = TranscriptSource(TimedTranscript.parse(json.dumps(line) for line in LINES), realtime=True)
        handle = agent.start_transcript_call(source, partner="ann", seat="7", ingress_ids={"twilio_call_sid": "CA123"})
        await sup.expect("call", call__id=handle.call_id)
        await sup.expect("finding", timeout=10)
        await sup.request("authorize_end", call_id=handle.call_id, reason="threat of violence", ref="end")
        await sup.expect("authorization", authorization__call_id=handle.call_id)
        await ann.expect("authorization", authorization__call_id=handle.call_id)  # the partner's banner, as before
        if hang_up_first:  # the customer hangs up before the webhook got through
            handle.stop("hangup")
            await sup.expect("call", call__id=handle.call_id, call__end_reason="hangup")
        await sup.expect("notice", timeout=20, notice__code=final_code)
        await sup.request("call_detail", call_id=handle.call_id)
        detail = (await sup.expect("call_detail"))["detail"]
        await ann.nothing("notice")
        audit = await console.db(console.store.audit_entries, action="end_call_webhook", call_id=handle.call_id)
        handle.stop("hangup")
        await handle.wait()
        return handle.call_id, sup.seen, ann.seen, [json.loads(a["detail"]) | {"who": a["who"]} for a in audit], detail
    finally:
        await sup.close()
        await ann.close()
        await agent.shutdown(grace=5)


def codes(messages, call_id: str) -> list[str]:
    return [m["notice"]["code"] for m in messages if m["type"] == "notice" and m["notice"]["call_id"] == call_id]


def test_delivered_webhook_is_signed_names_the_call_and_is_audited(tmp_path):
    async def main():
        with Receiver() as receiver:
            async with running_console(tmp_path) as console:
                return await authorized_call(console, webhook(receiver.url), "end_call_webhook_delivered"), receiver.received

    (call_id, sup, ann, audit, detail), received = asyncio.run(main())
    [got] = received
    payload = check_signature(SECRET, got.headers["callshield-signature"], got.body, now=time.time())
    assert payload["call_id"] == call_id and payload["ingress_ids"] == {"twilio_call_sid": "CA123"}
    assert (payload["partner"], payload["seat"], payload["source"]) == ("ann", "7", "transcript")
    assert (payload["authorized_by"], payload["reason"], payload["agent_id"]) == ("sup", "threat of violence", "agent-1")
    assert payload["authorization_id"].startswith("auth-")
    assert 1.0 <= payload["call_time_s"] < 29.0  # audio time when the agent got the authorization
    assert codes(sup, call_id) == ["end_call_webhook_delivered"]
    [entry] = audit
    assert entry["who"] == "agent:agent-1" and (entry["outcome"], entry["status"], entry["attempt"]) == ("delivered", 200, 1)
    assert entry["webhook_id"] == payload["event_id"] and entry["authorization_id"] == payload["authorization_id"]
    [notice] = detail["notices"]
    assert notice["code"] == "end_call_webhook_delivered" and "HTTP 200, attempt 1 of 3" in notice["message"]


def test_a_receiver_that_is_down_leaves_every_retry_in_the_audit_log(tmp_path):
    """The call ends (the customer hangs up) while the webhook is still retrying:
    the outcomes that follow are still taken, as notices are."""
    port = closed_port()

    async def main():
        async with running_console(tmp_path) as console:
            return await authorized_call(console, webhook(f"http://127.0.0.1:{port}/end", backoff_initial_s=0.3, backoff_max_s=1.0),
                                         "end_call_webhook_failed", hang_up_first=True)

    call_id, sup, ann, audit, detail = asyncio.run(main())
    assert [(a["outcome"], a["attempt"], a["max_attempts"], a["status"]) for a in audit] == [
        ("retrying", 1, 3, 0), ("retrying", 2, 3, 0), ("failed", 3, 3, 0)]
    assert [a["error"] for a in audit] == ["connection refused", "connection refused", "connection refused; gave up after 3 attempt(s)"]
    assert [a["retry_in"] for a in audit] == [0.3, 0.6, 0.0]
    assert len({a["webhook_id"] for a in audit}) == 1
    assert codes(sup, call_id) == ["end_call_webhook_retrying", "end_call_webhook_retrying", "end_call_webhook_failed"]
    assert detail["call"]["end_reason"] == "hangup"  # the failure came after the end and was stored
    assert [n["code"] for n in detail["notices"]] == codes(sup, call_id)
    assert "the partner ends it" in detail["notices"][-1]["message"]
    assert codes(ann, call_id) == []


def test_a_4xx_is_not_retried(tmp_path):
    async def main():
        with Receiver([(400, {})]) as receiver:
            async with running_console(tmp_path) as console:
                return await authorized_call(console, webhook(receiver.url), "end_call_webhook_failed"), receiver.received

    (call_id, sup, ann, audit, detail), received = asyncio.run(main())
    assert len(received) == 1
    [entry] = audit
    assert (entry["outcome"], entry["status"], entry["attempt"]) == ("failed", 400, 1)
    assert entry["error"] == "HTTP 400 Bad Request; not retried"


def test_without_a_webhook_supervisors_learn_the_partner_ends_the_call(tmp_path):
    async def main():
        async with running_console(tmp_path) as console:
            return await authorized_call(console, None, "end_call_webhook_not_configured")

    call_id, sup, ann, audit, detail = asyncio.run(main())
    [entry] = audit
    assert (entry["outcome"], entry["attempt"], entry["webhook_id"]) == ("not_configured", 0, "")
    [notice] = detail["notices"]
    assert notice["message"] == ("callshield cannot end this call itself (no end-call link to the phone system is set up for it): "
                                 "the partner ends the call.")
    assert "[" not in notice["message"]  # no config words on the floor: the missing setting is in the audit entry
    assert entry["error"] == "no [end_call_webhook] url is configured: the partner ends the call"
