"""Where calls come from, on the command line: shared by ``callshield agent``
and ``callshield serve``.

``--wav FILE`` (a recorded call, as if live with ``--realtime``),
``--audiosocket [HOST:]PORT`` (Asterisk AudioSocket, see docs/asterisk.md),
``--media-streams [HOST:]PORT`` (Genesys AudioHook and Twilio Media Streams,
see docs/media-streams.md), ``--siprec [HOST:]PORT`` / ``--sip [HOST:]PORT`` (SIPREC from an SBC, plain
SIP "listen" calls from a PBX: one SIP server answers both kinds, see
docs/siprec.md) and ``--devices`` (the sound devices chosen in
``[devices]``). Not a command
itself: the dispatcher only loads the modules named in ``cli/main.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from kernel.errors import CallshieldError

log = logging.getLogger("callshield.agent")


class IngressOptionError(CallshieldError):
    code = "bad_address"


@dataclasses.dataclass(frozen=True)
class Ingress:
    """The call sources asked for. ``wavs``: recorded calls; ``realtime``: pace
    them by audio time; ``audiosocket``/``media_streams``/``devices``: their configs, or None."""

    wavs: tuple[Path, ...] = ()
    realtime: bool = False
    audiosocket: object | None = None  # audio.audiosocket.AudioSocketConfig
    devices: object | None = None  # audio.device.DeviceConfig
    media_streams: object | None = None  # audio.media_streams.MediaStreamsConfig
    sip: tuple[object, ...] = ()  # audio.sip.config.SipConfig, one per SIP server (address)

    @property
    def live(self) -> bool:
        """Whether a source keeps bringing calls (the process then runs until a signal)."""
        return self.audiosocket is not None or self.devices is not None or self.media_streams is not None or bool(self.sip)

    @property
    def needs_model(self) -> bool:
        return bool(self.wavs) or self.live


def add_ingress_arguments(parser: argparse.ArgumentParser, *, wav: bool = True) -> None:
    group = parser.add_argument_group("ingress (where calls come from)")
    if wav:
        group.add_argument("--wav", metavar="FILE", action="append", default=[], help="monitor a recorded call (repeatable)")
        group.add_argument("--realtime", action="store_true", help="pace --wav calls by their audio time, as if live")
    group.add_argument("--audiosocket", metavar="[HOST:]PORT", nargs="?", const="",
                       help="serve Asterisk AudioSocket calls (default address: [audiosocket] host/port, else 127.0.0.1:9092; see docs/asterisk.md)")
    group.add_argument("--media-streams", metavar="[HOST:]PORT", nargs="?", const="",
                       help="serve Genesys AudioHook and Twilio Media Streams websockets (default address: [media_streams] host/port, else 127.0.0.1:9094; see docs/media-streams.md)")
    group.add_argument("--siprec", metavar="[HOST:]PORT", nargs="?", const="",
                       help="serve SIPREC recording sessions from an SBC, and plain SIP calls (default address: [siprec] host/port, else 127.0.0.1:5060; see docs/siprec.md)")
    group.add_argument("--sip", metavar="[HOST:]PORT", nargs="?", const="",
                       help="serve plain SIP 'listen' calls from a PBX (ChanSpy, eavesdrop, 3CX), and SIPREC: the same server as --siprec (one server when both name the same address)")
    group.add_argument("--devices", action="store_true",
                       help="monitor one call from the sound devices chosen in [devices] (see 'callshield devices'), until stopped")


def ingress_from_args(settings, args: argparse.Namespace) -> Ingress:
    """The sources ``args`` ask for, with their config sections; bad files and
    addresses fail here, before anything connects."""
    wavs = tuple(Path(w) for w in getattr(args, "wav", []) or [])
    for wav in wavs:
        if not wav.is_file():
            raise FileNotFoundError(2, "no such call file", str(wav))
    audiosocket = devices = media_streams = None
    if args.audiosocket is not None:
        audiosocket = _audiosocket_config(settings, args.audiosocket)
    if getattr(args, "media_streams", None) is not None:
        media_streams = _media_streams_config(settings, args.media_streams)
    sip: list = []
    for flag in ("siprec", "sip"):
        address = getattr(args, flag, None)
        if address is not None:
            config = _sip_config(settings, address, flag)
            if all((c.host, c.port) != (config.host, config.port) for c in sip):
                sip.append(config)
    if args.devices:
        from audio.device import DeviceConfig

        devices = DeviceConfig.from_section(settings.section("devices"))
    return Ingress(wavs=wavs, realtime=bool(getattr(args, "realtime", False)), audiosocket=audiosocket, devices=devices,
                   media_streams=media_streams, sip=tuple(sip))


def _audiosocket_config(settings, address: str):
    """``[audiosocket]`` of the config, with ``--audiosocket [HOST:]PORT`` on top."""
    # imported here, not at the top: every command module loads for `callshield --help`; audio.audiosocket about 240 ms (python -X importtime)
    from audio.audiosocket import AudioSocketConfig

    return _with_address(AudioSocketConfig.from_section(settings.section("audiosocket")), "--audiosocket", address)


def _media_streams_config(settings, address: str):
    """``[media_streams]`` of the config, with ``--media-streams [HOST:]PORT`` on top."""
    from audio.media_streams.config import MediaStreamsConfig

    return _with_address(MediaStreamsConfig.from_section(settings.section("media_streams")), "--media-streams", address)


def _with_address(config, option: str, address: str):
    """``config`` with the host and port of ``address`` (``[HOST:]PORT``; empty: as it is)."""
    if not address:
        return config
    host, _, port = address.rpartition(":")
    try:
        port_number = int(port)
    except ValueError:
        raise IngressOptionError(f"{option} wants [HOST:]PORT, not {address!r}") from None
    if not 0 <= port_number <= 65535:
        raise IngressOptionError(f"{option} port {port_number} is out of range")
    return dataclasses.replace(config, port=port_number, **({"host": host.strip("[]")} if host else {}))


def _sip_config(settings, address: str, flag: str):
    """``[siprec]`` of the config, with ``--siprec`` / ``--sip [HOST:]PORT`` on top."""
    from audio.sip.config import SipConfig

    config = _with_address(SipConfig.from_section(settings.section("siprec")), f"--{flag}", address)
    config.check()
    return config


async def start_ingress(agent, ingress: Ingress) -> list[asyncio.Task]:
    """Start the recorded calls and the call servers of ``ingress`` on ``agent``;
    returns the tasks of the servers, which the caller keeps and awaits at
    shutdown (a task that ends with an error means the source could not start)."""
    from audio.wav import WavSource

    for wav in ingress.wavs:
        audio = agent.audio_config
        source = WavSource(wav, channel_map=audio.channel_map, chunk_ms=audio.chunk_ms, realtime=ingress.realtime)
        agent.start_call(source, sample_rate=source.sample_rate, source_kind="wav", lossless=not ingress.realtime)
    tasks: list[asyncio.Task] = []
    if ingress.audiosocket is not None:
        from agent.ingress import serve_audiosocket

        config = ingress.audiosocket

        def announce(server) -> None:
            ready(f"AudioSocket calls accepted on {config.host}:{server.port}")

        tasks.append(asyncio.create_task(serve_audiosocket(agent, config=config, started=announce), name="audiosocket"))
    if ingress.media_streams is not None:
        from agent.media_streams import serve_media_streams

        streams = ingress.media_streams

        def announce_streams(server) -> None:
            ready(f"media streams accepted on {streams.host}:{server.port}")

        tasks.append(asyncio.create_task(serve_media_streams(agent, config=streams, started=announce_streams), name="media_streams"))
    for sip in ingress.sip:
        from agent.sip_ingress import serve_sip

        def announce_sip(server, config=sip) -> None:
            ready(f"SIPREC and SIP calls accepted on {config.host}:{server.port} ({'/'.join(config.transports)})")

        tasks.append(asyncio.create_task(serve_sip(agent, sip, started=announce_sip), name=f"sip-{sip.port}"))
    if ingress.devices is not None:
        from agent.ingress import capture_devices

        tasks.append(asyncio.create_task(capture_devices(agent, ingress.devices), name="devices"))
    return tasks


def ready(what: str) -> None:
    """Say where calls are now accepted, on stderr whatever the log level: an
    operator (and a supervisor script) needs it even when logging is quiet
    (``serve`` keeps library chatter at warnings)."""
    print(f"callshield: {what}", file=sys.stderr, flush=True)


def raise_if_failed(tasks: list[asyncio.Task]) -> None:
    """Re-raise the error of an ingress task that ended with one (port in use, no device)."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()
