"""`GenerationRunner`: runs each generation as a background task that this instance owns.

A generation is two tasks. The *pump* reads the provider's stream into its inbox (pump_inbox.py)
and nothing else, so closing it closes the upstream request. The *generation* task
drains the inbox, coalesces text, and appends batches to the session log through its
`SessionWriter`. No client connection is involved: a subscriber that goes away never
stops a generation; only `cancel` (or shutdown) does, and text already received is
written before the `cancelled` event, which carries the usage reported so far.

The runner counts a client's output tokens for its `tokens_per_minute` quota as usage
arrives (an increase of the totals so far; usage comes once or twice a generation, so
this costs no round trip per token), and its writer gives back the session's quota
slot with the terminal event.

A session whose log vanishes from the store (data loss: `SessionNotFound` on an append)
cannot be ended, there is nothing left to append to: its generation stops (the upstream
request is closed) with one warning; its readers end with `session_lost` on their own
(`relay.subscribers.follow`).

Only a provider's own failures (`UpstreamError`) end a session as upstream errors.
Anything else raised while generating is a bug in relay (or a provider breaking its
contract): the session ends with `internal_error`, not retryable, and the traceback is
logged once, here; the client's message says nothing internal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator

import msgspec

from relay import log_context, metrics
from relay.clients import ANONYMOUS, Client
from relay.coalescer import Flush, TextCoalescer
from relay.config import GenerationSettings, StoreSettings
from relay.errors import (
    AppendConflict,
    EventLimitReached,
    SessionEnded,
    SessionNotFound,
    StoreError,
    UpstreamError,
)
from relay.events import (
    STATUS_AFTER_TERMINAL,
    CancelledData,
    DoneData,
    ErrorData,
    Event,
    EventData,
    EventType,
    RetryingData,
    StatusData,
    TakenOverUsage,
    TextData,
    ToolCallData,
    Usage,
)
from relay.providers.base import (
    Connecting,
    Finish,
    ProviderItem,
    Queued,
    ReasoningDelta,
    StatusReport,
    TextDelta,
    ToolCall,
    UsageReport,
)
from relay.providers.router import Route
from relay.pump_inbox import PumpInbox
from relay.session import SessionRecord, hash_token, new_session_id, new_token
from relay.store import Store
from relay.tasks import cancel_and_wait
from relay.vocabulary import (
    FINISH_REASONS,
    READ_TOKEN_PREFIX,
    GenerationRequest,
    prompt_chars,
    session_tag,
)
from relay.writer import EVENT_LIMIT_ERROR, SessionWriter, numbered

log = logging.getLogger(__name__)

Pending = list[tuple[EventType, EventData]]

# How long cancelled generations get to write their last events before they are stopped.
CANCEL_GRACE_S = 5.0
# The loop turns a new generation's upstream request takes to reach its socket: the
# pump's first step (the provider encodes the body and hands it to aiohttp, or says
# `queued`), then the task in which aiohttp writes it. The session is stored after them,
# so the upstream works on the request while this instance stores the session and gets
# its answer to the client ready, rather than after.
UPSTREAM_REQUEST_TURNS = 2

# A bug in relay (or a provider breaking its contract) ended the session. The message
# says nothing internal: the traceback is in the server's log.
INTERNAL_ERROR = ErrorData("internal_error", "relay failed while generating", retryable=False)

QUEUED = StatusData("queued", "waiting for a connection to the model")
CONNECTING = StatusData("connecting", "calling the model")
GENERATING = StatusData("generating", "the model is answering")


# What the pump puts in the inbox besides provider items.
class StreamEnded(msgspec.Struct):
    pass


class StreamFailed(msgspec.Struct):
    error: ErrorData


class CancelRequested(msgspec.Struct):
    reason: str


InboxItem = ProviderItem | StreamEnded | StreamFailed | CancelRequested


def is_output(item: InboxItem) -> bool:
    """What the pump hands over after its statuses: the first of these is stored before
    it decodes on (`Generation.first_output_stored`)."""
    return not isinstance(item, StatusReport)


class CreatedSession(msgspec.Struct):
    record: SessionRecord
    token: str  # the read-only token, only ever shown to the creator


class ResumePoint(msgspec.Struct):
    """Where a generation taken over from a lost instance (relay/takeover.py) picks its
    session's log up: after `last_event_id`, with the `seam` statuses first. Its usage
    adds up to `usage_before` (what the earlier calls reported) and says `takeovers`;
    its tool calls are numbered on after the `tool_calls_before` already stored."""

    last_event_id: int
    seam: list[StatusData]
    usage_before: Usage
    tool_calls_before: int
    takeovers: int


class Generation:
    """One generation running on this instance, for `client`."""

    def __init__(
        self,
        session_id: str,
        client: Client = ANONYMOUS,
        route: Route | None = None,
        request: GenerationRequest | None = None,
    ) -> None:
        self.session_id = session_id
        self.client = client
        self.upstream = route.upstream if route is not None else ""
        self.model_label = route.label if route is not None else metrics.UNROUTED
        self.request = request  # its prompt estimates the input tokens an upstream omits
        self.started_at = time.monotonic()
        self.first_token_at: float | None = None
        self.progress = GenerationProgress()
        # Interrupted by cancel and by the end of the upstream's stream: that wakes the
        # generation task while it holds text until its flush (the text goes out with
        # the end, at once).
        self.inbox: PumpInbox[InboxItem] = PumpInbox()
        # Set once the generation task has stored what the first output brought (not a
        # status before it: that append comes while the upstream is still silent). The pump
        # waits for it after handing over its first output, so that the rest of the same
        # upstream read (a fast model sends many chunks at once) is decoded after the
        # first token is on its way to the client, not before.
        self.first_output_stored = asyncio.Event()
        self.pump: asyncio.Task[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancel_requested = False
        self.resume: ResumePoint | None = None  # set when taken over from a lost instance
        self.counted = False  # as a session started here: its end is counted too
        self.finished = False  # its task has ended
        self.abandoned = False  # its session could not be created: it is nobody's
        # The events its session was created with, and the inbox items taken to choose them.
        self.opened = 0
        self.early: list[InboxItem] = []

    def resume_at(self, resume: ResumePoint) -> None:
        """Continue a session's log from `resume` (a takeover), instead of starting it."""
        self.resume = resume
        self.progress.earlier = resume
        self.progress.usage = self.progress.combined(Usage())
        self.progress.tokens_counted = resume.usage_before.output_tokens

    def cancel(self, reason: str) -> None:
        """Stop the upstream now; the generation task then writes `cancelled`."""
        if self.cancel_requested:
            return
        self.cancel_requested = True
        self.inbox.put(CancelRequested(reason))
        self.inbox.interrupt()
        if self.pump is not None:
            self.pump.cancel()

    async def stop_upstream(self) -> None:
        """Close the upstream request, if still open, and wait until it is. The task is
        let go: a cancelled one keeps its CancelledError, whose traceback holds the
        pump's frame and so this generation, a cycle only a full collection frees."""
        pump, self.pump = self.pump, None
        if pump is not None:
            await cancel_and_wait([pump])


