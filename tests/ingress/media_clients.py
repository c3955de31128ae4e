"""Test clients of the two websocket media stream protocols, written from the
public specifications' examples, not from callshield's code (nothing here
imports audio.media_streams):

- :class:`AudioHookClient`: what Genesys Cloud does (AudioHook Protocol
  Specification, developer.genesys.cloud): signs the upgrade request (HTTP
  Message Signatures, HMAC-SHA256 with the base64-decoded client secret, the
  six covered components of the spec's "Establishing connection" example),
  then ``open`` / audio / ``ping`` / ``paused`` / ``resumed`` / ``close``
  with ``seq``, ``serverseq`` and ``position`` as the spec's examples show.
- :class:`TwilioClient`: what Twilio does (twilio.com/docs/voice/media-streams/
  websocket-messages): ``connected``, ``start``, ``media`` (base64 mu-law,
  20 ms chunks, per-track chunk numbers and ms timestamps), ``stop``; the
  upgrade carries ``X-Twilio-Signature`` (base64 HMAC-SHA1 of the URL with
  the auth token, twilio.com/docs/usage/webhooks/webhooks-security).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from audio.g711 import encode_ulaw

FRAME = 160  # 20 ms at 8 kHz


def audiohook_signature_base(target: str, authority: str, headers: dict[str, str], *, key_id: str, nonce: str,
                             created: int, expires: int) -> tuple[str, str]:
    """(Signature-Input value, signature base) as in the spec's example request."""
    names = ("audiohook-organization-id", "audiohook-session-id", "audiohook-correlation-id", "x-api-key")
    params = (f'("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
              f'"audiohook-correlation-id" "x-api-key");keyid="{key_id}";nonce="{nonce}";alg="hmac-sha256";created={created};expires={expires}')
    lines = [f'"@request-target": {target}', f'"@authority": {authority}']
    lines += [f'"{name}": {headers[name]}' for name in names]
    lines.append(f'"@signature-params": {params}')
    return "sig1=" + params, "\n".join(lines)


def sign(client_secret_b64: str, base: str) -> str:
    return base64.b64encode(hmac.new(base64.b64decode(client_secret_b64), base.encode(), hashlib.sha256).digest()).decode()


class AudioHookClient:
    """One AudioHook session as Genesys Cloud runs it."""

    def __init__(self, port: int, *, path: str = "/audiohook", api_key: str, client_secret: str | None,
                 organization_id: str | None = None, session_id: str | None = None, created: int | None = None,
                 nonce: str | None = None, tamper: bool = False) -> None:
        self.port, self.path = port, path
        self.api_key, self.client_secret = api_key, client_secret
        self.organization_id = organization_id or str(uuid.uuid4())
        self.session_id = session_id or str(uuid.uuid4())
        self.correlation_id = str(uuid.uuid4())
        self.created = created if created is not None else int(time.time())
        self.nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self.tamper = tamper
        self.seq = 0
        self.serverseq = 0
        self.samples = 0  # per channel sent: the position
        self.ws: ClientConnection | None = None
        self.received: list[dict] = []

    def headers(self) -> dict[str, str]:
        headers = {
            "audiohook-organization-id": self.organization_id,
            "audiohook-correlation-id": self.correlation_id,
            "audiohook-session-id": self.session_id,
            "x-api-key": self.api_key,
        }
        if self.client_secret is not None:
            signature_input, base = audiohook_signature_base(self.path, f"127.0.0.1:{self.port}", headers, key_id=self.api_key,
                                                             nonce=self.nonce, created=self.created, expires=self.created + 30)
            signature = sign(self.client_secret, base)
            if self.tamper:
                headers["audiohook-organization-id"] = str(uuid.uuid4())  # changed after signing
            headers["signature-input"] = signature_input
            headers["signature"] = f"sig1=:{signature}:"
        return {"User-Agent": "GenesysCloud-AudioHook-Client", **{k.title(): v for k, v in headers.items()}}

    async def connect(self) -> "AudioHookClient":
        self.ws = await connect(f"ws://127.0.0.1:{self.port}{self.path}", additional_headers=self.headers(), open_timeout=10)
        return self

    @property
    def position(self) -> str:
        return f"PT{self.samples / 8000:.3f}S"

    async def send(self, kind: str, parameters: dict | None = None, *, seq: int | None = None) -> None:
        self.seq += 1
        message = {"version": "2", "id": self.session_id, "type": kind, "seq": self.seq if seq is None else seq,
                   "serverseq": self.serverseq, "position": self.position, "parameters": parameters or {}}
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout: float = 10) -> dict:
        message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.serverseq = message["seq"]
        self.received.append(message)
        return message

    async def open(self, conversation_id: str, *, channels=("external", "internal"), custom_config: dict | None = None,
                   media: list | None = None) -> dict:
        params = {
            "organizationId": self.organization_id,
            "conversationId": conversation_id,
            "participant": {"id": str(uuid.uuid4()), "ani": "+13175551234", "aniName": "John Doe", "dnis": "+13175550000"},
            "media": media if media is not None else [
                {"type": "audio", "format": "PCMU", "channels": list(channels), "rate": 8000},
                {"type": "audio", "format": "PCMU", "channels": [channels[0]], "rate": 8000},
            ],
            "language": "en-US",
        }
        if custom_config is not None:
            params["customConfig"] = custom_config
        await self.send("open", params)
        return await self.receive()

    async def audio(self, *channels: np.ndarray, speed: float | None = None) -> None:
        """Send interleaved PCMU frames of 20 ms (``speed``: times real time; None: as fast as possible)."""
        n = min(len(c) for c in channels)
        stereo = np.stack([c[:n] for c in channels], axis=1) if len(channels) > 1 else channels[0][:n, None]
        for first in range(0, n, FRAME):
            await self.ws.send(encode_ulaw(np.ascontiguousarray(stereo[first:first + FRAME])))
            self.samples += len(stereo[first:first + FRAME])
            if speed:
                await asyncio.sleep(FRAME / 8000 / speed)

    async def ping(self) -> dict:
        await self.send("ping", {"rtt": "PT0.05S"})
        return await self.receive()

    async def pause(self, seconds: float) -> None:
        """The client pauses ``seconds`` of conversation: ``paused``, then ``resumed`` with what was not sent."""
        await self.send("paused")
        await self.send("resumed", {"start": self.position, "discarded": f"PT{seconds:.3f}S"})

    async def close(self) -> dict:
        await self.send("close", {"reason": "end"})
        message = await self.receive()
        await self.ws.close()
        return message


