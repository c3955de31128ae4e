"""The agent: many calls at once on one shared speech model, one detector, one link.

An :class:`Agent` owns what its calls share: the loaded speech model and the
recognizer executor (models), the detector (stateless, shared), the console
link, and a task per call. Ingress (the AudioSocket server, sound devices,
``replay``, the demo) only calls :meth:`Agent.start_call` (audio) or
:meth:`Agent.start_transcript_call` (timed transcript) and gets a
:class:`CallHandle` back at once.

End-call authorizations: a call with a control of its own (AudioSocket) is
hung up through it when ``[agent] hangup_on_authorization`` says so; a call
without one (SIPREC, media streams, replays) is ended through the site's
signed webhook (``[end_call_webhook]``, :mod:`agent.end_call_webhook`), and
when none is configured the console is told so (outcome ``not_configured``:
the partner ends the call).

Shutdown, in order (SIGTERM/SIGINT or :meth:`Agent.shutdown`): stop every
call's source; let each call transcribe and screen what it already read and
flush its recognizers; finish its taps (recordings); give pending end-call
webhooks the grace period, then report the rest failed; wait a grace period
for the console to acknowledge what is outstanding; close the link; shut the
executors down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
import weakref
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import ssl

from agent.call import CallControl, CallIds, CallInfo, CallTap, ingress_ids as ingress_pairs
from agent.end_call_webhook import EndCallWebhook, EndCallWebhookSettings
from agent.link import ConsoleLink
from agent.session import CallSession, rename_taps
from agent.settings import AgentSettings
from audio.config import AudioConfig
from audio.frames import SPEAKERS, AudioChunk
from audio.loudness import LoudnessMeter
from audio.vad import Segmenter
from detection.call import CallScreen
from detection.config import DetectionConfig
from detection.detector import Detector
from kernel.backoff import Backoff
from kernel.clock import Clock, iso, utc_now
from kernel.protocol import AgentNotice, EndCallAuthorized, EndCallWebhookOutcome
from models.decoding import DecodingPlan
from models.transcriber import CallTranscriber, SharedModel, idle_executor, recognizer_executor
from models.transcript import Partial, Utterance

log = logging.getLogger("callshield.agent")

TapFactory = Callable[[CallInfo], CallTap]


def make_link(settings: AgentSettings, *, url: str, token: str, max_attempts: int | None = None) -> ConsoleLink:
    """The console link as ``[agent]`` configures it (backoff, partial queue, TLS trust)."""
    context = None
    if "wss://" in url and settings.ca_file is not None:
        context = ssl.create_default_context(cafile=str(settings.ca_file))
    return ConsoleLink(
        url,
        agent_id=settings.agent_id,
        token=token,
        site=settings.site,
        backoff=Backoff(initial=settings.reconnect_initial_s, maximum=settings.reconnect_max_s, jitter=settings.reconnect_jitter),
        partial_limit=settings.partial_queue,
        max_attempts=max_attempts,
        ssl=context,
    )


ENDED_CALLS_RENAMABLE = 1000
"""Ended calls whose recordings an agent can still rename (their id refused as
taken after they ended, e.g. a short call while the console was down)."""


@dataclass(frozen=True)
class _EndedCall:
    """What an ended call's rename needs: the id it asked for, its taps that
    can be renamed (its recording), and its session while anyone holds it."""

    asked: str
    taps: list[Any]
    session: Callable[[], CallSession | None]


@dataclass
class CallHandle:
    """A running call. ``task`` ends when the call has ended and its last event was published.
    ``asked``: the id the ingress asked for (the call may run under ``<asked>.2``...)."""

    session: CallSession
    task: asyncio.Task
    asked: str = ""

    @property
    def call_id(self) -> str:
        return self.session.info.call_id

    @property
    def info(self) -> CallInfo:
        return self.session.info

    @property
    def done(self) -> bool:
        return self.task.done()

    def stop(self, reason: str = "hangup") -> None:
        """Stop reading the call's source; the call ends with ``reason`` once what was read is processed."""
        self.session.stop(reason)

    async def wait(self) -> None:
        await asyncio.wait({self.task})


