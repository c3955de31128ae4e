"""Who may open a media stream: AudioHook request signatures and Twilio request validation.

**Genesys AudioHook** signs the websocket upgrade request with HTTP Message
Signatures (draft-ietf-httpbis-message-signatures, now RFC 9421), HMAC-SHA256
keyed with the integration's client secret (base64-decoded):

- ``Signature-Input: sig1=("@request-target" "@authority"
  "audiohook-organization-id" "audiohook-session-id"
  "audiohook-correlation-id" "x-api-key");keyid="<API key>";nonce="...";
  alg="hmac-sha256";created=<unix s>;expires=<unix s>``
- ``Signature: sig1=:<base64 HMAC>:``

The signature base is one line per covered component, ``"<name>": <value>``,
then ``"@signature-params": <the inner list re-serialized>``, joined by
``\\n``. :func:`verify_audiohook` checks: the API key is known, ``keyid`` is
that key, ``alg`` (if given) is ``hmac-sha256``, the six components above are
covered, ``created`` is not in the future nor older than the allowed age,
``expires`` has not passed, the ``nonce`` is present and was not seen before
(within its lifetime), and the HMAC matches (constant-time). A key configured
with an empty client secret may connect unsigned (as the reference
implementation allows).

**Twilio** signs every request it makes with ``X-Twilio-Signature``:
base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value,
sorted by name)). A websocket upgrade is a GET: the URL alone.

Both parsers are bounded (header lengths, list lengths) and raise
:class:`~audio.errors.MediaStreamError` with code ``unauthorized`` and a
message that names what failed but never a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from audio.errors import MediaStreamError

MAX_HEADER_CHARS = 4096
"""Longest ``Signature-Input`` / ``Signature`` value parsed."""

MAX_ITEMS = 32
"""Most dictionary members, inner-list items or parameters parsed."""

CLOCK_SKEW_S = 3.0
"""Seconds a ``created`` may lie in the future (clocks differ a little)."""

AUDIOHOOK_COMPONENTS = ("@request-target", "@authority", "audiohook-organization-id", "audiohook-session-id",
                        "audiohook-correlation-id", "x-api-key")
"""What an AudioHook request signature must cover."""

DERIVED = ("@method", "@authority", "@request-target", "@path", "@query")
"""Derived components this verifier can compute from a websocket upgrade."""


def refused(message: str) -> MediaStreamError:
    return MediaStreamError(message, code="unauthorized")


# --------------------------------------------------------------------------- structured fields (RFC 8941), the subset signatures use

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*")
_INTEGER = re.compile(r"-?[0-9]{1,15}")


@dataclass(frozen=True)
class Item:
    """A bare item (str, int, bool, bytes, or a token as :class:`Token`) with its parameters, in order."""

    value: object
    params: tuple[tuple[str, object], ...] = ()


class Token(str):
    """An RFC 8941 token (serialized without quotes)."""


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_HEADER_CHARS:
            raise ValueError(f"longer than {MAX_HEADER_CHARS} characters")
        self.text, self.i = text, 0

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def spaces(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.i += 1

    def dictionary(self) -> OrderedDict[str, Item | list[Item]]:
        members: OrderedDict[str, Item | list[Item]] = OrderedDict()
        self.spaces()
        while self.i < len(self.text):
            key = self.key()
            if self.peek() == "=":
                self.i += 1
                value: Item | list[Item] = self.inner_list() if self.peek() == "(" else self.item()
            else:
                value = Item(True, self.params())
            members[key] = value
            if len(members) > MAX_ITEMS:
                raise ValueError("too many members")
            self.spaces()
            if self.i >= len(self.text):
                break
            if self.peek() != ",":
                raise ValueError(f"expected ',' at {self.i}")
            self.i += 1
            self.spaces()
            if self.i >= len(self.text):
                raise ValueError("trailing ','")
        return members

    def key(self) -> str:
        found = _KEY.match(self.text, self.i)
        if not found:
            raise ValueError(f"expected a key at {self.i}")
        self.i = found.end()
        return found.group()

    def inner_list(self) -> list[Item]:
        self.i += 1  # (
        items: list[Item] = []
        while True:
            while self.peek() == " ":
                self.i += 1
            if self.peek() == ")":
                self.i += 1
                # the inner list's own parameters ride on a pseudo-item
                return [*items, Item(None, self.params())]
            items.append(self.item())
            if len(items) > MAX_ITEMS:
                raise ValueError("too many inner-list items")
            if self.peek() not in (" ", ")"):
                raise ValueError(f"expected ' ' or ')' at {self.i}")

    def item(self) -> Item:
        return Item(self.bare(), self.params())

    def params(self) -> tuple[tuple[str, object], ...]:
        params: list[tuple[str, object]] = []
        while self.peek() == ";":
            self.i += 1
            self.spaces()
            key = self.key()
            value: object = True
            if self.peek() == "=":
                self.i += 1
                value = self.bare()
            params.append((key, value))
            if len(params) > MAX_ITEMS:
                raise ValueError("too many parameters")
        return tuple(params)

    def bare(self) -> object:
        c = self.peek()
        if c == '"':
            return self.string()
        if c == ":":
            end = self.text.find(":", self.i + 1)
            if end < 0:
                raise ValueError("unterminated byte sequence")
            raw = self.text[self.i + 1:end]
            self.i = end + 1
            try:
                return base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("byte sequence is not base64") from None
        if c == "?":
            flag = self.text[self.i + 1:self.i + 2]
            if flag not in ("0", "1"):
                raise ValueError("bad boolean")
            self.i += 2
            return flag == "1"
        found = _INTEGER.match(self.text, self.i)
        if found and self.text[found.end():found.end() + 1] != ".":
            self.i = found.end()
            return int(found.group())
        token = _TOKEN.match(self.text, self.i)
        if token:
            self.i = token.end()
            return Token(token.group())
        raise ValueError(f"unexpected {c!r} at {self.i}")

    def string(self) -> str:
        out: list[str] = []
        self.i += 1
        while self.i < len(self.text):
            c = self.text[self.i]
            self.i += 1
            if c == "\\":
                nxt = self.text[self.i:self.i + 1]
                if nxt not in ('"', "\\"):
                    raise ValueError("bad escape in string")
                out.append(nxt)
                self.i += 1
            elif c == '"':
                return "".join(out)
            elif not " " <= c <= "~":
                raise ValueError("non-ASCII character in string")
            else:
                out.append(c)
        raise ValueError("unterminated string")


def parse_dictionary(text: str) -> OrderedDict[str, Item | list[Item]]:
    """An RFC 8941 dictionary; an inner list is a list of items whose last
    element is a pseudo-item (value None) carrying the list's parameters.
    Raises ``ValueError`` with what is wrong."""
    return _Parser(text.strip()).dictionary()


def serialize_bare(value: object) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    raise TypeError(f"cannot serialize {value!r}")


def serialize_params(params: tuple[tuple[str, object], ...]) -> str:
    return "".join(f";{key}" if value is True else f";{key}={serialize_bare(value)}" for key, value in params)


def serialize_inner_list(items: list[Item]) -> str:
    *members, tail = items
    return "(" + " ".join(serialize_bare(i.value) + serialize_params(i.params) for i in members) + ")" + serialize_params(tail.params)


# --------------------------------------------------------------------------- AudioHook


@dataclass(frozen=True)
class SignedRequest:
    """What a signature verifier needs of an upgrade request. ``target``: path
    and query as sent; ``headers``: lower-case name -> value (repeated fields
    joined by ``", "``)."""

    method: str
    target: str
    headers: Mapping[str, str]


class NonceCache:
    """Nonces seen recently, each until its signature could no longer be
    accepted; bounded (the oldest go first)."""

    def __init__(self, limit: int = 10000) -> None:
        self.limit = limit
        self._until: OrderedDict[str, float] = OrderedDict()

    def seen(self, nonce: str, until: float, now: float) -> bool:
        """Whether ``nonce`` was seen (and still counts); remembers it until ``until``."""
        while self._until and (next(iter(self._until.values())) < now or len(self._until) >= self.limit):
            self._until.popitem(last=False)
        if nonce in self._until and self._until[nonce] >= now:
            return True
        self._until[nonce] = until
        return False


def _component(request: SignedRequest, name: str) -> str:
    if name.startswith("@"):
        path, _, query = request.target.partition("?")
        derived = {
            "@method": request.method.upper(),
            "@authority": request.headers.get("host", "").strip().lower(),
            "@request-target": request.target,
            "@path": path,
            "@query": "?" + query,
        }
        if name not in derived:
            raise refused(f"signature covers {name}, which this server cannot derive")
        value = derived[name]
    else:
        value = request.headers.get(name)
        if value is None:
            raise refused(f"signature covers header {name}, which the request lacks")
    if not value:
        raise refused(f"signature covers {name}, which is empty")
    return " ".join(value.strip().split("\r\n"))


def signature_base(request: SignedRequest, covered: list[Item]) -> str:
    """The signature base of ``covered`` (an inner list as parsed) over ``request``."""
    lines = []
    for item in covered[:-1]:
        if not isinstance(item.value, str) or isinstance(item.value, Token) or item.params:
            raise refused("Signature-Input lists something other than plain component names")
        lines.append(f"{serialize_bare(item.value)}: {_component(request, item.value)}")
    lines.append(f'"@signature-params": {serialize_inner_list(covered)}')
    return "\n".join(lines)


def verify_audiohook(request: SignedRequest, keys: Mapping[str, bytes], *, now: float, max_age_s: float,
                     nonces: NonceCache | None = None) -> str:
    """Check an AudioHook upgrade request; returns the API key it used.
    Raises ``unauthorized`` with the reason (never a secret)."""
    api_key = request.headers.get("x-api-key", "").strip()
    if not api_key:
        raise refused("no X-API-KEY header")
    secret = keys.get(api_key)
    if secret is None:
        raise refused("unknown API key")
    signature_input = request.headers.get("signature-input")
    signature = request.headers.get("signature")
    if signature_input is None and signature is None:
        if secret == b"":
            return api_key  # a key configured without a client secret may come unsigned
        raise refused("request not signed (the API key has a client secret)")
    if signature_input is None or signature is None:
        raise refused("only one of Signature-Input and Signature")
    try:
        inputs = parse_dictionary(signature_input)
        signatures = parse_dictionary(signature)
    except ValueError as exc:
        raise refused(f"malformed signature header: {exc}") from None
    if not inputs:
        raise refused("empty Signature-Input")
    label, covered = next(iter(inputs.items()))
    sent = signatures.get(label)
    if not isinstance(covered, list):
        raise refused(f"Signature-Input {label} is not an inner list")
    if not isinstance(sent, Item) or not isinstance(sent.value, bytes):
        raise refused(f"no Signature {label} byte sequence")
    params = dict(covered[-1].params)
    if set(params) - {"alg", "created", "expires", "keyid", "nonce", "tag"}:
        raise refused(f"unknown signature parameter(s) {sorted(set(params) - {'alg', 'created', 'expires', 'keyid', 'nonce', 'tag'})}")
    if params.get("keyid") != api_key:
        raise refused("signature keyid is not the X-API-KEY")
    if params.get("alg", "hmac-sha256") != "hmac-sha256":
        raise refused(f"signature algorithm {params.get('alg')!r} is not hmac-sha256")
    names = [item.value for item in covered[:-1]]
    missing = [c for c in AUDIOHOOK_COMPONENTS if c not in names]
    if missing:
        raise refused(f"signature does not cover {', '.join(missing)}")
    if len(set(names)) != len(names):
        raise refused("signature covers a component twice")
    created, expires, nonce = params.get("created"), params.get("expires"), params.get("nonce")
    if not isinstance(created, int) or isinstance(created, bool):
        raise refused("signature has no created time")
    if created > now + CLOCK_SKEW_S:
        raise refused("signature created in the future")
    if created + max_age_s < now - CLOCK_SKEW_S:
        raise refused("signature too old")
    if expires is not None and (not isinstance(expires, int) or isinstance(expires, bool) or expires < now):
        raise refused("signature expired")
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 256:
        raise refused("signature has no nonce (or one shorter than 8 or longer than 256 characters)")
    expected = hmac.new(secret, signature_base(request, covered).encode("utf-8"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, sent.value):
        raise refused("signature does not match")
    if nonces is not None and nonces.seen(nonce, until=created + max_age_s + CLOCK_SKEW_S, now=now):
        raise refused("nonce already used (a replayed request)")
    return api_key


# --------------------------------------------------------------------------- Twilio


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """Twilio's ``X-Twilio-Signature`` of a request to ``url`` with POST ``params``."""
    data = url + "".join(f"{key}{params[key]}" for key in sorted(params or {}))
    return base64.b64encode(hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()).decode("ascii")


def verify_twilio(auth_token: str, url: str, signature: str | None) -> None:
    """Check a Twilio upgrade request's ``X-Twilio-Signature`` against ``url``; raises ``unauthorized``."""
    if not signature:
        raise refused("no X-Twilio-Signature header")
    if not hmac.compare_digest(twilio_signature(auth_token, url).encode("ascii"), signature.strip().encode("utf-8", "replace")):
        raise refused("X-Twilio-Signature does not match (check [media_streams] twilio_url and the auth token)")
