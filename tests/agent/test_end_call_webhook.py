"""The end-call webhook (agent/end_call_webhook.py).

Units: the signature (checked against an HMAC computed here by hand and by
the receiver's independent check), its verifier, the backoff schedule and
``Retry-After``, the payload, the settings. Component: a real HTTP(S) server
in a thread receives the webhooks (tests/webhook_receiver.py) and checks
each signature on its own; connection refused, a receiver that never
answers, 5xx, 429, 4xx, an untrusted certificate; the bounds (one delivery
per call, ``max_pending``) and shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from webhook_receiver import SECRET, TLS, Mute, Receiver, check_signature, closed_port

from agent.call import CallInfo, ingress_ids
from agent.end_call_webhook import (
    EndCallWebhook,
    EndCallWebhookSettings,
    WebhookError,
    end_call_payload,
    retry_after_seconds,
    signature,
    verify_signature,
)
from kernel.errors import ConfigError
from kernel.protocol import EndCallAuthorized, EndCallWebhookOutcome

T0 = datetime(2026, 12, 6, 21, 0, 0, tzinfo=timezone.utc)
INFO = CallInfo(call_id="9b1e.2", partner="ann", seat="204", source_kind="siprec", sample_rate=8000,
                started_at="2026-12-06T20:59:00.000Z", ingress_ids=ingress_ids({"siprec_session_id": "abc==", "audiosocket_uuid": ""}))
AUTH = EndCallAuthorized(call_id="9b1e.2", authorization_id="auth-00ff", by="sue", reason="threats <b>&</b> \"slurs\" ünïcode",
                         authorized_at="2026-12-06T20:59:58.000Z")


def settings(url: str, **overrides) -> EndCallWebhookSettings:
    values = dict(url=url, secret=SECRET, timeout_s=2.0, max_attempts=3, backoff_initial_s=0.05, backoff_max_s=0.2, backoff_jitter=0.0)
    values.update(overrides)
    return EndCallWebhookSettings(**values)


def dispatcher(url: str, **overrides) -> tuple[EndCallWebhook, list[EndCallWebhookOutcome]]:
    outcomes: list[EndCallWebhookOutcome] = []
    webhook = EndCallWebhook(settings(url, **overrides), publish=outcomes.append, agent_id="floor-2", site="2nd floor",
                             rng=random.Random(1))
    return webhook, outcomes


def deliver(url: str, *, calls=(INFO,), **overrides) -> tuple[EndCallWebhook, list[EndCallWebhookOutcome]]:
    async def main():
        webhook, outcomes = dispatcher(url, **overrides)
        for info in calls:
            webhook.request(info, AUTH, call_time_s=61.23456)
        await webhook.idle(30)
        return webhook, outcomes

    return asyncio.run(main())


# --------------------------------------------------------------------------- units: signature


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"type":"end_call"}'
    header = signature(SECRET, 1765054800, body)
    expected = hmac.new(SECRET.encode(), b"1765054800." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1765054800,v1={expected}"
    assert check_signature(SECRET, header, body, now=1765054800) == {"type": "end_call"}


def test_verify_accepts_the_signed_body_and_refuses_anything_else():
    body = b'{"event_id":"e1"}'
    now = 1765054800
    header = signature(SECRET, now, body)
    assert verify_signature(SECRET, header, body, now=now + 299) == now
    assert verify_signature(SECRET, f"t={now},v1={'0' * 64},v1={header.split('v1=')[1]}", body, now=now) == now  # a rotated secret's two v1
    for bad_header, bad_body, code in [
        (header, body + b" ", "bad_signature"),                              # body changed
        (signature("another-secret-0123456789", now, body), body, "bad_signature"),  # wrong secret
        (header.replace(f"t={now}", f"t={now + 1}"), body, "bad_signature"),  # timestamp changed
        (f"v1={header.split('v1=')[1]}", body, "bad_signature"),            # no timestamp
        (f"t={now}", body, "bad_signature"),                                # no signature
        ("", body, "bad_signature"),
    ]:
        with pytest.raises(WebhookError) as refused:
            verify_signature(SECRET, bad_header, bad_body, now=now)
        assert refused.value.code == code
    with pytest.raises(WebhookError) as stale:  # a replay ten minutes later
        verify_signature(SECRET, header, body, now=now + 600)
    assert stale.value.code == "stale_signature"


# --------------------------------------------------------------------------- units: backoff and Retry-After


def test_the_backoff_doubles_up_to_its_cap_and_retry_after_is_honoured_within_it():
    webhook, _ = dispatcher("https://cti.example/end", backoff_initial_s=1.0, backoff_max_s=30.0)
    assert [webhook.delay(n) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert webhook.delay(0, retry_after=10) == 10.0    # the receiver asks for longer: granted
    assert webhook.delay(3, retry_after=2) == 8.0      # shorter than the backoff: the backoff
    assert webhook.delay(0, retry_after=3600) == 30.0  # never longer than backoff_max_s


def test_jitter_only_shortens_each_wait_by_at_most_its_fraction():
    webhook, _ = dispatcher("https://cti.example/end", backoff_initial_s=1.0, backoff_max_s=30.0, backoff_jitter=0.2)
    for n in range(6):
        base = min(30.0, 2.0 ** n)
        waits = [webhook.delay(n) for _ in range(200)]
        assert all(0.8 * base <= w <= base for w in waits)
        assert len(set(waits)) > 1


def test_retry_after_is_read_as_seconds_or_an_http_date():
    now = T0.timestamp()
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds("Sat, 06 Dec 2026 21:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Sat, 06 Dec 2026 20:00:00 GMT", now) == 0.0  # in the past: now
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("", now) is None
    assert retry_after_seconds(None, now) is None
    assert retry_after_seconds("9" * 40, now) == 1e8  # bounded


# --------------------------------------------------------------------------- units: payload and settings


def test_the_payload_names_the_call_who_why_and_when():
    body = end_call_payload(INFO, AUTH, event_id="e-1", agent_id="floor-2", site="2nd floor", call_time_s=61.23456,
                            requested_at="2026-12-06T21:00:00.000Z")
    assert body.isascii()  # any text escaped: the signed bytes are the same in every encoding
    assert json.loads(body) == {
        "type": "end_call", "version": 1, "event_id": "e-1", "authorization_id": "auth-00ff",
        "call_id": "9b1e.2", "ingress_ids": {"siprec_session_id": "abc=="}, "source": "siprec",
        "partner": "ann", "seat": "204", "call_started_at": "2026-12-06T20:59:00.000Z",
        "agent_id": "floor-2", "site": "2nd floor",
        "authorized_by": "sue", "reason": "threats <b>&</b> \"slurs\" ünïcode", "authorized_at": "2026-12-06T20:59:58.000Z",
        "call_time_s": 61.235, "requested_at": "2026-12-06T21:00:00.000Z",
    }


def test_settings_read_the_secret_from_a_file_or_the_environment_and_never_show_it(tmp_path):
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(SECRET + "\n")
    from_file = EndCallWebhookSettings.from_section({"url": "https://cti.example/end", "secret_file": str(secret_file)}, env={})
    assert from_file.secret == SECRET
    assert SECRET not in repr(from_file)
    from_env = EndCallWebhookSettings.from_section({"url": "https://cti.example/end"}, env={"CALLSHIELD_WEBHOOK_SECRET": SECRET})
    assert from_env.secret == SECRET
    assert EndCallWebhookSettings.from_section({}, env={}).url == ""  # no url: no webhook, no secret needed


@pytest.mark.parametrize("table, words", [
    ({"url": "https://cti.example/end"}, "needs a secret"),
    ({"url": "https://cti.example/end", "secret": "short"}, "shorter than 16"),
    ({"url": "ftp://cti.example/end", "secret": SECRET}, "http://"),
    ({"url": "https://user:pw@cti.example/end", "secret": SECRET}, "user or password"),
    ({"url": "https://cti.example:99999/end", "secret": SECRET}, "bad port"),
    ({"url": "https://cti.example/end", "secret": SECRET, "secret_file": "/x"}, "not both"),
    ({"url": "https://cti.example/end", "secret_file": "/no/such/file"}, "secret_file /no/such/file: cannot read it"),
    ({"sources": ["SIP REC"]}, "not a source kind"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"backoff_initial_s": 5.0, "backoff_max_s": 1.0}, "backoff_initial_s"),
    ({"backoff_jitter": 2.0}, "backoff_jitter"),
    ({"max_pending": 0}, "max_pending"),
    ({"timeout": 5}, "unknown key"),
])
def test_bad_settings_are_one_line_config_errors(table, words):
    with pytest.raises(ConfigError) as error:
        EndCallWebhookSettings.from_section(table, env={})
    assert words in error.value.message and error.value.message.startswith("[end_call_webhook]")
    assert SECRET not in error.value.message


def test_which_calls_it_applies_to():
    default = EndCallWebhookSettings()
    assert default.applies_to("siprec", has_control=False) and default.applies_to("wav", has_control=False)
    assert not default.applies_to("audiosocket", has_control=True)  # the agent hangs those up itself
    chosen = EndCallWebhookSettings(sources=("siprec", "audiosocket"))
    assert chosen.applies_to("audiosocket", has_control=True) and not chosen.applies_to("wav", has_control=False)


# --------------------------------------------------------------------------- component: a real receiver


def test_a_real_receiver_gets_a_signed_request_it_verifies_on_its_own():
    with Receiver() as receiver:
        webhook, outcomes = deliver(receiver.url)
    [got] = receiver.received
    payload = check_signature(SECRET, got.headers["callshield-signature"], got.body, now=time.time())
    assert got.method == "POST" and got.path == "/callshield/end-call?key=k"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["idempotency-key"] == got.headers["callshield-event-id"] == payload["event_id"]
    assert got.headers["callshield-attempt"] == "1"
    assert payload["call_id"] == "9b1e.2" and payload["ingress_ids"] == {"siprec_session_id": "abc=="}
    assert (payload["authorized_by"], payload["reason"], payload["call_time_s"]) == ("sue", AUTH.reason, 61.235)
    [outcome] = outcomes
    assert (outcome.outcome, outcome.status, outcome.attempt, outcome.max_attempts) == ("delivered", 200, 1, 3)
    assert outcome.call_id == "9b1e.2" and outcome.authorization_id == "auth-00ff" and outcome.webhook_id == payload["event_id"]
    assert webhook.stats.delivered == 1 and webhook.pending == 0


def test_https_with_the_receivers_certificate_as_ca_file(tmp_path):
    with Receiver(tls=True) as receiver:
        _, outcomes = deliver(receiver.url, ca_file=TLS / "console.crt")
        _, untrusted = deliver(receiver.url)  # the system's trust store does not know the test certificate
    assert [o.outcome for o in outcomes] == ["delivered"]
    check_signature(SECRET, receiver.received[0].headers["callshield-signature"], receiver.received[0].body, now=time.time())
    [failed] = untrusted
    assert failed.outcome == "failed" and failed.attempt == 1  # a configuration error: not retried
    assert "not trusted" in failed.error and "not retried" in failed.error


def test_5xx_is_retried_with_the_same_event_id_and_a_fresh_signature():
    with Receiver([(503, {}), (502, {})]) as receiver:
        webhook, outcomes = deliver(receiver.url)
    assert [(o.outcome, o.attempt, o.status) for o in outcomes] == [("retrying", 1, 503), ("retrying", 2, 502), ("delivered", 3, 200)]
    assert outcomes[0].error == "HTTP 503 Service Unavailable" and outcomes[0].retry_in == 0.05
    assert outcomes[1].retry_in == 0.1  # doubled
    assert len({o.event_id for o in outcomes}) == 3 and len({o.webhook_id for o in outcomes}) == 1
    ids = {r.headers["idempotency-key"] for r in receiver.received}
    assert len(ids) == 1 and [r.headers["callshield-attempt"] for r in receiver.received] == ["1", "2", "3"]
    bodies = {r.body for r in receiver.received}
    assert len(bodies) == 1  # the same request every time...
    for r in receiver.received:  # ...each attempt signed on its own
        check_signature(SECRET, r.headers["callshield-signature"], r.body, now=time.time())
    assert webhook.stats.retries == 2


def test_429_waits_as_long_as_retry_after_asks():
    with Receiver([(429, {"Retry-After": "1"})]) as receiver:
        _, outcomes = deliver(receiver.url, backoff_max_s=5.0)
    assert [(o.outcome, o.status) for o in outcomes] == [("retrying", 429), ("delivered", 200)]
    assert outcomes[0].retry_in == 1.0
    first, second = receiver.received
    assert second.at - first.at >= 0.95


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
def test_other_answers_are_final(status):
    with Receiver([(status, {})]) as receiver:
        webhook, outcomes = deliver(receiver.url)
    assert len(receiver.received) == 1
    [failed] = outcomes
    assert (failed.outcome, failed.status, failed.attempt) == ("failed", status, 1)
    assert failed.error.startswith(f"HTTP {status}") and "not retried" in failed.error
    assert webhook.stats.failed == 1 and webhook.stats.retries == 0


def test_a_receiver_that_is_down_is_tried_max_attempts_times():
    webhook, outcomes = deliver(f"http://127.0.0.1:{closed_port()}/end")
    assert [(o.outcome, o.attempt, o.status) for o in outcomes] == [("retrying", 1, 0), ("retrying", 2, 0), ("failed", 3, 0)]
    assert outcomes[0].error == "connection refused"
    assert outcomes[-1].error == "connection refused; gave up after 3 attempt(s)"
    assert webhook.stats.failed == 1


def test_a_receiver_that_never_answers_times_out_each_attempt():
    with Mute() as mute:
        started = time.monotonic()
        _, outcomes = deliver(f"http://127.0.0.1:{mute.port}/end", timeout_s=0.3, max_attempts=2)
        took = time.monotonic() - started
    assert [o.outcome for o in outcomes] == ["retrying", "failed"]
    assert outcomes[0].error == "no answer within 0.3 s"
    assert 0.6 <= took < 5


def test_an_answer_that_is_not_http_is_retried():
    async def main():
        async def garbage(reader, writer):
            await reader.read(100)
            writer.write(b"SSH-2.0-OpenSSH\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        webhook, outcomes = dispatcher(f"http://127.0.0.1:{port}/end", max_attempts=2)
        webhook.request(INFO, AUTH, call_time_s=1.0)
        await webhook.idle(10)
        server.close()
        return outcomes

    outcomes = asyncio.run(main())
    assert [o.outcome for o in outcomes] == ["retrying", "failed"]
    assert "not HTTP" in outcomes[0].error


# --------------------------------------------------------------------------- bounds and shutdown


def call(n: int) -> CallInfo:
    return CallInfo(call_id=f"call-{n}", partner="ann", seat="1", source_kind="siprec", sample_rate=8000, started_at="2026-12-06T20:00:00.000Z")


def test_one_delivery_per_call_and_the_oldest_dropped_beyond_max_pending():
    async def main():
        webhook, outcomes = dispatcher(f"http://127.0.0.1:{closed_port()}/end", max_pending=2, max_attempts=100,
                                       backoff_initial_s=5.0, backoff_max_s=5.0)
        assert webhook.request(call(1), AUTH, call_time_s=1.0)
        assert not webhook.request(call(1), AUTH, call_time_s=2.0)  # one per call
        assert webhook.request(call(2), AUTH, call_time_s=1.0)
        assert webhook.request(call(3), AUTH, call_time_s=1.0)  # call 1's delivery makes room
        await asyncio.sleep(0.3)
        assert webhook.pending == 2
        await webhook.close(grace=0)  # shutdown: the rest reported failed
        return webhook, outcomes

    webhook, outcomes = asyncio.run(main())
    finals = {o.call_id: o for o in outcomes if o.outcome == "failed"}
    assert set(finals) == {"call-1", "call-2", "call-3"}
    assert finals["call-1"].error == "dropped: more than 2 end-call webhooks were pending"
    assert finals["call-2"].error == finals["call-3"].error == "the agent shut down before it was delivered"
    assert (webhook.stats.requested, webhook.stats.duplicates, webhook.stats.dropped, webhook.stats.failed) == (3, 1, 1, 3)
    assert webhook.pending == 0


def test_shutdown_lets_a_delivery_in_flight_finish_within_the_grace():
    with Receiver([(503, {})]) as receiver:
        async def main():
            webhook, outcomes = dispatcher(receiver.url, backoff_initial_s=0.3)
            webhook.request(INFO, AUTH, call_time_s=1.0)
            await webhook.close(grace=10)
            return outcomes

        outcomes = asyncio.run(main())
    assert [o.outcome for o in outcomes] == ["retrying", "delivered"]


def test_the_clock_signs_and_stamps():
    """Wall time comes from the clock passed in: a receiver with a clock an hour off refuses the request."""
    clock = lambda: T0 - timedelta(hours=1)  # noqa: E731
    with Receiver() as receiver:
        async def main():
            outcomes = []
            webhook = EndCallWebhook(settings(receiver.url), publish=outcomes.append, agent_id="a", clock=clock)
            webhook.request(INFO, AUTH, call_time_s=1.0)
            await webhook.idle(10)

        asyncio.run(main())
    got = receiver.received[0]
    assert json.loads(got.body)["requested_at"] == "2026-12-06T20:00:00.000Z"
    check_signature(SECRET, got.headers["callshield-signature"], got.body, now=(T0 - timedelta(hours=1)).timestamp())
    with pytest.raises(AssertionError, match="stale"):
        check_signature(SECRET, got.headers["callshield-signature"], got.body, now=T0.timestamp())


# --------------------------------------------------------------------------- the receiver's documentation


DOC = Path(__file__).resolve().parents[2] / "docs" / "end-call-webhook.md"


def test_the_verification_snippet_in_the_docs_accepts_a_signed_request_and_refuses_replays():
    snippet = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)[1]
    namespace: dict = {}
    exec(snippet, namespace)  # the receiver's code, as a site would copy it
    verify = namespace["verify"]
    body = end_call_payload(INFO, AUTH, event_id="e-1", agent_id="floor-2", site="", call_time_s=1.0, requested_at="2026-12-06T21:00:00.000Z")
    header = signature(SECRET, 1765054800, body)
    assert verify(SECRET.encode(), header, body, now=1765054800 + 30)["event_id"] == "e-1"
    with pytest.raises(ValueError, match="replay"):
        verify(SECRET.encode(), header, body, now=1765054800 + 301)
    with pytest.raises(ValueError, match="bad signature"):
        verify(SECRET.encode(), header, body.replace(b"sue", b"sam"), now=1765054800)
    with pytest.raises(ValueError, match="malformed"):
        verify(SECRET.encode(), "v1=00", body, now=1765054800)


def test_the_docs_list_every_field_of_the_payload():
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## The request", 1)[1].split("## Verifying", 1)[0]
    documented = set()
    for row in re.findall(r"^\| (`[^|]+`) \|", table, re.M):
        documented |= set(re.findall(r"`([a-z_]+)`", row))
    body = end_call_payload(INFO, AUTH, event_id="e", agent_id="a", site="", call_time_s=1.0, requested_at="x")
    assert documented == set(json.loads(body))
