"""`Sessions`: the lifecycle of sessions — create, find, snapshot, cancel — for every
front door, wherever the generation runs.

Front doors call it and never touch the store or the runner themselves: a front door
may translate its own id (`resp_…`) and choose its own not-found error, but the lookup
and the 404 are here. So is who may see a session: `find` answers only the client that
created it (or, where a front door takes one, a caller with that session's read token),
and `create` holds a client to its models, its `max_tokens` cap and its quotas
(relay/quotas.py: a 429 with `Retry-After` naming the limit; admission is the store's,
so the quotas span every instance on it). Streaming a
session's log to clients (feeds, follow, SSE, subscriber tracking) is
`relay.services.Services`'s plumbing, not a lifecycle step.

Cancel works wherever the generation runs. Here: the runner stops it at once. On
another instance: the request is published on the store's cancel bus, whose listener
on the generating instance (`start`/`stop`, owned by the app) cancels it there. Either
way the caller waits up to `cancel_wait_s` for the terminal event; when a published
cancel brings none (the generator is gone), the log is ended from here, behind the
store's id fence so that exactly one terminal event is ever written.

A session of an external producer (`create_external`; its batches, keep-alives and
signals are `external`'s, relay/external.py) has no generation here: a cancel reaches its
producer as the signal `{"kind": "cancel"}`, and a session the producer has not ended
within `generation.producer_cancel_grace_s` is ended from here (`cancelled`, reason
`client`), behind the same id fence: a producer that ends it first keeps its own terminal
event. The grace is timed by the instance that was asked to cancel (a task `stop` ends);
should that instance stop first, the session's lease still ends it (`producer_lost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

import msgspec

from relay import log_context, metrics
from relay.clients import ANONYMOUS, CHALLENGE, Caller, Client
from relay.config import LimitsSettings, Settings
from relay.errors import ApiError, StoreError
from relay.events import STATUS_AFTER_TERMINAL, CancelledData, Event, EventType, SessionStatus
from relay.external import CANCEL_SIGNAL, CreatedExternal, ExternalProducers
from relay.off_loop import MANY_MESSAGES, off_loop
from relay.providers.router import ModelRouter
from relay.runner import CreatedSession, GenerationRunner
from relay.session import SessionRecord, Snapshot, new_session_id, token_matches
from relay.store import ChatStream, Store
from relay.subscribers import slices
from relay.takeover import takeover_ticket
from relay.tasks import cancel_and_wait
from relay.vocabulary import GenerationRequest, prompt_chars, session_tag
from relay.writer import end_from_outside

log = logging.getLogger(__name__)

ANONYMOUS_CALLER = Caller(ANONYMOUS)
INVALID_TOKEN = (
    "token is not a read token of this session (forged, another session's, or revoked: "
    "the session has expired)"
)

# How long a cancel waits for the generation to write its terminal event.
CANCEL_WAIT_S = 1.0
# How long the cancel listener waits for the store before it listens again.
RELISTEN_AFTER_S = 1.0


def session_not_found(session_id: str | None) -> ApiError:
    message = f"session {session_id!r} does not exist or has expired"
    return ApiError(404, "session_not_found", message)


def refuse_oversized(request: GenerationRequest, limits: LimitsSettings) -> None:
    """A 400 naming the setting when a request has more messages or prompt text than
    `[limits]` allows (`max_body_bytes` bounds the bytes; this bounds what they hold)."""
    if len(request.messages) > limits.max_messages:
        raise ApiError(
            400,
            "too_many_messages",
            f"messages has {len(request.messages)} entries; at most {limits.max_messages}"
            " are allowed (limits.max_messages)",
        )
    chars = prompt_chars(request)
    if chars > limits.max_prompt_chars:
        raise ApiError(
            400,
            "prompt_too_long",
            f"the messages hold {chars} characters of text; at most {limits.max_prompt_chars}"
            " are allowed (limits.max_prompt_chars)",
        )


class Sessions:
    """Owned by the app: `start()` on startup (the cancel listener), `stop()` on shutdown."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        router: ModelRouter,
        runner: GenerationRunner,
        *,
        cancel_wait_s: float = CANCEL_WAIT_S,
    ) -> None:
        self._settings = settings
        self._store = store
        self._router = router
        self._runner = runner
        self._cancel_wait_s = cancel_wait_s
        self._listener: asyncio.Task[None] | None = None
        # External sessions asked to cancel, whose producer's grace runs here.
        self._graces: dict[str, asyncio.Task[None]] = {}
        # The producer API's steps, for sessions an agent backend appends to.
        self.external = ExternalProducers(settings, store, runner.instance_id)
        # Set when the instance shuts down: new sessions go to another instance.
        self.draining = False

    def start(self) -> None:
        self._listener = asyncio.create_task(self._obey_cancels(), name="relay-cancels")

    async def stop(self) -> None:
        await cancel_and_wait(list(self._graces.values()))
        if self._listener is not None:
            await cancel_and_wait([self._listener])
            self._listener = None

    # --- create, find, snapshot --------------------------------------------------------

    async def create(
        self, model: str, request: GenerationRequest, client: Client = ANONYMOUS
    ) -> CreatedSession:
        """A new session of `client` for `model` (as the client named it), generating in
        the background; the upstream is sent the model name its route gives, and at most
        the client's `max_tokens` (a request asking more is capped, not refused). Only a
        request that would otherwise start is held to the client's quotas."""
        self.refuse_when_draining()
        refusal = functools.partial(refuse_oversized, request, self._settings.limits)
        await off_loop(refusal, large=len(request.messages) > MANY_MESSAGES)
        route = self._router.resolve(model)
        client.check_model(model, route.upstream, route.model)
        upstream_request = msgspec.structs.replace(
            request, model=route.model, max_tokens=client.capped(request.max_tokens)
        )
        session_id = new_session_id()
        settings = self._settings
        takeover = await takeover_ticket(settings, route.upstream, upstream_request, session_id)
        await self._admit(client, session_id)
        try:
            return await self._runner.create(
                model, route, upstream_request, client=client, session_id=session_id,
                takeover=takeover,
            )  # fmt: skip
        except BaseException:
            await self._give_back(client, session_id)
            raise

    async def create_external(
        self, model: str, idle_timeout_s: float | None, client: Client = ANONYMOUS
    ) -> CreatedExternal:
        """A new session of `client` whose events an external producer appends (no model
        call); held to the client's quotas like any other."""
        self.refuse_when_draining()
        idle_s = self.external.idle_timeout_s(idle_timeout_s)
        session_id = new_session_id()
        await self._admit(client, session_id)
        try:
            return await self.external.create(model, idle_s, session_id=session_id, client=client)
        except BaseException:
            await self._give_back(client, session_id)
            raise

    async def _admit(self, client: Client, session_id: str) -> None:
        """Take the client's quota for a new session, or refuse it with a 429."""
        if not client.quota.any:
            return  # no round trip for a client without quotas
        refusal = await self._store.admit(client.name, session_id, client.quota, time.time())
        if refusal is not None:
            raise refusal.error(client.name)

    async def _give_back(self, client: Client, session_id: str) -> None:
        """The slot of a session that could not start (its request still counts)."""
        if client.quota.max_concurrent_sessions is not None:
            with contextlib.suppress(StoreError):
                await self._store.release(client.name, session_id)

    def refuse_when_draining(self) -> None:
        if self.draining:
            raise ApiError(503, "draining", "this instance is shutting down; retry on another")

    async def find(
        self,
        session_id: str | None,
        not_found: ApiError | None = None,
        *,
        caller: Caller = ANONYMOUS_CALLER,
    ) -> SessionRecord:
        """The session's record if `caller` may see it, else `not_found` (by default 404
        `session_not_found`). None is an id that a front door could not translate: not
        found, without a lookup.

        A session is the client's that created it: any other client gets exactly the
        answer an unknown id gets, so ids cannot be probed. A caller that shows a read
        token is let in by that token alone: one that is not this session's (forged,
        another session's, or revoked: its session has expired) is a 401, whether the
        session exists or not."""
        record = None if session_id is None else await self._store.get(session_id)
        if caller.read_token is not None:
            if record is None or not token_matches(caller.read_token, record.token_sha256):
                raise ApiError(401, "invalid_token", INVALID_TOKEN, headers=CHALLENGE)
        elif record is None or caller.client is None or record.client != caller.client.name:
            raise not_found or session_not_found(session_id)
        log_context.note(session_id=record.id, client=record.client)
        return record

    async def snapshot(self, record: SessionRecord) -> Snapshot:
        return await slices.snapshot(record, await self.read_all(record.id))

    async def read_all(self, session_id: str, upto: int | None = None) -> list[Event]:
        """Every event of a session (or those with id <= `upto`), read in batches."""
        batch = self._settings.store.read_batch
        events: list[Event] = []
        while upto is None or len(events) < upto:
            limit = batch if upto is None else min(batch, upto - len(events))
            chunk = await self._store.read(session_id, len(events), limit)
            events += chunk
            if len(chunk) < limit:
                break
        return events

    # --- chats (the Vercel AI SDK front door) --------------------------------------------

    async def stream_chat(self, client: Client, chat_id: str, stream: ChatStream) -> None:
        """The client's chat `chat_id` streams `stream`'s message now (on every instance)."""
        await self._store.set_chat_stream(client.name, chat_id, stream)

    async def chat_stream(
        self, client: Client, chat_id: str
    ) -> tuple[SessionRecord, ChatStream] | None:
        """What the client's chat streamed last and its session's record; None when it
        never streamed, or its session is gone."""
        stream = await self._store.chat_stream(client.name, chat_id)
        record = None if stream is None else await self._store.get(stream.session_id)
        if stream is None or record is None or record.client != client.name:
            return None
        log_context.note(session_id=record.id, client=record.client)
        return record, stream

    # --- cancel ------------------------------------------------------------------------

    async def cancel(self, record: SessionRecord) -> SessionStatus:
        """Cancel the session's generation (reason `client`) wherever it runs; idempotent.

        The status once the cancel is through: the final one (`cancelled`, or what the
        session ended with before the cancel reached it), or `running` while the
        generation here is still writing its last events after `cancel_wait_s`.
        """
        if record.status.is_final:
            return record.status
        if record.is_external:
            return await self._cancel_external(record)
        here = self._runner.cancel(record.id, "client")
        if not here:
            await self._store.publish_cancel(record.id)
        terminal = await self._terminal_within(record, self._cancel_wait_s)
        if terminal is not None:
            return STATUS_AFTER_TERMINAL[terminal.type]
        if here:
            return SessionStatus.RUNNING
        return await self._end_here(record)

    async def _cancel_external(self, record: SessionRecord) -> SessionStatus:
        """Signal the producer to stop; the session's final status if it ends the session
        within `cancel_wait_s` (at most half its grace, so that the answer is not a race
        with the grace's end), else `running` while the grace runs here."""
        grace_s = self._settings.generation.producer_cancel_grace_s
        if record.id not in self._graces:  # a repeated cancel: the producer has been told
            with contextlib.suppress(ApiError):  # ended meanwhile, or at its signal cap
                await self.external.signal(record, CANCEL_SIGNAL)
            task = asyncio.create_task(self._end_after(record, grace_s), name="relay-cancel-grace")
            self._graces[record.id] = task
            task.add_done_callback(lambda _: self._graces.pop(record.id, None))
        terminal = await self._terminal_within(record, min(self._cancel_wait_s, grace_s / 2))
        return SessionStatus.RUNNING if terminal is None else STATUS_AFTER_TERMINAL[terminal.type]

    async def _end_after(self, record: SessionRecord, grace_s: float) -> None:
        """End the session with `cancelled` unless its producer ends it within `grace_s`."""
        if await self._terminal_within(record, grace_s) is not None:
            return
        try:
            await self._end_here(record)
        except (ApiError, StoreError) as exc:  # gone, or the store is down: the lease ends it
            log.warning(
                "session %s: cancel after its grace failed: %s", session_tag(record.id), exc
            )

    async def _terminal_within(self, record: SessionRecord, seconds: float) -> Event | None:
        """The session's terminal event after the record's last event, waiting up to
        `seconds` for it; None when none came (or the session ended before, or is gone:
        the store's `wait` then answers [] at once, so asking again would spin)."""
        after = record.last_event_id
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while events := await self._store.wait(record.id, after, 1000, seconds):
                    if events[-1].is_terminal:
                        return events[-1]
                    after = events[-1].id
        return None

    async def _end_here(self, record: SessionRecord) -> SessionStatus:
        """No instance generates the session any more: end its log from here."""
        wrote = await end_from_outside(
            self._store,
            record,
            (EventType.CANCELLED, CancelledData("client")),
            retry_s=self._settings.generation.store_retry_s,
            max_events=self._settings.store.max_events_per_session,
        )
        if wrote:
            metrics.session_ended_from_outside("cancelled", "client")
            tag = session_tag(record.id)
            log.info("session %s cancelled from this instance: no generator answered", tag)
            return SessionStatus.CANCELLED
        ended = await self._store.get(record.id)  # another writer ended it first
        if ended is None:
            raise session_not_found(record.id)
        return ended.status

    async def _obey_cancels(self) -> None:
        """Cancel the generations here that another instance was asked to cancel."""
        while True:
            try:
                async for session_id in self._store.cancel_requests():
                    self._runner.cancel(session_id, "client")
                return
            except StoreError as exc:  # listen again once the store is back
                log.warning("cancel requests interrupted: %s", exc)
                await asyncio.sleep(RELISTEN_AFTER_S)
