"""Run an agent that monitors calls and streams them to a console elsewhere.

``callshield agent --console ws://HOST:PORT --token T [--agent-id NAME] [--model M]``
connects to the console (reconnecting with backoff for as long as it runs)
and monitors the calls its ingress brings: for now ``--wav FILE`` (recorded
calls, as if live with ``--realtime``); live ingress (Asterisk AudioSocket,
sound devices) plugs in at :func:`start_ingress`. It runs until SIGTERM or
SIGINT, then shuts down in order: stop sources, flush recognizers, finish
recordings, wait briefly for the console's acknowledgements, close the link.
With only ``--wav`` calls, it exits once they are done and acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from audio.errors import CallshieldError


class AgentCommandError(CallshieldError):
    code = "agent_error"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--console", metavar="URL", help="the console, ws://HOST:PORT or wss://HOST:PORT (default: [agent] console_url)")
    parser.add_argument("--token", help="this agent's token (default: [agent] token/token_file or $CALLSHIELD_AGENT_TOKEN)")
    parser.add_argument("--agent-id", metavar="NAME", help="the agent name the token was issued for (default: [agent] agent_id)")
    parser.add_argument("--model", metavar="MODEL", help="speech model (directory or installed name; default: models lookup order)")
    parser.add_argument("--partner", metavar="NAME", help="partner for calls whose ingress names none (default: [agent] partner)")
    parser.add_argument("--seat", metavar="SEAT", help="seat for calls whose ingress names none (default: [agent] seat)")
    ingress = parser.add_argument_group("ingress (where calls come from)")
    ingress.add_argument("--wav", metavar="FILE", action="append", default=[], help="monitor a recorded call (repeatable)")
    ingress.add_argument("--realtime", action="store_true", help="pace --wav calls by their audio time, as if live")
    ingress.add_argument("--audiosocket", metavar="[HOST:]PORT", nargs="?", const="",
                         help="serve Asterisk AudioSocket calls (default address: [audiosocket] host/port, else 127.0.0.1:9092; see docs/asterisk.md)")
    ingress.add_argument("--devices", action="store_true",
                         help="monitor one call from the sound devices chosen in [devices] (see 'callshield devices'), until stopped")
    parser.add_argument("--recordings", metavar="DIR", help="where call recordings go: the console's DATA_DIR/recordings, shared (default: the data directory's recordings/)")


def run(args: argparse.Namespace) -> int:
    from agent.settings import load_settings

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    settings = load_settings(args.config)
    url = args.console or settings.agent.console_url
    if not url:
        raise AgentCommandError("no console given: pass --console ws://HOST:PORT or set [agent] console_url", code="no_console")
    token = args.token or settings.agent.resolved_token()
    if not token:
        raise AgentCommandError("no agent token: pass --token, set [agent] token_file, or $CALLSHIELD_AGENT_TOKEN", code="no_token")
    agent_settings = settings.agent
    changes = {k: v for k, v in (("agent_id", args.agent_id), ("partner", args.partner), ("seat", args.seat)) if v}
    if changes:
        agent_settings = dataclasses.replace(agent_settings, **changes)
    for wav in args.wav:  # bad files fail before connecting
        if not Path(wav).is_file():
            raise FileNotFoundError(2, "no such call file", wav)
    audiosocket = _audiosocket_config(settings, args.audiosocket) if args.audiosocket is not None else None
    devices = _devices_config(settings) if args.devices else None
    live = audiosocket is not None or devices is not None
    model = _resolve_model(settings, args.model) if args.wav or live else None
    from agent.recording import AgentRecording
    from audio.retention import RetentionPolicy

    recordings = Path(args.recordings).expanduser() if args.recordings else settings.data_dir / "recordings"
    recording = AgentRecording(recordings, RetentionPolicy.from_section(settings.section("retention")))
    try:
        return asyncio.run(_run_agent(args, agent_settings, settings.detection_config(), url, token, model, recording,
                                      ingress=Ingress(audiosocket=audiosocket, devices=devices)))
    finally:
        recording.close()


def _resolve_model(settings, option: str | None):
    from models.lookup import ModelsConfig, resolve_model

    base = settings.file.path.parent if settings.file.path else None
    return resolve_model(option or settings.agent.model, ModelsConfig.from_section(settings.section("models"), base=base), data_dir=settings.data_dir)


@dataclasses.dataclass(frozen=True)
class Ingress:
    """The live call sources the command line asked for (None: not asked)."""

    audiosocket: object | None = None  # audio.audiosocket.AudioSocketConfig
    devices: object | None = None  # audio.device.DeviceConfig


def _audiosocket_config(settings, address: str):
    """``[audiosocket]`` of the config, with ``--audiosocket [HOST:]PORT`` on top."""
    from audio.audiosocket import AudioSocketConfig

    config = AudioSocketConfig.from_section(settings.section("audiosocket"))
    if not address:
        return config
    host, _, port = address.rpartition(":")
    try:
        port_number = int(port)
    except ValueError:
        raise AgentCommandError(f"--audiosocket wants [HOST:]PORT, not {address!r}", code="bad_address") from None
    if not 0 <= port_number <= 65535:
        raise AgentCommandError(f"--audiosocket port {port_number} is out of range", code="bad_address")
    return dataclasses.replace(config, port=port_number, **({"host": host.strip("[]")} if host else {}))


def _devices_config(settings):
    from audio.device import DeviceConfig

    return DeviceConfig.from_section(settings.section("devices"))


async def start_ingress(agent, args: argparse.Namespace, ingress: Ingress = Ingress()) -> tuple[bool, list[asyncio.Task]]:
    """Start the calls and call servers the command line asks for.

    Returns whether an ingress keeps bringing calls (the agent then runs until
    a signal; otherwise it exits when the given calls are done) and the tasks
    it started, which the caller keeps and awaits at shutdown.
    """
    from audio.wav import WavSource

    for wav in args.wav:
        source = WavSource(wav, realtime=args.realtime)
        agent.start_call(source, sample_rate=source.sample_rate, source_kind="wav", lossless=not args.realtime)
    tasks: list[asyncio.Task] = []
    if ingress.audiosocket is not None:
        from agent.ingress import serve_audiosocket

        def announce(server) -> None:
            logging.getLogger("callshield.agent").info("AudioSocket calls accepted on %s:%s", ingress.audiosocket.host, server.port)

        tasks.append(asyncio.create_task(serve_audiosocket(agent, config=ingress.audiosocket, started=announce), name="audiosocket"))
    if ingress.devices is not None:
        from agent.ingress import capture_devices

        tasks.append(asyncio.create_task(capture_devices(agent, ingress.devices), name="devices"))
    return bool(tasks) or not args.wav, tasks


async def _run_agent(args, agent_settings, detection_config, url: str, token: str, model, recording=None,
                     ingress: Ingress = Ingress()) -> int:
    from agent.runtime import Agent, make_link

    if recording is not None:
        await recording.recover()
    link = make_link(agent_settings, url=url, token=token)
    taps = [recording.tap] if recording is not None else []
    agent = Agent(link, settings=agent_settings, detection_config=detection_config, tap_factories=taps)
    agent.install_signal_handlers()
    await agent.start()
    ingress_tasks: list[asyncio.Task] = []
    try:
        if model is not None:
            await agent.load_model(model.path)
        keeps_running, ingress_tasks = await start_ingress(agent, args, ingress)
        waits = {
            asyncio.ensure_future(link.wait_stopped()),
            asyncio.ensure_future(agent.wait_shutdown_requested()),
        }
        if not keeps_running:
            waits.add(asyncio.ensure_future(_calls_done_and_acked(agent)))
        try:
            await asyncio.wait(waits | set(ingress_tasks), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        for task in ingress_tasks:  # an ingress that could not start (port in use, no device) fails the command
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()
        if link.failure is not None:
            raise link.failure
        return 0
    finally:
        agent.request_shutdown()  # ingress stops accepting and releases its legs
        await asyncio.gather(*ingress_tasks, return_exceptions=True)
        await agent.shutdown()


async def _calls_done_and_acked(agent) -> None:
    await agent.wait_calls()
    await agent.link.drain()