class GenerationProgress:
    """What a generation has seen so far that its `done` event reports."""

    def __init__(self) -> None:
        self.finish_reason = "stop"
        self.usage: Usage | None = None
        self.state = ""  # of the last status written
        self.generating = False  # the state is `generating`: checked for every delta
        self.tokens_counted = 0  # output tokens already counted for the client's quota
        self.deltas = 0  # text and reasoning deltas streamed: the estimate without usage
        self.earlier: ResumePoint | None = None  # the calls before a takeover, if any

    def combined(self, usage: Usage) -> Usage:
        """This call's usage, with the earlier calls' added when it was taken over."""
        earlier = self.earlier
        if earlier is None:
            return usage
        before = earlier.usage_before
        return TakenOverUsage(
            before.input_tokens + usage.input_tokens,
            before.output_tokens + usage.output_tokens,
            takeovers=earlier.takeovers,
        )

    def tool_index(self, index: int) -> int:
        """A tool call's index in the session: after those stored before a takeover."""
        return index + (self.earlier.tool_calls_before if self.earlier is not None else 0)

    def tokens_to_count(self) -> int:
        """The output tokens reported since the last count; counted from now on."""
        total = self.usage.output_tokens if self.usage is not None else 0
        new = total - self.tokens_counted
        if new <= 0:
            return 0
        self.tokens_counted = total
        return new


