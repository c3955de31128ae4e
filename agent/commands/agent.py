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
    model = _resolve_model(settings, args.model) if args.wav else None
    from agent.recording import AgentRecording
    from audio.retention import RetentionPolicy

    recordings = Path(args.recordings).expanduser() if args.recordings else settings.data_dir / "recordings"
    recording = AgentRecording(recordings, RetentionPolicy.from_section(settings.section("retention")))
    try:
        return asyncio.run(_run_agent(args, agent_settings, settings.detection_config(), url, token, model, recording))
    finally:
        recording.close()


def _resolve_model(settings, option: str | None):
    from models.lookup import ModelsConfig, resolve_model

    base = settings.file.path.parent if settings.file.path else None
    return resolve_model(option or settings.agent.model, ModelsConfig.from_section(settings.section("models"), base=base), data_dir=settings.data_dir)


async def start_ingress(agent, args: argparse.Namespace) -> bool:
    """Start the calls and call servers the command line asks for.

    Returns True when an ingress keeps bringing calls (the agent then runs
    until a signal), False when only a fixed set of calls was given.
    """
    from audio.wav import WavSource

    for wav in args.wav:
        source = WavSource(wav, realtime=args.realtime)
        agent.start_call(source, sample_rate=source.sample_rate, source_kind="wav", lossless=not args.realtime)
    return not args.wav


async def _run_agent(args, agent_settings, detection_config, url: str, token: str, model, recording=None) -> int:
    from agent.runtime import Agent, make_link

    if recording is not None:
        await recording.recover()
    link = make_link(agent_settings, url=url, token=token)
    taps = [recording.tap] if recording is not None else []
    agent = Agent(link, settings=agent_settings, detection_config=detection_config, tap_factories=taps)
    agent.install_signal_handlers()
    await agent.start()
    try:
        if model is not None:
            await agent.load_model(model.path)
        keeps_running = await start_ingress(agent, args)
        waits = {
            asyncio.ensure_future(link.wait_stopped()),
            asyncio.ensure_future(agent.wait_shutdown_requested()),
        }
        if not keeps_running:
            waits.add(asyncio.ensure_future(_calls_done_and_acked(agent)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if link.failure is not None:
            raise link.failure
        return 0
    finally:
        await agent.shutdown()


async def _calls_done_and_acked(agent) -> None:
    await agent.wait_calls()
    await agent.link.drain()
