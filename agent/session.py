"""One call, from its audio (or timed transcript) to the events the console sees.

A :class:`CallSession` wires a source to the transcriber, the transcriber to
the call's detector screen (``detection.CallScreen``: repetition, shouting,
the escalation ladder), and everything to ``publish`` (the console link):

    source ──► taps (recorder, ...) ──► bounded queue ──► transcriber ──► utterances ──► screen ──► findings, level
                                         (drop oldest,      (executor)        │                         │
                                          counted)                            ▼                         ▼
                                                                        partial / utterance   finding / level events

Events leave in audio-time order: ``call_started``, then partials, utterances,
findings and level changes as the audio reaches them, then ``call_ended``.

Alerts while the customer is still speaking: each customer partial is also
screened (``CallScreen.hear_partial``; partner partials never are), and a
stable finding in it is published at once, with the partial's text and span,
``start`` = the utterance's start and ``end`` = the audio time the partial was
known at; its final utterance does not raise it again. ``[detection]
screen_partials = false`` keeps to finals (the screen then finds nothing in
partials).

Isolation: a call's faults stay in the call. A transcriber or detector error
becomes an :class:`~kernel.protocol.AgentNotice` and the call goes on being
monitored (loudness, the other speaker, the recording) where possible; only a
source that fails ends the call (reason ``error``). The queue between source
and transcriber is bounded: a slow transcriber makes the call drop its oldest
audio (reported as ``audio_dropped``), it never slows the source.

Seam for recording and other per-chunk observers: ``taps`` (see
:class:`CallTap`) see every chunk in source order before it is queued.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import uuid
import logging
from collections.abc import AsyncIterable, Callable, Iterable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from kernel.protocol import (
    AgentNotice,
    CallEnded,
    CallStarted,
    EndCallAuthorized,
    FindingRaised,
    LevelChanged,
    PartialTranscript,
    UtteranceFinal,
)
from agent.call import CallControl, CallInfo, CallTap
from audio.frames import AudioChunk
from kernel.errors import CallshieldError
from kernel.queues import DropOldestQueue
from models.transcript import Partial, Utterance

log = logging.getLogger("callshield.agent.session")

#: Consecutive transcriber errors after which a call stops transcribing (it is
#: still recorded and its loudness still screened).
MAX_TRANSCRIBER_ERRORS = 3


class SessionError(CallshieldError):
    """A call could not be run (its source failed)."""

    code = "call_error"


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def rename_taps(taps: Iterable[CallTap], call_id: str) -> list[asyncio.Task]:
    """Tell the taps that can be renamed (``rename(call_id)``, e.g. the
    recorder) that their call now runs as ``call_id``; returns their work
    still running."""
    work = []
    for tap in taps:
        rename = getattr(tap, "rename", None)
        if rename is not None and (task := rename(call_id)) is not None:
            work.append(task)
    return work


class CallSession:
    """One call: run it with :meth:`run_audio` or :meth:`run_transcript`.

    ``publish``: where events go (``ConsoleLink.publish``). ``screen``: this
    call's ``detection.CallScreen``. ``transcriber``: this call's
    ``models.transcriber.CallTranscriber`` (audio calls only).
    ``loudness``: speaker -> ``audio.loudness.LoudnessMeter`` (optional).
    """

    def __init__(
        self,
        info: CallInfo,
        *,
        publish: Callable[[Any], Any],
        screen: Any,
        transcriber: Any = None,
        loudness: dict[str, Any] | None = None,
        taps: Iterable[CallTap] = (),
        control: CallControl | None = None,
        hangup_on_authorization: bool = False,
        closing_message: Path | None = None,
        audio_queue_chunks: int = 250,
        lossless: bool = False,
        detect_executor: Executor | None = None,
    ) -> None:
        self.info = info
        self.detect_executor = detect_executor
        self._publish = publish
        self.screen = screen
        self.transcriber = transcriber
        self.loudness = dict(loudness or {})
        self.taps = list(taps)
        for tap in self.taps:  # taps that want to know the call's outcome (the recorder: were there findings?)
            attach = getattr(tap, "attach", None)
            if attach is not None:
                attach(self)
        self.control = control
        self.hangup_on_authorization = hangup_on_authorization
        self.authorizations: list[EndCallAuthorized] = []  # every end-call authorization received, in order
        self.closing_message = closing_message
        self.queue: DropOldestQueue[AudioChunk] = DropOldestQueue(audio_queue_chunks)
        self.lossless = lossless
        self.end_reason: str | None = None
        self.level = "none"
        self.findings = 0
        self.audio_end = 0.0  # seconds of audio time reached so far
        self._events = 0
        self._run = uuid.uuid4().hex[:8]  # this session's part of its event ids
        self._dropped_reported = 0
        self._transcriber_errors = 0
        self._reader: asyncio.Task | None = None
        self._stopping = False
        self._announced = False

    # ------------------------------------------------------------------ events

    def _event_id(self) -> str:
        """``CALL_ID:RUN:N``: N counts the call's events; RUN is random per
        session, so a call a later agent process starts under the same id (a
        PBX reusing a UUID after an agent restart) never repeats an event id
        of the earlier call (the console would take it for a resend)."""
        self._events += 1
        return f"{self.info.call_id}:{self._run}:{self._events}"

    def rename(self, call_id: str) -> list[asyncio.Task]:
        """Run on as ``call_id`` (the console refused the call's id as taken,
        see ``Agent``): later events, partials and taps carry the new id; the
        link rewrites the events already published (:meth:`~agent.link.ConsoleLink.rename_call`).
        Returns the taps' renaming work still running (a recording's files), for the agent to wait for."""
        old = self.info.call_id
        self.info = dataclasses.replace(self.info, call_id=call_id)
        log.info("call %s now runs as %s", old, call_id)
        return rename_taps(self.taps, call_id)

    def emit(self, cls: type, **fields: Any) -> Any:
        """Publish a durable event of this call (the link assigns ``seq``)."""
        if cls is AgentNotice:
            fields.setdefault("call_id", self.info.call_id)
        else:
            fields["call_id"] = self.info.call_id
        return self._publish(cls(seq=0, event_id=self._event_id(), **fields))

    def notice(self, code: str, message: str, *, dropped: int = 0) -> None:
        log.info("call %s: %s (%s)", self.info.call_id, message, code)
        self.emit(AgentNotice, code=code, message=message, dropped=dropped)

    # ------------------------------------------------------------------ control

    def stop(self, reason: str = "shutdown") -> None:
        """Stop reading the source (agent shutdown, hang-up); what was read is still
        transcribed and screened, then the call ends with ``reason``."""
        self._stopping = True
        if self.end_reason is None:
            self.end_reason = reason
        if self._reader is not None:
            self._reader.cancel()

    async def authorize_end(self, message: EndCallAuthorized) -> None:
        """A supervisor authorized ending this call: hang up through its control if
        configured to (a call without one is the agent's to end by webhook, see
        :class:`~agent.runtime.Agent`)."""
        self.authorizations.append(message)
        if self.control is None:
            log.info("call %s: end authorized by %s; the agent cannot hang this call up itself", self.info.call_id, message.by)
            return
        if not self.hangup_on_authorization:
            log.info("call %s: end authorized by %s; the partner decides (hangup_on_authorization off)", self.info.call_id, message.by)
            return
        try:
            await self.control.end_call(self.closing_message)
        except CallshieldError as exc:
            self.notice(exc.code, f"could not end the call: {exc.message}")
            return
        except Exception as exc:  # the PBX's fault, not the call's
            self.notice("hangup_failed", f"could not end the call: {exc!r}")
            return
        closing = " after the closing message" if self.closing_message else ""
        self.notice("call_hung_up", f"Call ended{closing}, as authorized by {message.by}.")
        self.stop("authorized_end")  # the line is down: stop reading it, finish what was heard

    # ------------------------------------------------------------------ running

    def announce(self) -> None:
        """Publish ``call_started`` (once); the agent does it as the call is
        created, so anything said about the call afterwards follows it."""
        if self._announced:
            return
        self._announced = True
        info = self.info
        self.emit(CallStarted, partner=info.partner, seat=info.seat, source=info.source_kind,
                  started_at=info.started_at, sample_rate=info.sample_rate)

    def _end(self, default_reason: str) -> None:
        self.emit(CallEnded, at=round(self.audio_end, 3), reason=self.end_reason or default_reason)
        # The finished reader goes: a failed source's exception (whose traceback
        # holds this session) would otherwise keep the ended call in memory
        # until the next full garbage collection.
        self._reader = None

    async def run_transcript(self, source: AsyncIterable[Partial | Utterance], *, duration: float | None = None) -> None:
        """Run a call whose words are already known (a timed transcript).
        ``duration``: the call's length in seconds of audio time, if known."""
        self.announce()
        self._reader = asyncio.get_running_loop().create_task(self._read_transcript(source, duration), name=f"call-transcript:{self.info.call_id}")
        try:
            await asyncio.wait({self._reader})
        finally:
            await self._stop_reader()
        self._end("error" if self._reader_failed() else "end_of_file")

    async def _read_transcript(self, source: AsyncIterable[Partial | Utterance], duration: float | None) -> None:
        try:
            async for event in source:
                released = getattr(source, "position", None)  # a TranscriptSource's release time (audio s)
                if released is not None:
                    self.audio_end = max(self.audio_end, released)
                await self._hear(event, released)
        except CallshieldError as exc:
            self.notice(exc.code, f"call transcript failed: {exc.message}")
            raise
        if duration is not None:
            self.audio_end = max(self.audio_end, duration)

    async def run_audio(self, source: AsyncIterable[AudioChunk]) -> None:
        """Run a call from its audio; returns when the source ends and every
        chunk read has been transcribed, screened and published."""
        self.announce()
        self._reader = asyncio.get_running_loop().create_task(self._read(source), name=f"call-source:{self.info.call_id}")
        try:
            await self._work()
        finally:
            await self._stop_reader()
            await self._close_taps()
        self._end("error" if self._reader_failed() else self._natural_end())

    def _natural_end(self) -> str:
        return "end_of_file" if self.info.source_kind in ("wav", "transcript") else "hangup"

    async def _stop_reader(self) -> None:
        if not self._reader.done():
            self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    def _reader_failed(self) -> bool:
        """The source raised (a stop is a cancellation, not a failure)."""
        return not self._reader.cancelled() and self._reader.exception() is not None

    async def _read(self, source: AsyncIterable[AudioChunk]) -> None:
        try:
            async for chunk in source:
                for tap in list(self.taps):
                    try:
                        tap.push(chunk)
                    except Exception as exc:  # a broken tap must not take the call down
                        self.taps.remove(tap)
                        code = getattr(exc, "code", "tap_failed")
                        self.notice(code, f"{type(tap).__name__} stopped: {exc}")
                if self.lossless:
                    await self.queue.put_wait(chunk)
                else:
                    self.queue.put(chunk)
        except CallshieldError as exc:
            self.notice(exc.code, f"call audio failed: {exc.message}")
            raise
        except Exception as exc:
            self.notice("source_failed", f"call audio failed: {exc!r}")
            raise
        finally:
            self.queue.close()

    async def _work(self) -> None:
        while (chunk := await self.queue.get()) is not None:
            self.audio_end = max(self.audio_end, chunk.end)
            self._screen_loudness(chunk)
            await self._transcribe(chunk)
            self._report_drops()
        if self.transcriber is not None and self._transcriber_errors < MAX_TRANSCRIBER_ERRORS:
            try:
                for event in await _maybe_await(self.transcriber.flush()):
                    await self._hear(event)
            except CallshieldError as exc:
                self.notice(exc.code, f"transcriber failed at the end of the call: {exc.message}")
        self._report_drops()

    async def _transcribe(self, chunk: AudioChunk) -> None:
        if self.transcriber is None or self._transcriber_errors >= MAX_TRANSCRIBER_ERRORS:
            return
        try:
            events = await _maybe_await(self.transcriber.push(chunk))
        except Exception as exc:
            self._transcriber_errors += 1
            code = getattr(exc, "code", "transcriber_failed")
            self.notice(code, f"transcriber failed: {getattr(exc, 'message', None) or exc!r}")
            if self._transcriber_errors >= MAX_TRANSCRIBER_ERRORS:
                self.notice("transcriber_stopped", "Transcription stopped for this call after repeated errors; the call is still monitored for shouting.")
            return
        self._transcriber_errors = 0
        for event in events:
            await self._hear(event, chunk.end)

    def _screen_loudness(self, chunk: AudioChunk) -> None:
        meter = self.loudness.get(chunk.speaker)
        if meter is None:
            return
        try:
            for window in meter.push(chunk):
                rate = window.sample_rate
                screening = self.screen.hear_loudness(window.speaker, window.start_sample / rate, window.end_sample / rate, window.dbfs)
                if screening is not None:
                    self._publish_screening(screening)
        except Exception as exc:
            self.loudness.pop(chunk.speaker, None)
            self.notice(getattr(exc, "code", "loudness_failed"), f"loudness screening stopped for the {chunk.speaker}: {exc}")

    def _report_drops(self) -> None:
        dropped = self.queue.dropped - self._dropped_reported
        if dropped:
            self._dropped_reported = self.queue.dropped
            self.notice("audio_dropped", f"{dropped} audio chunk(s) dropped: the transcriber fell behind", dropped=dropped)

    async def _hear(self, event: Partial | Utterance, at: float | None = None) -> None:
        """One transcriber result. ``at``: the audio time (s) the result was known
        at (the end of the audio fed, or a transcript's release time), for partials.
        A customer's final utterance is screened in ``detect_executor`` (the
        semantic stage takes milliseconds); the call waits for it, so its
        screen is never used by two threads at once."""
        if isinstance(event, Partial):
            if event.text:
                self._publish(PartialTranscript(self.info.call_id, event.speaker, round(event.start, 3), event.text))
                self._hear_partial(event, max(event.start, self.audio_end if at is None else at))
            return
        self.audio_end = max(self.audio_end, event.end)
        self.emit(UtteranceFinal, speaker=event.speaker, start=round(event.start, 3), end=round(event.end, 3),
                  text=event.text, words=tuple(w.to_dict() for w in event.words))
        try:
            if self.detect_executor is not None and event.speaker == "customer":
                screening = await asyncio.get_running_loop().run_in_executor(
                    self.detect_executor, self.screen.hear, event.speaker, event.text, event.start, event.end)
            else:
                screening = self.screen.hear(event.speaker, event.text, event.start, event.end)
        except Exception as exc:
            self.notice(getattr(exc, "code", "detector_failed"), f"detector failed on an utterance: {exc}")
            return
        self._publish_screening(screening)

    def _hear_partial(self, event: Partial, at: float) -> None:
        """Screen the customer's live hypothesis: stable findings are raised
        before the utterance ends (``FindingRaised`` carries the partial's text
        and span, ``start``..``end`` = the partial's start..``at``)."""
        hear_partial = getattr(self.screen, "hear_partial", None)
        if event.speaker != "customer" or hear_partial is None:
            return
        try:
            screening = hear_partial(event.speaker, event.text, event.start, at)
        except Exception as exc:
            self.notice(getattr(exc, "code", "detector_failed"), f"detector failed on a partial: {exc}")
            return
        self._publish_screening(screening)

    def _publish_screening(self, screening: Any) -> None:
        for finding in screening.findings:
            self.findings += 1
            self.emit(FindingRaised, category=finding.category, severity=finding.severity, score=round(float(finding.score), 3),
                      rule=finding.rule, evidence=finding.evidence, start=round(finding.start, 3), end=round(finding.end, 3),
                      text=finding.text, subtype=finding.subtype,
                      span=tuple(finding.span) if finding.span is not None else None, why=finding.why)
        change = screening.level_change
        if change is not None:
            self.level = change.level
            self.emit(LevelChanged, level=change.level, previous=change.previous, reason=change.reason,
                      at=round(change.at, 3), suggestion=change.suggestion or "", category=change.category)

    async def _close_taps(self) -> None:
        for tap in self.taps:
            try:
                await tap.close()
            except Exception as exc:
                self.notice(getattr(exc, "code", "tap_failed"), f"{type(tap).__name__} could not finish: {exc}")