class GenerationRunner:
    def __init__(
        self,
        store: Store,
        settings: GenerationSettings,
        store_settings: StoreSettings,
        instance_id: str,
    ) -> None:
        self._store = store
        self._settings = settings
        self._max_events = store_settings.max_events_per_session
        self.instance_id = instance_id
        self._generations: dict[str, Generation] = {}

    @property
    def running(self) -> int:
        return len(self._generations)

    @property
    def running_ids(self) -> list[str]:
        """The sessions generating on this instance."""
        return list(self._generations)

    async def create(
        self,
        model: str,
        route: Route,
        request: GenerationRequest,
        *,
        client: Client = ANONYMOUS,
        session_id: str | None = None,
        takeover: bytes | None = None,
    ) -> CreatedSession:
        """Create a session of `client` (with `session_id`, when its quota slot was taken
        under it) and start its generation in the background; `takeover` is what the
        store keeps for another instance to take it over (relay/takeover.py)."""
        now = time.time()
        token = new_token(READ_TOKEN_PREFIX)
        record = SessionRecord(
            id=session_id or new_session_id(),
            model=model,
            created_at=now,
            updated_at=now,
            token_sha256=hash_token(token),
            owner=self.instance_id,
            client=client.name,
        )
        # Before the generation's tasks are created: they copy the request's context.
        log_context.note(session_id=record.id, client=client.name, upstream=route.upstream)
        # The upstream request goes out before the session is stored, and the generation
        # starts before the store has answered: the first token does not wait for the
        # store's round trip (which also writes the first status), its append goes out
        # right behind the creation (the store orders it after). A creation that fails
        # ends the generation uncounted.
        generation = self._call_upstream(record.id, route, request, client)
        try:
            for _ in range(UPSTREAM_REQUEST_TURNS):
                await asyncio.sleep(0)
            first = _opened(generation)
            self._start(generation)
            record = await self._store.create(record, takeover, first)
        except BaseException:
            await self._abandon(generation)
            raise
        if not generation.finished:  # its end is counted once its start is
            _count_start(generation)
        tag = session_tag(record.id)
        log.info("session %s created model=%s", tag, model)  # its upstream: a field of the line
        return CreatedSession(record, token)

    def take_over(
        self,
        record: SessionRecord,
        route: Route,
        request: GenerationRequest,
        resume: ResumePoint,
        *,
        client: Client = ANONYMOUS,
    ) -> None:
        """Run here the generation of a session whose instance was lost, its lease
        claimed by this one (relay/takeover.py): the log goes on from `resume`."""
        generation = self._call_upstream(record.id, route, request, client)
        generation.resume_at(resume)
        self._start(generation, counted=True)
        log.info(
            "session %s taken over from %s after event %d (takeover %d)",
            session_tag(record.id), record.owner or "?", resume.last_event_id, resume.takeovers,
        )  # fmt: skip

    def cancel(self, session_id: str, reason: str) -> bool:
        """Cancel a generation running here; False when it does not run on this instance."""
        generation = self._generations.get(session_id)
        if generation is None:
            return False
        generation.cancel(reason)
        return True

    async def drain(self, timeout: float) -> None:
        """Let running generations finish for up to `timeout`; new ones are the caller's
        to refuse. Those still running are then cancelled (reason `shutdown`)."""
        tasks = [g.task for g in self._generations.values() if g.task is not None]
        if tasks and timeout > 0:
            await asyncio.wait(tasks, timeout=timeout)
        await self.shutdown(timeout=CANCEL_GRACE_S)

    async def shutdown(self, timeout: float) -> None:
        """Cancel every generation (reason `shutdown`) and wait for their last events."""
        generations = list(self._generations.values())
        for generation in generations:
            generation.cancel("shutdown")
        tasks = [g.task for g in generations if g.task is not None]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        await cancel_and_wait(late)

    def _call_upstream(
        self, session_id: str, route: Route, request: GenerationRequest, client: Client
    ) -> Generation:
        """A generation whose upstream request is under way; its own task starts later."""
        generation = Generation(session_id, client, route, request)
        generation.pump = asyncio.create_task(
            self._pump(generation, route.provider.stream(request)),
            name=f"relay-pump-{session_tag(session_id)}",
        )
        return generation

    def _start(self, generation: Generation, *, counted: bool = False) -> None:
        """Run its task; `counted`: as a session started here (one taken over), counted
        when the task runs, else once its creation is stored (`create`)."""
        session_id = generation.session_id
        generation.task = asyncio.create_task(
            self._run(generation, counted=counted),
            name=f"relay-generation-{session_tag(session_id)}",
        )
        self._generations[session_id] = generation
        generation.task.add_done_callback(lambda _: self._generations.pop(session_id, None))

    async def _abandon(self, generation: Generation) -> None:
        """A generation whose session could not be created: stopped, never counted."""
        generation.abandoned = True
        tasks = [task for task in (generation.task, generation.pump) if task is not None]
        await cancel_and_wait(tasks)

    @staticmethod
    async def _pump(generation: Generation, stream: AsyncGenerator[ProviderItem, None]) -> None:
        """Only a provider's own failures (`UpstreamError`) are upstream errors; anything
        else raised under the stream is a bug, which must not pass for an outage."""
        inbox = generation.inbox
        outcome = "cancelled"  # closed from here: a cancel, an idle upstream, the end
        before_output = True
        try:
            async with contextlib.aclosing(stream):
                async for item in stream:
                    inbox.put(item)
                    if before_output and is_output(item):
                        before_output = False
                        await generation.first_output_stored.wait()
            inbox.put(StreamEnded())
            outcome = "ok"
        except UpstreamError as exc:
            inbox.put(StreamFailed(upstream_failure(exc)))
            outcome = exc.code
        except Exception:
            tag = session_tag(generation.session_id)
            log.exception("session %s: the provider stream raised", tag)
            inbox.put(StreamFailed(INTERNAL_ERROR))
            outcome = INTERNAL_ERROR.code
        finally:
            # The generation may be holding text for its flush: the end is not held.
            inbox.interrupt()
            metrics.upstream_request(generation.upstream, outcome)

    async def _run(self, generation: Generation, *, counted: bool) -> None:
        started = time.monotonic()
        # A session taken over is counted here, with its end in `finally`: a task
        # cancelled before it ran counts neither. A new one is counted by `create`.
        if counted:
            _count_start(generation)
        metrics.TIMELINE.start(generation.session_id)
        tag = session_tag(generation.session_id)
        resume = generation.resume
        writer = SessionWriter(
            self._store,
            generation.session_id,
            last_event_id=resume.last_event_id if resume is not None else generation.opened,
            retry_s=self._settings.store_retry_s,
            max_events=self._max_events,
            slot_of=_slot_holder(generation.client),
        )
        try:
            await self._consume(generation, writer)
        except EventLimitReached:  # the writer fits batches under the cap; this is a backstop
            await writer.append([(EventType.ERROR, EVENT_LIMIT_ERROR)])
        except SessionEnded:
            log.info("session %s was ended by another writer", tag)
        except AppendConflict:  # another instance took it over (this one was frozen)
            log.warning("session %s: another instance writes its log now; generation stopped", tag)
        except SessionNotFound:  # store data loss, not relay's bug: no traceback
            log.warning("session %s vanished from the store (data loss); generation stopped", tag)
        except StoreError:
            log.exception("session %s: the store failed; generation abandoned", tag)
        except Exception:
            log.exception("session %s: generation failed", tag)
            await self._end_after_bug(writer)
        finally:
            generation.first_output_stored.set()  # a pump still waiting for it goes on
            generation.finished = True
            if generation.counted:  # before any await: a second cancel cannot skip it
                _count_end(generation, writer)
            await generation.stop_upstream()
            if not generation.abandoned:
                self._log_end(generation, writer, time.monotonic() - started)

    async def _consume(self, generation: Generation, writer: SessionWriter) -> None:
        loop = asyncio.get_running_loop()
        coalescer = TextCoalescer(
            self._settings.flush_interval_ms / 1000, self._settings.flush_max_chars
        )
        progress = generation.progress
        last_item_at = loop.time()
        # A session created here has its first status (`_opened`); one taken over gets
        # it now, on its own, as soon as can be, told by what the provider said so far.
        items: list[InboxItem] = generation.early + generation.inbox.take_all()
        if generation.resume is not None:
            await writer.append(_seam(generation.resume) + _opening(items, progress))
        pending: Pending = []
        while True:
            now = loop.time()
            if items:
                last_item_at = now
                pending += self._apply_all(items, coalescer, progress, now)
                if progress.generating and generation.first_token_at is None:
                    _first_token(generation)
            elif now - last_item_at >= self._settings.idle_timeout_s:
                if generation.pump is not None:
                    generation.pump.cancel()  # stop the silent upstream before ending the log
                pending += _flushes(coalescer.take()) + [(EventType.ERROR, self._idle_error())]
            else:
                pending += _flushes(coalescer.due(now))
            await self._count_tokens(generation, progress)
            await writer.append(pending)
            if not generation.first_output_stored.is_set() and any(map(is_output, items)):
                # After the append that woke the subscribers: they write the first
                # token before the pump decodes the rest of its upstream read.
                generation.first_output_stored.set()
            if pending:  # its time, for the subscribers here
                first = generation.first_token_at
                metrics.TIMELINE.appended(generation.session_id, writer.last_event_id, first)
            if writer.ended:
                return
            timeout = _time_left(
                coalescer.deadline, last_item_at + self._settings.idle_timeout_s, loop.time()
            )
            items = await _next_items(generation, timeout, holding=coalescer.deadline is not None)
            pending = []

    async def _count_tokens(self, generation: Generation, progress: GenerationProgress) -> None:
        """Count new output tokens against the client's `tokens_per_minute`, before the
        usage that reports them is written (so a client that saw it finds it counted);
        best effort (a count the store missed must not end the generation)."""
        if generation.client.quota.tokens_per_minute is None:
            return
        tokens = progress.tokens_to_count()
        if not tokens:
            return
        try:
            await self._store.count_tokens(generation.client.name, tokens, time.time())
        except StoreError as exc:
            tag = session_tag(generation.session_id)
            log.warning("session %s: %d output tokens were not counted: %s", tag, tokens, exc)

    def _apply_all(
        self,
        items: list[InboxItem],
        coalescer: TextCoalescer,
        progress: GenerationProgress,
        now: float,
    ) -> Pending:
        pending: Pending = []
        for item in items:
            pending += _apply(item, coalescer, progress, now)
            if pending and pending[-1][0] in (EventType.DONE, EventType.ERROR, EventType.CANCELLED):
                return pending
        return pending + _flushes(coalescer.due(now))

    @staticmethod
    async def _end_after_bug(writer: SessionWriter) -> None:
        """Best effort: a bug in relay must not leave a session running forever."""
        if writer.ended:
            return
        with contextlib.suppress(StoreError):
            await writer.append([(EventType.ERROR, INTERNAL_ERROR)])

    def _idle_error(self) -> ErrorData:
        seconds = self._settings.idle_timeout_s
        return ErrorData("upstream_timeout", f"the upstream sent nothing for {seconds:g} s", True)

    def _log_end(self, generation: Generation, writer: SessionWriter, seconds: float) -> None:
        ending = writer.last_type.value if writer.ended and writer.last_type else "abandoned"
        log.info(
            "session %s ended with %s events=%d seconds=%.3f",
            session_tag(generation.session_id),
            ending,
            writer.last_event_id,
            seconds,
        )


