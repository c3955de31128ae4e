"""The hostile inputs of ``bench/fuzz_console.py``: seeded generators of
websocket messages (agent and browser protocols) and raw HTTP requests.

A websocket case is a valid template (the agent's messages from
``kernel.protocol``'s dataclasses, so new fields are fuzzed too; the
browser's requests from docs/console.md) with 0-3 mutations: a hostile value
in a field or inside ``words`` (deep nesting, huge integers, NaN/Infinity,
lone surrogates, NUL, oversized text, markup), a field dropped or added, a
wrong ``v``, a wrong ``type`` (unknown, the other side's, the console's own);
or a raw message (not JSON, not an object, unclosed nesting, BOM, duplicate
keys, binary frames, invalid UTF-8, 1.1 MB). Hostile values are spliced into
the JSON text after ``json.dumps``, so the generator never builds them as
Python objects. An HTTP case is one request with duplicate Host, Origin,
Authorization or Range headers, a 5,000-digit Range, traversal paths, odd
methods and versions, oversized or malformed headers, a foreign Host and
Origin on a websocket upgrade (DNS rebinding), or a tampered signed link.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import uuid
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
from kernel import protocol as p  # noqa: E402

sys.set_int_max_str_digits(0)  # the 5,000-digit integers are text here, but keep json.dumps safe
CHANNELS = {"agent-pre": 15, "agent-post": 25, "browser-pre": 12, "browser-sup": 18, "browser-partner": 10, "http": 20}
HOSTILE = {  # label -> JSON text put where a value goes
    "deep-17": "[" * 17 + "]" * 17, "deep-1000": "[" * 1000 + "]" * 1000, "deep-100k": "[" * 100_000 + "]" * 100_000,
    "deep-obj-5000": '{"a":' * 5000 + "1" + "}" * 5000, "int-5000-digits": "9" * 5000, "int-2^64": str(2 ** 64),
    "int-min-1": str(-(2 ** 63) - 1), "int-2^63-1": str(2 ** 63 - 1), "float-1e999": "1e999", "NaN": "NaN",
    "Infinity": "Infinity", "-Infinity": "-Infinity", "lone-surrogate": '"\\ud800"', "low-surrogate": '"a\\udfffb"',
    "nul": '"\\u0000"', "rtl": '"\\u202e"', "text-3000": '"' + "a" * 3000 + '"', "text-200k": '"' + "b" * 200_000 + '"',
    "html": '"<img src=x onerror=alert(1)>"', "sql": "\"' OR 1=1 --\"", "path": '"../../console.db"', "null": "null",
    "true": "true", "zero": "0", "minus-one": "-1", "float": "1.5", "neg-zero": "-0.0", "tiny": "5e-324",
    "empty-str": '""', "blank": '"   "', "list": "[1,2]", "object": '{"x":1}', "empty-list": "[]",
}
RAW = {  # label -> (whole message, frame mode)
    "empty": ("", "text"), "garbage": ("hello", "text"), "open-brace": ("{", "text"), "two-objects": ("{}{}", "text"),
    "single-quotes": ("{'v': 1}", "text"), "json-null": ("null", "text"), "json-list": ("[]", "text"),
    "json-number": ("1", "text"), "json-string": ('"login"', "text"), "deep-unclosed": ("[" * 200_000, "text"),
    "deep-whole": ("[" * 50_000 + "]" * 50_000, "text"), "bom": ("\ufeff" + '{"v":1,"type":"login"}', "text"),
    "trailing": ('{"v":1,"type":"logout"} x', "text"), "comment": ('{"v":1 /* c */}', "text"),
    "binary-json": (b'{"v":1,"type":"list_calls"}', "binary"), "binary-junk": (bytes(range(256)), "binary"),
    "invalid-utf8": (b'{"v":1,"type":"\xed\xa0\x80"}', "badtext"), "dup-keys": ('{"v":1,"v":2,"type":"x","type":"login"}', "text"),
}
BROWSER = {  # browser requests of docs/console.md, with valid-looking fields
    "login": ("user", "password"), "resume": ("token",), "call_detail": ("call_id",), "list_calls": ("limit",),
    "ack_alert": ("alert_id",), "authorize_end": ("call_id", "reason"), "need_help": ("note",), "ack_help": ("help_id",),
    "checkin_done": ("checkin_id", "note"), "list_users": (), "add_user": ("name", "role"),
    "qa_calls": ("since", "until", "category", "level", "partner", "limit"), "qa_call": ("call_id",),
    "qa_mark": ("finding_id", "verdict", "note"), "qa_export": ("call_id",),
}
OTHER_TYPES = ["welcome", "ack", "end_call_authorized", "error", "session", "snapshot", "call", "ok", "", "LOGIN", "x" * 300]
TRAVERSAL = ["/recordings/../console.db", "/recordings/..%2fconsole.db", "/recordings/%2e%2e/console.db",
             "/recordings/%2e%2e%2fconsole.db.wav", "/recordings/....//console.db", "/recordings/..\\console.db",
             "/recordings/../../../../etc/passwd", "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd",
             "/evidence/../console.db", "/recordings/x.wav%00.db", "//etc/passwd", "/recordings/" + "a" * 5000 + ".wav",
             "/static/..%252f..%252fetc/passwd", "/recordings/%c0%ae%c0%ae/console.db"]


@dataclasses.dataclass
class State:
    port: int
    agent_token: str
    tokens: dict  # user -> session token
    recording: str  # a call id with a kept recording ("" if none)
    own_calls: list = dataclasses.field(default_factory=list)
    seq: int = 0


def agent_template(cls: type, st: State, rng: random.Random) -> dict:
    own = st.own_calls[-1] if st.own_calls else str(uuid.uuid4())
    fresh = str(uuid.uuid4())
    st.seq += 1
    values = {"agent_id": "site-a", "token": st.agent_token if rng.random() < 0.3 else "wrong", "site": "bench",
              "seq": st.seq, "event_id": f"{fresh}:1", "call_id": fresh if cls.TYPE == "call_started" else own,
              "partner": "ann", "seat": "1", "source": "audiosocket", "started_at": "2026-01-01T09:00:00.000Z",
              "sample_rate": 8000, "speaker": "customer", "start": 1.0, "end": 2.0, "at": 2.0, "text": "you stupid idiot",
              "words": [{"word": "you", "start": 1.0, "end": 1.2, "conf": 0.9}], "category": "insult", "severity": "medium",
              "score": 0.9, "rule": "insult.bench", "evidence": "stupid idiot", "subtype": None, "span": [4, 16], "why": "",
              "level": "caution", "previous": "none", "reason": "hangup", "suggestion": "", "code": "bench", "message": "m",
              "dropped": 0}
    return {"v": p.VERSION, "type": cls.TYPE, **{f.name: values.get(f.name, "x") for f in dataclasses.fields(cls)}}


def browser_template(kind: str, st: State, rng: random.Random) -> dict:
    call = rng.choice(st.own_calls + [st.recording or "none", str(uuid.uuid4())])
    values = {"user": rng.choice(["nobody", "sup", "x" * 64]), "password": "wrong password", "token": "bogus" * 8,
              "call_id": call, "limit": rng.choice([1, 50, 500, 501]), "alert_id": rng.randint(1, 5), "reason": "bench",
              "note": "n", "help_id": 1, "checkin_id": 1, "name": "mallory", "role": rng.choice(["admin", "agent", "god"]),
              "since": "2026-01-01", "until": "2026-12-31", "category": "insult", "level": "alert", "partner": "ann",
              "finding_id": 1, "verdict": rng.choice(["confirmed", "false_alarm", "maybe"])}
    message = {"v": 1, "type": kind, **{name: values[name] for name in BROWSER[kind] if rng.random() < 0.9}}
    if rng.random() < 0.5:
        message["ref"] = f"r{rng.randint(0, 10 ** 6)}"
    return message


def mutate(message: dict, rng: random.Random) -> tuple[str, str]:
    """Apply 1-3 mutations; returns (JSON text, label)."""
    raws, labels = {}, []
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        what, keys = rng.random(), [k for k in message if k not in ("v", "type")]
        if what < 0.45 and keys:
            key, value = rng.choice(keys), rng.choice(list(HOSTILE))
            if key == "words" and rng.random() < 0.5:  # a hostile value inside a word
                sub = rng.choice(["word", "start", "end", "conf"])
                message[key] = [{"word": "you", "start": 1.0, "end": 1.2, "conf": 0.9, sub: f"@@{len(raws)}@@"}]
                labels.append(f"words.{sub}={value}")
            else:
                message[key] = f"@@{len(raws)}@@"
                labels.append(f"{key}={value}")
            raws[f'"@@{len(raws)}@@"'] = HOSTILE[value]
        elif what < 0.6 and keys:
            key = rng.choice(keys)
            del message[key]
            labels.append(f"-{key}")
        elif what < 0.7:
            message[rng.choice(["extra", "__proto__", "constructor", "v2"])] = 1
            labels.append("+unknown-field")
        elif what < 0.8:
            label = rng.choice(["0", "2", '"1"', "1.0", "true", "null", "int-5000-digits", "NaN"])
            message["v"] = f"@@{len(raws)}@@"
            raws[f'"@@{len(raws)}@@"'] = HOSTILE.get(label, label)
            labels.append(f"v={label}")
        else:
            message["type"] = rng.choice(OTHER_TYPES + list(BROWSER) + [c.TYPE for c in p.AGENT_MESSAGES])
            labels.append(f"type={message['type'][:20]}")
    text = json.dumps(message)
    for placeholder, raw in raws.items():
        text = text.replace(placeholder, raw)
    return text, f"{message.get('type', '?')}:{','.join(labels) or 'valid'}"


def ws_case(channel: str, st: State, rng: random.Random) -> tuple[str | bytes, str, str]:
    """(payload, frame mode, label) of one websocket case."""
    if rng.random() < 0.12:
        if rng.random() < 0.04:
            return '{"v":1,"type":"login","user":"' + "a" * 1_100_000 + '"}', "text", "raw:oversized-1.1MB"
        label = rng.choice(list(RAW))
        return *RAW[label], f"raw:{label}"
    agent_side = channel.startswith("agent") != (rng.random() < 0.1)  # sometimes the other protocol
    if agent_side:
        cls = p.AgentHello if channel == "agent-pre" and rng.random() < 0.7 else rng.choice(p.AGENT_MESSAGES)
        message = agent_template(cls, st, rng)
    else:
        message = browser_template(rng.choice([k for k in BROWSER if k != "resume" or channel == "browser-pre"]), st, rng)
    text, label = mutate(message, rng)
    if message.get("type") == "call_started" and label.endswith(":valid") and channel == "agent-post":
        st.own_calls.append(message["call_id"])
    mode = "binary" if rng.random() < 0.03 else "text"
    return (text.encode() if mode == "binary" else text), mode, label


def http_case(st: State, rng: random.Random) -> tuple[bytes, str]:
    host = f"127.0.0.1:{st.port}"
    rec = f"/recordings/{st.recording or uuid.uuid4()}.wav"
    bearer = ("Authorization", f"Bearer {st.tokens['sup']}")
    upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
               ("Sec-WebSocket-Version", "13")]
    method, path, version, headers = "GET", rng.choice(["/", "/healthz", "/supervisor", rec, "/static/app.js"]), "HTTP/1.1", [("Host", host)]
    kind = rng.choice(["dup-host", "dup-origin", "dup-auth", "dup-range", "range-5000", "range-odd", "traversal", "traversal",
                       "method", "version", "huge-header", "many-headers", "no-host", "bad-line", "non-ascii", "foreign-ws",
                       "foreign-origin-ws", "ws-bad-key", "bearer-junk", "signed-tamper"])
    if kind == "dup-host":
        headers.append(("Host", "evil.example"))
    elif kind == "dup-origin":
        headers += [("Origin", f"http://{host}"), ("Origin", "http://evil.example")]
    elif kind == "dup-auth":
        path, headers = rec, headers + [bearer, ("Authorization", "Bearer x")]
    elif kind == "dup-range":
        path, headers = rec, headers + [bearer, ("Range", "bytes=0-10"), ("Range", "bytes=5-")]
    elif kind == "range-5000":
        path, headers = rec, headers + [bearer, ("Range", "bytes=" + "9" * 5000 + "-")]
    elif kind == "range-odd":
        path, headers = rec, headers + [bearer, ("Range", rng.choice(["bytes=-0", "bytes=5-1", "bytes=--", "bytes=0-0,1-1",
                                                                      "bytes=-" + "1" * 5000, "bytes=99999999999999999999-", "items=0-1"]))]
    elif kind == "traversal":
        path = rng.choice(TRAVERSAL)
        if rng.random() < 0.5:
            headers.append(bearer)
    elif kind == "method":
        method = rng.choice(["POST", "PUT", "DELETE", "TRACE", "OPTIONS", "CONNECT", "PATCH", "PROPFIND", "get", "G\x00ET", "A" * 5000])
    elif kind == "version":
        version = rng.choice(["HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "", "HTTP/1.1 extra"])
    elif kind == "huge-header":
        headers.append(("X-Big", "a" * rng.choice([9000, 70000])))
    elif kind == "many-headers":
        headers += [(f"X-{i}", "v") for i in range(300)]
    elif kind == "no-host":
        headers = []
    elif kind == "bad-line":
        headers.append(("NoColonHere", None))
    elif kind == "non-ascii":
        path = "/\xff\xfe" + rng.choice(["", "/recordings/\xe9.wav"])
    elif kind == "foreign-ws":  # DNS rebinding: a hostile name resolving to the console
        path, headers = "/ws/browser", [("Host", f"evil.example:{st.port}"), ("Origin", f"http://evil.example:{st.port}")] + upgrade
    elif kind == "foreign-origin-ws":
        path, headers = "/ws/browser", headers + [("Origin", "http://evil.example")] + upgrade
    elif kind == "ws-bad-key":
        path, headers = rng.choice(["/ws/browser", "/ws/agent"]), headers + upgrade[:2] + [("Sec-WebSocket-Key", "short"), ("Sec-WebSocket-Version", "99")]
    elif kind == "bearer-junk":
        path, headers = rec, headers + [("Authorization", "Bearer " + rng.choice(["", "\x01", "a" * 8000, "é"]))]
    elif kind == "signed-tamper":
        path = rec + rng.choice(["?exp=" + "9" * 30 + "&user=sup&sig=00", "?user=sup", "?" + "&" * 5000, "?sig=%ff"])
    lines = [f"{method} {path} {version}".rstrip()] + [k if v is None else f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace"), f"http:{kind}"
