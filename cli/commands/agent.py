"""Run an agent that monitors calls and streams them to a console elsewhere.

``callshield agent --console ws://HOST:PORT --token T [--agent-id NAME] [--model M]``
connects to the console (reconnecting with backoff for as long as it runs)
and monitors the calls its ingress brings: ``--audiosocket [HOST:]PORT``
(Asterisk), ``--media-streams [HOST:]PORT`` (Genesys AudioHook, Twilio Media
Streams), ``--siprec`` / ``--sip [HOST:]PORT`` (SIPREC from an SBC, plain
SIP from a PBX, docs/siprec.md), ``--devices`` (a headset tap) and ``--wav FILE`` (recorded calls,
as if live with ``--realtime``); see ``cli/commands/ingress_options.py``. It
runs until SIGTERM or SIGINT, then shuts down in order: stop sources, flush
recognizers, finish recordings, wait briefly for the console's
acknowledgements, close the link. With only ``--wav`` calls, it exits once
they are done and acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from cli.commands.ingress_options import Ingress, add_ingress_arguments, ingress_from_args, raise_if_failed, start_ingress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--console", metavar="URL", help="the console, ws://HOST:PORT or wss://HOST:PORT; several replicas comma-separated, tried in order when one is gone (default: [agent] console_url)")
    parser.add_argument("--token", help="this agent's token (default: [agent] token/token_file or $CALLSHIELD_AGENT_TOKEN)")
    parser.add_argument("--agent-id", metavar="NAME", help="the agent name the token was issued for (default: [agent] agent_id)")
    parser.add_argument("--model", metavar="MODEL", help="speech model (directory or installed name; default: models lookup order)")
    parser.add_argument("--partner", metavar="NAME", help="partner for calls whose ingress names none (default: [agent] partner)")
    parser.add_argument("--seat", metavar="SEAT", help="seat for calls whose ingress names none (default: [agent] seat)")
    add_ingress_arguments(parser)
    parser.add_argument("--recordings", metavar="DIR", help="where call recordings go: the console's DATA_DIR/recordings, shared (default: the data directory's recordings/)")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every command module loads for `callshield --help`; cli.settings (models, detection, numpy) about 150 ms, agent.runtime and
    # agent.recording about 200 ms more (python -X importtime)
    from cli.settings import load_settings

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    settings = load_settings(args.config)
    url, token = settings.console_target(args.console, args.token)
    agent_settings = settings.agent
    changes = {k: v for k, v in (("agent_id", args.agent_id), ("partner", args.partner), ("seat", args.seat)) if v}
    if changes:
        agent_settings = dataclasses.replace(agent_settings, **changes)
    ingress = ingress_from_args(settings, args)  # bad files and addresses fail before connecting
    model = settings.resolve_model(args.model) if ingress.needs_model else None
    detector = settings.detector()
    webhook = settings.end_call_webhook()  # a url without a usable secret fails here, before connecting
    from agent.recording import AgentRecording
    from kernel.retention import RetentionPolicy

    recordings = Path(args.recordings).expanduser() if args.recordings else settings.data_dir / "recordings"
    recording = AgentRecording(recordings, RetentionPolicy.from_section(settings.section("retention")))
    try:
        return asyncio.run(_run_agent(agent_settings, settings, detector, url, token, model, recording, ingress, webhook))
    finally:
        recording.close()


async def _run_agent(agent_settings, settings, detector, url: str, token: str, model, recording, ingress: Ingress, webhook=None) -> int:
    from agent.runtime import Agent, make_link

    await recording.recover()
    link = make_link(agent_settings, url=url, token=token)
    agent = Agent(link, settings=agent_settings, detection_config=detector.config, detector=detector,
                  audio_config=settings.audio_config(), tap_factories=[recording.tap], end_call_webhook=webhook,
                  ids_in_use=[recording.recorded])
    agent.install_signal_handlers()
    await agent.start()
    ingress_tasks: list[asyncio.Task] = []
    try:
        if model is not None:
            await agent.load_model(model.path)
        ingress_tasks = await start_ingress(agent, ingress)
        waits = {
            asyncio.ensure_future(link.wait_stopped()),
            asyncio.ensure_future(agent.wait_shutdown_requested()),
        }
        if ingress.wavs and not ingress.live:  # only recorded calls: done when they are
            waits.add(asyncio.ensure_future(_calls_done_and_acked(agent)))
        try:
            await asyncio.wait(waits | set(ingress_tasks), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        raise_if_failed(ingress_tasks)
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
