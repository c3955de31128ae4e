"""The ``[media_streams]`` config section: one websocket port, AudioHook and Twilio by path.

Secrets (AudioHook client secrets, the Twilio auth token) are read from the
section or from files the section names, and never appear in a repr, a log
line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from audio.errors import MediaStreamError
from kernel.sections import read_section, setting

TwilioTrack = Literal["inbound", "outbound"]


def _read_keys(value: Any) -> tuple[tuple[str, str], ...]:
    """``audiohook_keys``: a table of API key -> client secret (base64, or "" for an unsigned key)."""
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("audiohook_keys must be a table of API key = \"client secret\" (strings)")
    return tuple((str(k), v) for k, v in value.items())


def _secret_bytes(secret: str, where: str) -> bytes:
    """A Genesys client secret (base64, as the AudioHook Monitor integration shows it) as the HMAC key."""
    try:
        return base64.b64decode(secret.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MediaStreamError(f"{where}: a client secret is not base64 (Genesys shows it base64-encoded)", code="bad_config") from None


@dataclass(frozen=True)
class MediaStreamsConfig:
    """The ``[media_streams]`` section of the config file.

    Fields:
        host: address to listen on (default ``127.0.0.1``: put a TLS reverse
            proxy in front, see docs/media-streams.md).
        port: TCP port (default 9094; 0 picks a free one).
        audiohook_path: request path of Genesys AudioHook sessions ("" turns AudioHook off).
        twilio_path: request path of Twilio Media Streams ("" turns Twilio off).
        audiohook_keys: API key -> client secret (base64 as Genesys shows it;
            "" for a key whose requests may come unsigned). Not in any repr.
        audiohook_keys_file: a TOML file of ``"API key" = "client secret"``
            lines, read at start (instead of, or on top of, ``audiohook_keys``).
        signature_max_age_s: how old a request signature's ``created`` may be, seconds.
        twilio_auth_token: the Twilio account's auth token; when set (here or
            in ``twilio_auth_token_file``), every Twilio upgrade must carry a
            valid ``X-Twilio-Signature``. Not in any repr.
        twilio_auth_token_file: a file holding the auth token (one line).
        twilio_url: the public base URL Twilio connects to, as written in the
            TwiML (``wss://callshield.example.com``); the signature covers it.
            Empty: ``wss://`` + the request's Host header.
        twilio_customer_track: which Twilio track is the customer:
            ``inbound`` (the caller's audio on an inbound call, the default)
            or ``outbound``.
        max_calls: streams served at once, until each call is transcribed and
            screened; more are refused before the upgrade (HTTP 503, counted).
        max_message_bytes: largest message handled; a larger one (up to 4x)
            is dropped and counted, the stream goes on; beyond 4x the
            websocket library closes the connection (1009).
        queue_chunks: bound of a call's audio hand-off to the agent, in
            received chunks (oldest dropped, counted).
        open_timeout_s: seconds a new connection has to send AudioHook
            ``open`` / Twilio ``start``.
    """

    host: str = "127.0.0.1"
    port: int = 9094
    audiohook_path: str = "/audiohook"
    twilio_path: str = "/twilio"
    audiohook_keys: tuple[tuple[str, str], ...] = setting(default=(), read=_read_keys, repr=False)
    audiohook_keys_file: Path | None = None
    signature_max_age_s: float = 10.0
    twilio_auth_token: str = field(default="", repr=False)
    twilio_auth_token_file: Path | None = None
    twilio_url: str = ""
    twilio_customer_track: TwilioTrack = "inbound"
    max_calls: int = 64
    max_message_bytes: int = 65536
    queue_chunks: int = 1000
    open_timeout_s: float = 10.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> "MediaStreamsConfig":
        """Read the ``[media_streams]`` table (:func:`kernel.sections.read_section`)."""
        return read_section(cls, section, section="[media_streams]", error=lambda message: MediaStreamError(message, code="bad_config"))

    def check(self) -> None:
        """What the settings mean together (called by :meth:`from_section`)."""
        if not 0 <= self.port <= 65535:
            raise MediaStreamError("[media_streams] port must be 0..65535", code="bad_config")
        if self.max_calls < 1 or self.queue_chunks < 1 or self.max_message_bytes < 1024:
            raise MediaStreamError("[media_streams] max_calls and queue_chunks must be at least 1, max_message_bytes at least 1024", code="bad_config")
        if self.signature_max_age_s <= 0 or self.open_timeout_s <= 0:
            raise MediaStreamError("[media_streams] signature_max_age_s and open_timeout_s must be positive", code="bad_config")
        paths = [p for p in (self.audiohook_path, self.twilio_path) if p]
        if any(not p.startswith("/") for p in paths) or len(set(paths)) != len(paths):
            raise MediaStreamError("[media_streams] audiohook_path and twilio_path must start with / and differ", code="bad_config")
        if self.twilio_url and not self.twilio_url.startswith(("wss://", "ws://")):
            raise MediaStreamError("[media_streams] twilio_url must start with wss:// (or ws://)", code="bad_config")
        for _key, secret in self.audiohook_keys:
            if secret:
                _secret_bytes(secret, "[media_streams] audiohook_keys")

    # ---- secrets (read when the server starts; blocking file I/O)

    def api_keys(self) -> dict[str, bytes]:
        """AudioHook API key -> client secret bytes (b"" for a key allowed unsigned)."""
        keys = dict(self.audiohook_keys)
        if self.audiohook_keys_file is not None:
            where = f"[media_streams] audiohook_keys_file {self.audiohook_keys_file}"
            try:
                table = tomllib.loads(self.audiohook_keys_file.read_text(encoding="utf-8"))
            except OSError as exc:
                raise MediaStreamError(f"{where}: cannot read it ({exc.strerror})", code="bad_config") from None
            except tomllib.TOMLDecodeError as exc:
                raise MediaStreamError(f"{where}: not TOML ({exc})", code="bad_config") from None
            keys.update(_read_keys(table))
        return {key: (_secret_bytes(secret, "[media_streams] audiohook keys") if secret else b"") for key, secret in keys.items()}

    def auth_token(self) -> str:
        """The Twilio auth token ("" when Twilio requests are not verified)."""
        if self.twilio_auth_token_file is not None:
            try:
                return self.twilio_auth_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise MediaStreamError(f"[media_streams] twilio_auth_token_file {self.twilio_auth_token_file}: cannot read it ({exc.strerror})", code="bad_config") from None
        return self.twilio_auth_token