def _apply(
    item: InboxItem, coalescer: TextCoalescer, progress: GenerationProgress, now: float
) -> Pending:
    """The events one inbox item adds, in log order."""
    if isinstance(item, TextDelta | ReasoningDelta):
        progress.deltas += 1
        kind = EventType.DELTA if isinstance(item, TextDelta) else EventType.REASONING
        flushes = coalescer.add(kind, item.text, now)
        if progress.generating:  # every token after the first: most are only held
            return _flushes(flushes) if flushes else []
        return _started(progress) + _flushes(flushes)
    flushed = _flushes(coalescer.take())
    if isinstance(item, ToolCall):
        call = ToolCallData(progress.tool_index(item.index), item.id, item.name, item.arguments)
        return _started(progress) + flushed + [(EventType.TOOL_CALL, call)]
    if isinstance(item, UsageReport):
        progress.usage = progress.combined(Usage(item.input_tokens, item.output_tokens))
        return flushed + [(EventType.USAGE, progress.usage)]
    if isinstance(item, Finish):
        progress.finish_reason = item.reason
        return flushed
    if isinstance(item, StatusReport):  # only ever before the first output; not after it
        return flushed if progress.generating else _status_change(progress, _status_of(item))
    return flushed + [_terminal(item, progress)]


def _seam(resume: ResumePoint | None) -> Pending:
    """The statuses that mark where a taken-over generation joins its log."""
    return [(EventType.STATUS, status) for status in resume.seam] if resume is not None else []