class Agent:
    """Runs calls and streams their events to the console.

    ``link``: the console link (the agent starts and closes it).
    ``detection_config``: a ``detection.DetectionConfig`` (default: defaults).
    ``model``: a ``models.transcriber.SharedModel`` for audio calls, or None
    (load one with :meth:`load_model`). ``clock``: the wall clock for
    call-start stamps. ``tap_factories``: called for each audio call; each
    returns a :class:`~agent.call.CallTap` (e.g. the call recorder).
    ``audio_config``: an ``audio.config.AudioConfig`` (voice activity and
    loudness settings of every audio call; default: defaults).
    ``decoding``: ``[models.decoding]`` (``models.decoding.DecodingPlan``):
    each speaker's decoding (the customer live with partials; the partner by
    default finals only in a pool of idle-priority threads, made here) and
    the speed profile :meth:`load_model` overlays on the model.
    ``transcriber_factory(model, sample_rate, executor)``: makes each audio
    call's transcriber (default ``models.transcriber.CallTranscriber`` with
    the audio config's VAD and ``decoding``);
    ``screen_factory()``: makes each call's screen (default
    ``detection.call.CallScreen`` on one shared ``Detector``: ``detector``,
    else one with the rules alone, built from ``detection_config``).
    A detector with a semantic stage screens customers' final utterances in
    a "detect" executor of one thread per core.
    ``end_call_webhook``: the ``[end_call_webhook]`` section (its secret
    resolved, see ``EndCallWebhookSettings.from_section``), or None (no
    webhook); the dispatcher is :attr:`end_call_webhook`.
    ``ids_in_use``: predicates saying a call id is used though this process
    never ran it (e.g. ``AgentRecording.recorded``: a recording by that name
    exists); a call asking for such an id runs as ``<id>.2`` from the start.
    """

    def __init__(
        self,
        link: ConsoleLink,
        *,
        settings: AgentSettings | None = None,
        detection_config: Any = None,
        audio_config: Any = None,
        model: Any = None,
        recognizer_executor: Any = None,
        clock: Clock = utc_now,
        tap_factories: Iterable[TapFactory] = (),
        loudness: bool = True,
        transcriber_factory: Callable[..., Any] | None = None,
        screen_factory: Callable[[], Any] | None = None,
        detector: Any = None,
        end_call_webhook: EndCallWebhookSettings | None = None,
        decoding: DecodingPlan | None = None,
        ids_in_use: Iterable[Callable[[str], bool]] = (),
    ) -> None:
        self.settings = settings or AgentSettings()
        self.decoding = decoding if decoding is not None else DecodingPlan()
        self._idle_executor = None  # the partner's deferred decoding, made with the first call that needs it
        self.link = link
        self.detection_config = detection_config
        self.detect_executor: ThreadPoolExecutor | None = None
        if screen_factory is None:
            self.detection_config = detection_config if detection_config is not None else DetectionConfig()
            self.detector = detector if detector is not None else Detector(self.detection_config)
            screen_factory = lambda: CallScreen(self.detector, self.detection_config)  # noqa: E731
            if self.detector.semantic is not None:
                self.detect_executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="detect")
        self.screen_factory = screen_factory
        self.model = model
        if isinstance(model, SharedModel):
            model.keep_warm = self.decoding.warm_recognizers
        self._recognizer_executor = recognizer_executor
        self._owns_executor = False
        self.clock = clock
        self.tap_factories = list(tap_factories)
        self.loudness = loudness
        self.transcriber_factory = transcriber_factory
        self.audio_config = audio_config if audio_config is not None else AudioConfig()
        self.calls: dict[str, CallHandle] = {}
        self.call_ids = CallIds()
        """Ids of the calls this agent ran: a call asking for one of them gets a distinct id."""
        self.ids_in_use = list(ids_in_use)
        self._ended_calls: dict[str, _EndedCall] = {}  # the latest ENDED_CALLS_RENAMABLE, by the id they ended under
        self._tasks: set[asyncio.Task] = set()
        self._shutdown_requested = asyncio.Event()
        self._shut_down = False
        self._authorizations_seen: set[str] = set()
        self.end_call_webhook: EndCallWebhook | None = None
        """Sends the end-call webhooks of calls without a control of their own (None: none configured)."""
        if end_call_webhook is not None and end_call_webhook.url:
            self.end_call_webhook = EndCallWebhook(end_call_webhook, publish=link.publish, agent_id=link.agent_id,
                                                   site=self.settings.site, clock=clock)
        link.on_authorization = self._on_authorization
        link.on_call_id_taken = self._call_id_taken
        link.live_calls = lambda: list(self.calls)  # heartbeats name the calls still monitored

    # ------------------------------------------------------------------ setup

    async def start(self) -> None:
        """Start the console link (it connects in the background)."""
        self.link.start()

    async def load_model(self, path: str | Path) -> None:
        """Load the speech model once for every audio call (in the recognizer executor)."""
        if self._recognizer_executor is None:
            self._recognizer_executor = recognizer_executor()
            self._owns_executor = True
        self.model = await SharedModel.load(Path(path), self._recognizer_executor, speed=self.decoding.speed)
        self.model.keep_warm = self.decoding.warm_recognizers

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT request an orderly shutdown (see :meth:`wait_shutdown_requested`)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._shutdown_requested.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not on the main thread
                pass

    def request_shutdown(self) -> None:
        self._shutdown_requested.set()

    async def wait_shutdown_requested(self) -> None:
        await self._shutdown_requested.wait()

    # ------------------------------------------------------------------ calls

    def _info(self, *, call_id: str | None, partner: str | None, seat: str | None, source_kind: str,
              sample_rate: int, ingress_ids: Mapping[str, str] | None = None) -> tuple[CallInfo, str | None]:
        """The new call's info, and the id it asked for if that one was already used (see :class:`CallIds`)."""
        call_id, reused = self.call_ids.take(call_id, self.calls, self._in_use)
        info = CallInfo(
            call_id=call_id,
            partner=partner or self.settings.partner,
            seat=self.settings.seat if seat is None else seat,
            source_kind=source_kind,
            sample_rate=sample_rate,
            started_at=iso(self.clock()),
            ingress_ids=ingress_pairs(ingress_ids),
        )
        return info, reused

    def _in_use(self, call_id: str) -> bool:
        return any(used(call_id) for used in self.ids_in_use)

    def start_call(
        self,
        source: AsyncIterable[AudioChunk],
        *,
        sample_rate: int,
        partner: str | None = None,
        seat: str | None = None,
        source_kind: str,
        control: CallControl | None = None,
        call_id: str | None = None,
        lossless: bool = False,
        ingress_ids: Mapping[str, str] | None = None,
    ) -> CallHandle:
        """Start monitoring a call from its audio; returns at once (the call runs as its own task).

        ``call_id``: the id the ingress knows the call by (None: a fresh UUID).
        An id this agent has already given a call (running, or ended and still
        remembered, see :class:`~agent.call.CallIds`; or one ``ids_in_use``
        knows) is never given again: the call runs as ``<id>.2`` (``.3``...)
        with a ``call_id_reused`` notice, and the earlier call's record and
        recording stay as they were. The same happens later if the console
        refuses the id as taken (``call_id_taken``: its call was run by an
        earlier process of this agent): the running or ended call is renamed,
        its events not yet acknowledged are sent again under the new id, its
        recording is renamed too (see :meth:`_call_id_taken`).
        The handle's ``call_id`` is the id the call runs under.
        ``ingress_ids``: the ids the phone system knows the call by (see
        :attr:`~agent.call.CallInfo.ingress_ids`; the end-call webhook sends them).

        ``lossless``: the source can wait (a file read faster than real time):
        it is slowed down instead of having its oldest audio (or the partner's
        backlog, see ``models.transcriber.DeferredTranscriber``) dropped. Live
        sources leave it False."""
        if self.model is None:
            raise RuntimeError("no speech model loaded: call Agent.load_model first")
        if self._shut_down:
            raise RuntimeError("the agent is shutting down")
        info, reused = self._info(call_id=call_id, partner=partner, seat=seat, source_kind=source_kind, sample_rate=sample_rate,
                                  ingress_ids=ingress_ids)
        factory = self.transcriber_factory
        if factory is None:
            gate = partial(Segmenter, config=self.audio_config.vad)
            if self.decoding.partner_deferred and self._idle_executor is None:
                self._idle_executor = idle_executor()
            factory = lambda model, rate, executor: CallTranscriber(model, rate, executor, gate=gate, plan=self.decoding,  # noqa: E731
                                                                    idle=self._idle_executor, lossless=lossless)
        transcriber = factory(self.model, sample_rate, self._recognizer_executor)
        loudness = {}
        if self.loudness:
            window = self.audio_config.loudness_window_ms
            loudness = {speaker: LoudnessMeter(speaker, sample_rate, window_ms=window) for speaker in SPEAKERS}
        session = CallSession(
            info,
            publish=self.link.publish,
            screen=self.screen_factory(),
            transcriber=transcriber,
            loudness=loudness,
            taps=[make_tap(info) for make_tap in self.tap_factories],
            control=control,
            hangup_on_authorization=self.settings.hangup_on_authorization,
            closing_message=self.settings.closing_message,
            audio_queue_chunks=max(1, int(self.settings.audio_queue_s * 50 * len(SPEAKERS))),  # 20 ms chunks of each speaker
            lossless=lossless,
            detect_executor=self.detect_executor,
        )
        return self._run(session, session.run_audio(source), reused, call_id)

    def start_transcript_call(
        self,
        source: AsyncIterable[Partial | Utterance],
        *,
        partner: str | None = None,
        seat: str | None = None,
        call_id: str | None = None,
        duration: float | None = None,
        source_kind: str = "transcript",
        ingress_ids: Mapping[str, str] | None = None,
    ) -> CallHandle:
        """Start a call from a timed transcript (``agent.transcript_source``); returns at once."""
        if self._shut_down:
            raise RuntimeError("the agent is shutting down")
        info, reused = self._info(call_id=call_id, partner=partner, seat=seat, source_kind=source_kind, sample_rate=0,
                                  ingress_ids=ingress_ids)
        session = CallSession(info, publish=self.link.publish, screen=self.screen_factory(), detect_executor=self.detect_executor)
        if duration is None:
            duration = getattr(source, "duration", None)
        return self._run(session, session.run_transcript(source, duration=duration), reused, call_id)

    def _run(self, session: CallSession, work, reused: str | None, asked: str | None) -> CallHandle:
        session.announce()
        if reused is not None:
            self._report_reused(session, reused)
        task = asyncio.get_running_loop().create_task(self._guard(session, work), name=f"call:{session.info.call_id}")
        handle = CallHandle(session, task, asked or session.info.call_id)
        self.calls[session.info.call_id] = handle
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._call_done(handle, t))
        return handle

    async def _guard(self, session: CallSession, work) -> None:
        try:
            await work
        except Exception as exc:  # a bug in one call must not touch the others (cancellation passes through)
            log.exception("call %s failed", session.info.call_id)
            session.notice("call_failed", f"the agent lost this call: {exc!r}")

    def _report_reused(self, session: CallSession, wanted: str) -> None:
        """A call asked for the id of a call this agent already ran: it runs under its own id, and supervisors are told."""
        if wanted in self.calls:
            state = "while that call is still running"
        elif wanted in self.call_ids:
            state = "after that call ended"
        else:
            state = "and a recording of that call exists (this agent has restarted since)"
        self._tell_reused(wanted, session.info.call_id, state, session.notice)

    def _tell_reused(self, wanted: str, call_id: str, state: str, notice: Callable[[str, str], None]) -> None:
        log.error("call id %s reused (%s); the new call is monitored as %s (check that the PBX gives every call a fresh id)",
                  wanted, state, call_id)
        notice("call_id_reused", f"Call id {wanted} came again {state}: this call is monitored as {call_id}, and call "
               f"{wanted}'s record and recording are unchanged. Check that the PBX gives every call a fresh id.")

    def _call_id_taken(self, old: str) -> None:
        """The console refused call ``old``'s start as taken: it stores a call
        of that id from an earlier process of this agent. The call (running,
        or ended with events not yet acknowledged) takes a new id, its held
        events go again under it (``ConsoleLink.rename_call``), its recording
        is renamed, and supervisors are told (``call_id_reused``)."""
        self.call_ids.ended(old)  # taken: never given again
        handle = self.calls.pop(old, None)
        ended = self._ended_calls.pop(old, None)
        asked = handle.asked if handle is not None else ended.asked if ended is not None else old
        new, _ = self.call_ids.take(asked, self.calls, self._in_use)
        if handle is not None:
            work = handle.session.rename(new)
            self.calls[new] = handle
        else:
            self.call_ids.ended(new)
            work = []
            if ended is not None:
                session = ended.session()  # alive while its handle is held (replay prints the id the call ran as)
                work = session.rename(new) if session is not None else rename_taps(ended.taps, new)
                self._ended_calls[new] = ended
        for task in work:  # a recording's files being renamed: shutdown waits for them
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.link.rename_call(old, new)
        state = "after this agent restarted: the console already has a call under that id"
        if handle is not None:
            self._tell_reused(asked, new, state, handle.session.notice)
        else:
            self._tell_reused(asked, new, state, lambda code, message: self.notice(code, message, call_id=new))

    def _call_done(self, handle: CallHandle, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        call_id = handle.call_id  # the id it ended under (it may have been renamed)
        self.calls.pop(call_id, None)
        self.call_ids.ended(call_id)
        # What renaming it needs if the console refuses its id later: not the session (its recognizers), only a weak reference.
        taps = [tap for tap in handle.session.taps if hasattr(tap, "rename")]
        self._ended_calls[call_id] = _EndedCall(handle.asked, taps, weakref.ref(handle.session))
        while len(self._ended_calls) > ENDED_CALLS_RENAMABLE:
            del self._ended_calls[next(iter(self._ended_calls))]

    def notice(self, code: str, message: str, *, call_id: str | None = None) -> None:
        """Publish an agent-level notice (not tied to a running call unless ``call_id``)."""
        self.link.publish(AgentNotice(seq=0, event_id=f"notice:{uuid.uuid4().hex}", code=code, message=message, call_id=call_id))

    async def _on_authorization(self, message: EndCallAuthorized) -> None:
        if message.authorization_id in self._authorizations_seen:
            return  # the console resends pending authorizations after a reconnect
        self._authorizations_seen.add(message.authorization_id)
        handle = self.calls.get(message.call_id)
        if handle is None:
            log.info("end-call authorization for call %s, which is not running here", message.call_id)
            return
        await handle.session.authorize_end(message)
        self._end_by_webhook(handle.session, message)

    def _end_by_webhook(self, session: CallSession, message: EndCallAuthorized) -> None:
        """Send the call's end-call webhook if it takes one; tell the console when a
        call the agent cannot hang up has no webhook to end it either."""
        has_control = session.control is not None
        webhook = self.end_call_webhook
        if webhook is not None and webhook.settings.applies_to(session.info.source_kind, has_control=has_control):
            webhook.request(session.info, message, call_time_s=session.audio_end)
        elif not has_control:
            why = ("no [end_call_webhook] url is configured" if webhook is None
                   else f"[end_call_webhook] sources leaves out {session.info.source_kind} calls")
            log.info("call %s: end authorized, and this agent cannot end it: %s", session.info.call_id, why)
            self.link.publish(EndCallWebhookOutcome(
                seq=0, event_id=f"webhook:{uuid.uuid4().hex}:1", call_id=session.info.call_id,
                authorization_id=message.authorization_id, outcome="not_configured", attempt=0, max_attempts=0,
                error=f"{why}: the partner ends the call"))

    async def wait_calls(self) -> None:
        """Wait until every running call has ended."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # ------------------------------------------------------------------ shutdown

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop sources, flush recognizers, finish recordings, close the link, in that order."""
        if self._shut_down:
            return
        self._shut_down = True
        for handle in list(self.calls.values()):
            handle.stop("shutdown")
        await self.wait_calls()
        if self.end_call_webhook is not None:
            await self.end_call_webhook.close(self.settings.shutdown_grace_s if grace is None else grace)
        await self.link.close(self.settings.shutdown_grace_s if grace is None else grace)
        executors = [self._recognizer_executor if self._owns_executor else None, self._idle_executor, self.detect_executor]
        for executor in filter(None, executors):  # joining their threads off the event loop
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
