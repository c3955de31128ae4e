"""Property tests of the browser protocol's decoder (no sockets).

Whatever a page (or anything that reached ``/ws/browser``) sends, the
console gets either one typed request whose fields have the declared types,
or a ``ProtocolError`` it answers with ``error``; reading the ``ref`` to
answer with never raises. Nothing else may escape: an escaped exception
closes the socket with 1011 and is not counted as a bad message.
"""

from __future__ import annotations

import dataclasses
import json
import typing

from hypothesis import given, settings
from hypothesis import strategies as st

from console import browser_protocol as b
from kernel.protocol import ProtocolError

_ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=20)
"""Strings with lone surrogates too (Hypothesis leaves them out unless asked)."""
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)
_FIELDS = sorted({f.name for cls in b.REQUESTS for f in dataclasses.fields(cls)} | {"x"})


def _check_request(message: object) -> None:
    """A decoded request is one of the requests, each field of its declared type."""
    assert type(message) in b.REQUESTS
    hints = typing.get_type_hints(type(message))
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        expected = hints[f.name]
        allowed = typing.get_args(expected) or (expected,)
        allowed = tuple(typing.get_origin(t) or t for t in allowed)
        assert isinstance(value, allowed), (f.name, value, expected)
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogate got through


def _decode_or_refuse(text: str | bytes) -> None:
    try:
        message = b.decode(text)
    except ProtocolError as exc:
        assert exc.code in ("bad_message", "bad_version")
        ref = b.ref_of(text)
        assert isinstance(ref, str) and len(ref) <= 100
        ref.encode("utf-8")
        return
    _check_request(message)


@given(st.text(max_size=300) | st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_any_text_is_a_typed_request_or_refused(text):
    _decode_or_refuse(text)


@given(st.sampled_from([cls.TYPE for cls in b.REQUESTS] + ["event", "hello", ""]),
       st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=6))
@settings(max_examples=400, deadline=None)
def test_any_json_object_of_a_request_type_is_a_typed_request_or_refused(kind, fields):
    _decode_or_refuse(json.dumps({"v": 1, "type": kind, **fields}, ensure_ascii=False, allow_nan=True))


@given(st.integers(1, 5000), st.sampled_from(["[", "{\"a\":"]))
@settings(max_examples=60, deadline=None)
def test_deep_nesting_is_refused_and_its_ref_read_without_recursion(depth, opener):
    text = '{"v": 1, "type": "login", "ref": "r1", "user": ' + opener * depth + "1"
    _decode_or_refuse(text)