def _opening(items: list[InboxItem], progress: GenerationProgress) -> Pending:
    """The first status, written while the upstream thinks: `connecting`, unless the
    provider has already said (first among `items`) that its request is `queued`."""
    if items and isinstance(items[0], Queued):
        return []
    return _status_change(progress, CONNECTING)


def _opened(generation: Generation) -> list[Event]:
    """The first events of a new session, stored with it: its first status, told by
    what the provider said in its first step (taken from the inbox, applied later)."""
    generation.early = generation.inbox.take_all()
    events = numbered(1, _opening(generation.early, generation.progress))
    generation.opened = len(events)
    return events


def _status_of(report: StatusReport) -> StatusData:
    if isinstance(report, Queued):
        return QUEUED
    if isinstance(report, Connecting):
        return CONNECTING
    delay_s = round(report.delay_s, 3)
    message = f"the model failed ({report.code}); retry {report.attempt} in {delay_s:.2g} s"
    return RetryingData("retrying", message, attempt=report.attempt, delay_s=delay_s)


def _status_change(progress: GenerationProgress, status: StatusData) -> Pending:
    """`status`, unless it is the state already written; every retry is news."""
    if status.state == progress.state and not isinstance(status, RetryingData):
        return []
    progress.state = status.state
    return [(EventType.STATUS, status)]


