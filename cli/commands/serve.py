"""Run the console and an agent together on this machine (the embedded default).

``callshield serve [--demo] [--host H] [--port P] [--data-dir D]
[--audiosocket [HOST:]PORT] [--media-streams [HOST:]PORT] [--siprec [HOST:]PORT] [--devices] [--wav FILE]``: one process, one
event loop. The console keeps its store in SQLite under the data
directory (or in PostgreSQL: ``[console] store``) and binds 127.0.0.1 unless told otherwise; the agent connects to it
over the same websocket protocol a remote agent would use.

First start: an ``admin`` user is created and its generated password printed
once. ``--demo`` also creates ``demo-partner`` and ``demo-supervisor`` (their
passwords printed once) and replays the bundled demo call ``[agent]
demo_calls`` times (3), then stops and says so on the supervisors' screen:
through the speech model when an English Vosk model is installed, otherwise
from the call's timed transcript (a notice on the console says which). The
sign-in summary (the URL, new passwords, how to reset one) is printed last,
once everything is up; library logging stays at WARNING unless ``--verbose``. The live
ingress options are those of ``callshield agent`` (calls from Asterisk,
Genesys AudioHook or Twilio streams, a sound device or recordings, transcribed with the model of the lookup order).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import re
import sys
from pathlib import Path

from cli.commands.ingress_options import Ingress, add_ingress_arguments, ingress_from_args, raise_if_failed, start_ingress
from kernel.errors import CallshieldError

log = logging.getLogger("callshield.serve")

EMBEDDED_AGENT = "local-agent"
DEMO_USERS = (("demo-partner", "partner"), ("demo-supervisor", "supervisor"))


class ServeError(CallshieldError):
    code = "serve_error"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", action="store_true", help="also replay the bundled sample call a few times ([agent] demo_calls)")
    parser.add_argument("--verbose", action="store_true", help="log every connection and call (default: warnings and errors only)")
    parser.add_argument("--host", help="bind address (default: [console] host, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default: [console] port, else 8750; 0 = any free port)")
    parser.add_argument("--data-dir", metavar="DIR", help="where the store and recordings live (default: [console] data_dir, else the callshield data directory)")
    parser.add_argument("--model", metavar="MODEL", help="speech model (directory or installed name; default: models lookup order; "
                        "with --demo: the first installed English model, else the demo's timed transcript)")
    add_ingress_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every command module loads for `callshield --help`; cli.settings, the agent and console.server about 450 ms (python -X importtime)
    from cli.commands.console import console_config as console_config_from
    from cli.settings import load_settings

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    settings = load_settings(args.config)
    console_config = console_config_from(args)
    detection_config = settings.detection_config()
    detector = settings.detector(detection_config)  # a missing sentence encoder fails here, before anything starts
    webhook = settings.end_call_webhook()  # so does a webhook url without a usable secret
    ingress = ingress_from_args(settings, args)
    if args.demo and ingress.needs_model:
        raise ServeError("--demo replays a sample call on its own; run live calls (--audiosocket, --media-streams, --devices, --wav) without it", code="bad_option")
    if args.demo:
        model = _english_model(settings, args.model)
    elif ingress.needs_model:
        model = settings.resolve_model(args.model).path
    else:
        model = None
    return asyncio.run(_serve(settings, console_config, detector, demo=args.demo, model=model, ingress=ingress, webhook=webhook))


def _english_model(settings, option: str | None) -> Path | None:
    """An installed English Vosk speech model for the demo, or None (then the transcript is replayed).

    Only speech models count: the detector's sentence encoder is installed in
    the same directory and its catalogue language is English too."""
    from models.catalogue import load_catalogue
    from models.lookup import ModelsConfig, models_dir
    from models.layout import SPEECH, check_model_dir
    from models.store import ModelStore

    if option:
        path = Path(option).expanduser()
        if path.is_dir():
            check_model_dir(path)
            return path
    base = settings.file.path.parent if settings.file.path else None
    root = models_dir(ModelsConfig.from_section(settings.section("models"), base=base), data_dir=settings.data_dir)
    store = ModelStore(root, load_catalogue())
    for model in store.installed():
        if model.kind != SPEECH or (option and model.name != option):
            continue
        entry = store.catalogue.get(model.name)
        language = entry.language if entry is not None else ""
        if language.startswith("en") or re.search(r"(^|-)en(-|$)", model.name):
            return model.path
    if option:
        raise ServeError(f"--model {option!r}: no such English speech model installed in {root}", code="model_not_found")
    return None


async def _serve(settings, console_config, detector, *, demo: bool, model: Path | None, ingress: Ingress = Ingress(), webhook=None) -> int:
    from agent.recording import AgentRecording
    from kernel.retention import RetentionPolicy
    from agent.runtime import Agent, make_link
    from console.auth import new_token
    from console.server import Console

    retention = RetentionPolicy.from_section(settings.section("retention"))
    console = Console(console_config, retention=retention)
    await console.start()
    agent = None
    demo_task = None
    ingress_tasks: list[asyncio.Task] = []
    recording = AgentRecording(console_config.recordings_dir, retention)  # the console serves the same directory
    try:
        await recording.recover()
        created = await _first_start(console, demo=demo)
        token = new_token()  # a fresh secret for the embedded agent on every start
        await console.db(console.store.ensure_user, EMBEDDED_AGENT, "agent", token)
        agent_settings = dataclasses.replace(settings.agent, agent_id=EMBEDDED_AGENT, site=settings.agent.site or "embedded")
        link = make_link(agent_settings, url=console.url, token=token)
        agent = Agent(link, settings=agent_settings, detection_config=detector.config, detector=detector,
                      audio_config=settings.audio_config(), tap_factories=[recording.tap], end_call_webhook=webhook,
                      decoding=settings.decoding_plan(),
                      ids_in_use=[recording.recorded])
        agent.install_signal_handlers()
        await agent.start()
        await link.wait_connected(timeout=30)
        if demo:
            demo_task = asyncio.get_running_loop().create_task(_demo_loop(agent, model), name="demo")
        elif model is not None:
            await agent.load_model(model)
            ingress_tasks = await start_ingress(agent, ingress)
        print(sign_in_summary(console.http_url, created, demo=demo, calls=agent_settings.demo_calls), flush=True)
        stopped = asyncio.ensure_future(link.wait_stopped())
        requested = asyncio.ensure_future(agent.wait_shutdown_requested())
        try:
            await asyncio.wait({stopped, requested, *ingress_tasks}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            requested.cancel()
        raise_if_failed(ingress_tasks)
        if link.failure is not None:
            raise link.failure
        print("callshield: shutting down", file=sys.stderr, flush=True)
        return 0
    finally:
        if demo_task is not None:
            demo_task.cancel()
            await asyncio.gather(demo_task, return_exceptions=True)
        if agent is not None:
            agent.request_shutdown()  # ingress stops accepting and releases its legs
            await asyncio.gather(*ingress_tasks, return_exceptions=True)
            await agent.shutdown()
        recording.close()
        await console.stop()


async def _first_start(console, *, demo: bool) -> list[tuple[str, str, str]]:
    """Leave the user able to log in: an admin on first start; demo users with
    --demo. Returns the users made now, ``(name, role, password)``."""
    store = console.store
    created = []
    if await console.db(store.user_count) == 0:
        created.append(("admin", "admin", await console.db(store.add_user, "admin", "admin")))
    if demo:
        for name, role in DEMO_USERS:
            if await console.db(store.credentials, name) is None:
                created.append((name, role, await console.db(store.add_user, name, role)))
    return created


def sign_in_summary(url: str, created: list[tuple[str, str, str]], *, demo: bool, calls: int) -> str:
    """What a person needs to start, printed last so no log line pushes it away."""
    lines = [f"callshield console: {url}/  (supervisor: {url}/supervisor, partner: {url}/partner)"]
    lines += [f"created user '{name}' ({role}) with password: {password}" for name, role, password in created]
    if demo:
        lines.append(f"demo: sign in as demo-supervisor in one window and demo-partner in another; the sample call plays {_times(calls)}, "
                     "then the demo stops")
    shown = "passwords above are shown once; " if created else ""
    lines.append(f"{shown}to set a new password: callshield users passwd NAME")
    return "\n".join(lines)


def _times(n: int) -> str:
    return f"{n} time{'s' if n != 1 else ''}"


async def _demo_loop(agent, model: Path | None) -> None:
    """Replay the demo call ``[agent] demo_calls`` times, with a pause between runs, then say the demo is over."""
    from cli.demo import CALL_TRANSCRIPT, CALL_WAV
    from agent.transcript_source import TranscriptSource

    if model is not None:
        try:
            await agent.load_model(model)
        except CallshieldError as exc:
            log.warning("demo: cannot load the English model %s (%s); replaying the timed transcript instead", model, exc)
            model = None
    calls = agent.settings.demo_calls
    for run in range(1, calls + 1):
        if model is not None:
            from audio.wav import WavSource

            source = WavSource(CALL_WAV, realtime=True)
            handle = agent.start_call(source, sample_rate=source.sample_rate, partner="demo-partner", seat="demo", source_kind="wav")
            agent.notice("demo_source", f"Demo call {run} of {calls}, replayed through the speech model ({model.name}).", call_id=handle.call_id)
        else:
            source = TranscriptSource.open(CALL_TRANSCRIPT, realtime=True, speed=agent.settings.demo_speed)
            handle = agent.start_transcript_call(source, partner="demo-partner", seat="demo")
            agent.notice("demo_source", f"Demo call {run} of {calls}, replayed from its timed transcript (no English speech model installed).",
                         call_id=handle.call_id)
        log.info("demo: call %s started (%d of %d)", handle.call_id, run, calls)
        await handle.wait()
        if run < calls:
            await asyncio.sleep(agent.settings.demo_pause_s)
    message = (f"The demo played its sample call {_times(calls)} and stopped. "
               "The console stays open; restart 'callshield serve --demo' to play it again.")
    agent.notice("demo_finished", message)
    print(f"demo: {message}", flush=True)