def twilio_signature(auth_token: str, url: str) -> str:
    return base64.b64encode(hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()).decode()


class TwilioClient:
    """One Twilio Media Stream as Twilio runs it (``<Start><Stream track="both_tracks">``)."""

    def __init__(self, port: int, *, path: str = "/twilio", auth_token: str | None = None, signed_url: str | None = None) -> None:
        self.url = f"ws://127.0.0.1:{port}{path}"
        # Twilio signs the wss:// URL of the TwiML; the tests connect in plain ws:// as a TLS proxy would
        self.auth_token, self.signed_url = auth_token, signed_url or f"wss://127.0.0.1:{port}{path}"
        self.account_sid = "AC" + secrets.token_hex(16)
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.call_sid = "CA" + secrets.token_hex(16)
        self.sequence = 0
        self.chunks = {"inbound": 0, "outbound": 0}
        self.sent = {"inbound": 0, "outbound": 0}  # samples
        self.ws: ClientConnection | None = None

    async def connect(self) -> "TwilioClient":
        headers = {}
        if self.auth_token is not None:
            headers["X-Twilio-Signature"] = twilio_signature(self.auth_token, self.signed_url)
        self.ws = await connect(self.url, additional_headers=headers, open_timeout=10)
        return self

    async def send(self, message: dict) -> None:
        if message["event"] != "connected":
            self.sequence += 1
            message = {"event": message["event"], "sequenceNumber": str(self.sequence), **message}
            message.setdefault("streamSid", self.stream_sid)
        await self.ws.send(json.dumps(message))

    async def start(self, *, tracks=("inbound", "outbound"), custom: dict | None = None) -> None:
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send({"event": "start", "start": {
            "accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
            "tracks": list(tracks), "customParameters": custom or {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})

    async def media(self, track: str, samples: np.ndarray, *, timestamp_ms: int | None = None) -> None:
        """One ``media`` message (at most 20 ms) of ``track``; the timestamp follows the track's audio unless given."""
        self.chunks[track] += 1
        stamp = self.sent[track] // 8 if timestamp_ms is None else timestamp_ms
        await self.send({"event": "media", "media": {"track": track, "chunk": str(self.chunks[track]), "timestamp": str(stamp),
                                                     "payload": base64.b64encode(encode_ulaw(samples)).decode()}})
        self.sent[track] = stamp * 8 + len(samples)

    async def both(self, inbound: np.ndarray, outbound: np.ndarray, *, speed: float | None = None) -> None:
        """Both tracks in 20 ms chunks, interleaved as Twilio sends them."""
        n = min(len(inbound), len(outbound))
        for first in range(0, n, FRAME):
            await self.media("inbound", inbound[first:first + FRAME])
            await self.media("outbound", outbound[first:first + FRAME])
            if speed:
                await asyncio.sleep(FRAME / 8000 / speed)

    async def stop(self) -> None:
        await self.send({"event": "stop", "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}})
        await self.ws.close()
