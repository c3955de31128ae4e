"""Stream a recorded call (WAV, or timed transcript JSONL) into a running console as if it were live.

``callshield replay CALL.wav --console ws://HOST:PORT --token T [--realtime]``
runs the call through the speech model and the detector; ``CALL.jsonl``
(one utterance a line, as ``callshield transcribe`` writes) skips the model.
The command exits 0 once the console has acknowledged every event of the
call; a bad file, an unreachable console (after ``--retries`` attempts) or a
refused token is a one-line error and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import sys
from pathlib import Path

from kernel.errors import CallshieldError


class ReplayError(CallshieldError):
    code = "replay_error"


TRANSCRIPT_SUFFIXES = (".jsonl", ".json", ".ndjson")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("call", metavar="CALL", help="a call recording (.wav) or timed transcript (.jsonl)")
    parser.add_argument("--console", metavar="URL", help="the console, ws://HOST:PORT (default: [agent] console_url)")
    parser.add_argument("--token", help="this agent's token (default: [agent] token/token_file or $CALLSHIELD_AGENT_TOKEN)")
    parser.add_argument("--agent-id", metavar="NAME", help="the agent name the token was issued for (default: [agent] agent_id)")
    parser.add_argument("--realtime", action="store_true", help="pace the call by its audio time, as if it were live")
    parser.add_argument("--speed", type=float, default=1.0, help="with --realtime: audio seconds per second (default 1.0)")
    parser.add_argument("--partner", metavar="NAME", help="the partner's user name (default: [agent] partner)")
    parser.add_argument("--seat", metavar="SEAT", help="desk or extension (default: [agent] seat)")
    parser.add_argument("--call-id", metavar="ID", help="the call's id, as a PBX would give it (default: a fresh UUID); "
                        "an id the console already has from this agent is monitored as ID.2 (call_id_reused)")
    parser.add_argument("--model", metavar="MODEL", help="speech model for a WAV call (directory or installed name)")
    parser.add_argument("--retries", type=int, default=5, metavar="N", help="connection attempts before giving up (default 5)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="seconds to wait for the console's acknowledgements after the call (default 60)")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every command module loads for `callshield --help`; cli.settings and the agent about 250 ms (python -X importtime)
    from cli.settings import load_settings
    from agent.transcript_source import TimedTranscript

    settings = load_settings(args.config)
    path = Path(args.call)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such call file", str(path))
    if args.speed <= 0 or args.retries < 1 or args.timeout <= 0:
        raise ReplayError("--speed and --timeout must be positive and --retries at least 1", code="bad_option")
    suffix = path.suffix.lower()
    transcript = source = model = None
    if suffix in TRANSCRIPT_SUFFIXES:
        transcript = TimedTranscript.read(path)
    elif suffix == ".wav":
        from audio.wav import WavSource

        audio = settings.audio_config()
        source = WavSource(path, channel_map=audio.channel_map, chunk_ms=audio.chunk_ms, realtime=args.realtime)
        model = settings.resolve_model(args.model)
    else:
        raise ReplayError(f"{path}: not a call file (expected .wav or .jsonl)", code="bad_call_file")

    url, token = settings.console_target(args.console, args.token)
    detector = settings.detector()
    webhook = settings.end_call_webhook()
    agent_settings = settings.agent
    if args.agent_id:
        agent_settings = dataclasses.replace(agent_settings, agent_id=args.agent_id)
    return asyncio.run(_replay(args, agent_settings, settings, detector, url, token, transcript, source, model, webhook))


async def _replay(args, agent_settings, settings, detector, url, token, transcript, source, model, webhook=None) -> int:
    from agent.runtime import Agent, make_link
    from agent.transcript_source import TranscriptSource

    link = make_link(agent_settings, url=url, token=token, max_attempts=args.retries)
    agent = Agent(link, settings=agent_settings, detection_config=detector.config, detector=detector,
                  audio_config=settings.audio_config(), end_call_webhook=webhook)
    agent.install_signal_handlers()
    await agent.start()
    try:
        if source is not None:
            await agent.load_model(model.path)
            handle = agent.start_call(source, sample_rate=source.sample_rate, partner=args.partner, seat=args.seat,
                                      source_kind="wav", lossless=not args.realtime, call_id=args.call_id)
        else:
            paced = TranscriptSource(transcript, realtime=args.realtime, speed=args.speed)
            handle = agent.start_transcript_call(paced, partner=args.partner, seat=args.seat, call_id=args.call_id)
        stopped = asyncio.ensure_future(link.wait_stopped())
        interrupted = asyncio.ensure_future(agent.wait_shutdown_requested())
        try:
            await asyncio.wait({handle.task, stopped, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            interrupted.cancel()
        if link.failure is not None:
            raise link.failure
        if not handle.done:  # SIGINT/SIGTERM: end the call cleanly, keep what was sent
            handle.stop("shutdown")
            await handle.wait()
        if agent.end_call_webhook is not None:  # an end-call webhook still retrying: its outcome goes to the console too
            with contextlib.suppress(TimeoutError):
                await agent.end_call_webhook.idle(args.timeout)
        try:
            await link.drain(timeout=args.timeout)
        except TimeoutError:
            raise ReplayError(f"the console did not acknowledge {link.pending} event(s) within {args.timeout:g} s", code="not_acknowledged") from None
        session = handle.session
        for authorization in session.authorizations:
            print(f"call {handle.call_id}: end authorized by {authorization.by} at {authorization.authorized_at}: {authorization.reason}")
        print(f"call {handle.call_id}: {session.findings} finding(s), level {session.level}, "
              f"{session.audio_end:.1f} s; every event acknowledged by the console", file=sys.stdout)
        return 0
    finally:
        await agent.shutdown(grace=0)