def _terminal(
    item: StreamEnded | StreamFailed | CancelRequested, progress: GenerationProgress
) -> tuple[EventType, EventData]:
    if isinstance(item, StreamEnded):
        return EventType.DONE, DoneData(progress.finish_reason, progress.usage)
    if isinstance(item, StreamFailed):
        return EventType.ERROR, item.error
    return EventType.CANCELLED, CancelledData(item.reason, progress.usage)


def _first_token(generation: Generation) -> None:
    """The upstream's first output has come: the time to it, from the request."""
    generation.first_token_at = time.monotonic()
    ttft = generation.first_token_at - generation.started_at
    metrics.first_token(generation.upstream, generation.model_label, ttft)


def _count_start(generation: Generation) -> None:
    generation.counted = True
    metrics.session_started(generation.upstream, generation.model_label, generation.client.name)


def _count_end(generation: Generation, writer: SessionWriter) -> None:
    """How the generation ended, its tokens and its times, once."""
    status, reason = ending(writer.terminal)
    metrics.session_finished(status, reason)
    counted = token_count(generation)
    metrics.tokens(generation.upstream, generation.model_label, generation.client.name, counted)
    now = time.monotonic()
    first = generation.first_token_at
    generating_s = now - first if first is not None else None
    metrics.generation_ended(now - generation.started_at, counted.output, generating_s)


def ending(terminal: Event | None) -> tuple[str, str]:
    """(status, reason) of a session's end: `completed` and its finish reason, `failed`
    and the error's code, `cancelled` and why; `abandoned` when this instance could not
    write its end (the store failed, the log vanished, another writer ended it)."""
    if terminal is None:
        return "abandoned", "not_ended"
    data = terminal.decoded_data()
    status = STATUS_AFTER_TERMINAL[terminal.type].value
    if terminal.type is EventType.DONE:
        reason = data.get("finish_reason")
        return status, reason if reason in FINISH_REASONS else "other"
    return status, str(data.get("code" if terminal.type is EventType.ERROR else "reason"))


def token_count(generation: Generation) -> metrics.TokenCount:
    usage = generation.progress.usage
    if usage is not None:
        return metrics.TokenCount(usage.input_tokens, usage.output_tokens, "usage")
    request = generation.request
    chars = prompt_chars(request) if request is not None else 0
    return metrics.TokenCount.estimated(chars, generation.progress.deltas)


def _slot_holder(client: Client) -> str | None:
    """The client whose quota slot the session holds, if its concurrency is limited."""
    return client.name if client.quota.max_concurrent_sessions is not None else None


def upstream_failure(error: UpstreamError) -> ErrorData:
    return ErrorData(error.code, error.message, error.retryable, error.status)


def _started(progress: GenerationProgress) -> Pending:
    if progress.generating:
        return []
    progress.generating = True
    return _status_change(progress, GENERATING)


def _flushes(flushes: list[Flush]) -> Pending:
    return [(kind, TextData(text)) for kind, text in flushes]


def _time_left(flush_deadline: float | None, idle_deadline: float, now: float) -> float:
    deadline = idle_deadline if flush_deadline is None else min(flush_deadline, idle_deadline)
    return max(0.0, deadline - now)


async def _next_items(generation: Generation, timeout: float, *, holding: bool) -> list[InboxItem]:
    """Everything in the inbox, after waiting up to `timeout`.

    While the coalescer holds text (`holding`), the wait is the whole `timeout` (the
    flush deadline) unless a cancel or the stream's end interrupts it: items that arrive
    meanwhile only join the held text, so waking up for each of them would cost a task
    switch per token for nothing. Otherwise the wait ends with the first item.
    """
    inbox = generation.inbox
    if holding:
        await inbox.wait_for_interrupt(timeout)
    else:
        await inbox.wait_for_item(timeout)
    return inbox.take_all()
