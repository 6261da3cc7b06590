"""External producers: sessions whose events an agent backend appends itself (the
producer API, CONTRACT.md "Producer API"), instead of relay's runner calling a model.

Such a session is created with a producer token (stored as its digest, like the read
token) and an idle timeout. The producer appends numbered batches: batch `seq` must be
the last accepted + 1; the last accepted one again is a safe retry, answered with the
ids it was given and appending nothing; any other is a `SeqConflict` naming the one
expected. The store records the seq and the ids with the events in one atomic step
(`EventLog.append_batch`), and its id fence stops a second writer, so two retries racing
each other, or a retry racing the reaper, still append a batch at most once.

The terminal-event guarantee holds for external producers through the leases
(relay/leases.py): every append and keep-alive renews the session's lease for its idle
timeout, and a session whose lease lapses is ended by any instance's reaper, here with
`error` code `producer_lost` (`PRODUCER_LOST`).

Signals go the other way, from a session's users to its producer: each is appended to
the session's signal log (`SignalLog`, ids 1, 2, 3 …) and the producer reads them as an
SSE stream (`signal_frames`: replay after an id, then live, ending when the session
ends). A cancel reaches the producer as the signal `CANCEL_SIGNAL` (relay.sessions).

No instance owns an external session: whichever serves an append, a keep-alive or the
signal stream renews its lease, so the loss of an instance costs the session nothing but
the connections open to that instance. A producer whose signal stream was cut (or a new
process taking over from a producer that died) opens it again asking for the session's
state (`state_frame`, first on the stream): whether the session is still open, and the
seq to append with next. There is no takeover to run: relay does not generate it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator

import msgspec

from relay import sse
from relay.clients import ANONYMOUS, CHALLENGE, Client
from relay.config import Settings
from relay.errors import (
    ApiError,
    AppendConflict,
    EventLimitReached,
    SessionEnded,
    SessionNotFound,
    SignalLimitReached,
    StoreError,
)
from relay.events import ErrorData, Event, make_event
from relay.session import (
    EXTERNAL_PRODUCER,
    SessionRecord,
    hash_token,
    new_token,
    token_matches,
)
from relay.store import Signal, Store, fits_under_cap
from relay.vocabulary import PRODUCER_TOKEN_PREFIX, READ_TOKEN_PREFIX, session_tag
from relay.wire.producer_request import Items

log = logging.getLogger(__name__)

PRODUCER_LOST = ErrorData(
    "producer_lost",
    "the session's producer neither appended nor kept the session alive within its"
    " idle timeout (producer_idle_timeout_s)",
    retryable=False,
)
INVALID_PRODUCER_TOKEN = (
    "the token is not this session's producer token (forged, another session's, or its"
    " session has expired)"
)


# What a cancel sends an external producer, as the data of a signal.
CANCEL_SIGNAL: dict[str, object] = {"kind": "cancel"}
SIGNAL_EVENT = "signal"
STATE_EVENT = "session"


class CreatedExternal(msgspec.Struct):
    record: SessionRecord
    token: str  # the read token, as for every session
    producer_token: str  # only ever shown to the creator


class BatchAccepted(msgspec.Struct):
    """The answer to a batch: its seq and the ids its events were given (fewer than it
    sent when it asked for coalescing); `appended` is False for a retry."""

    seq: int
    ids: list[int]
    appended: bool


class SeqConflict(ApiError):
    """409 `seq_conflict`: the batch is not the next one; `expected_seq` is."""

    def __init__(self, got: int, expected: int) -> None:
        message = f"seq {got} is not the next batch of this session: expected seq {expected}"
        super().__init__(409, "seq_conflict", message)
        self.expected_seq = expected


def session_ended(record: SessionRecord) -> ApiError:
    message = f"session {record.id!r} has ended ({record.status.value}): it takes no more events"
    return ApiError(409, "session_ended", message)


class ExternalProducers:
    """The producer API's steps for every front door; stateless beyond the store."""

    def __init__(self, settings: Settings, store: Store, instance_id: str) -> None:
        self._settings = settings
        self._store = store
        self._instance_id = instance_id

    def idle_timeout_s(self, asked: float | None) -> float:
        """The session's idle timeout: `asked`, else the configured default; at most the cap."""
        generation = self._settings.generation
        cap = generation.producer_idle_timeout_max_s
        if asked is not None and asked > cap:
            message = (
                f"producer_idle_timeout_s: {asked:g} is above the most allowed, {cap:g}"
                " (generation.producer_idle_timeout_max_s)"
            )
            raise ApiError(400, "invalid_request", message)
        return asked if asked is not None else min(generation.producer_idle_timeout_s, cap)

    async def create(
        self,
        model: str,
        idle_timeout_s: float,
        *,
        session_id: str,
        client: Client = ANONYMOUS,
    ) -> CreatedExternal:
        """A new session of `client` that the holder of the producer token appends to."""
        now = time.time()
        token, producer_token = new_token(READ_TOKEN_PREFIX), new_token(PRODUCER_TOKEN_PREFIX)
        record = SessionRecord(
            id=session_id,
            model=model,
            created_at=now,
            updated_at=now,
            token_sha256=hash_token(token),
            owner=self._instance_id,
            client=client.name,
            producer=EXTERNAL_PRODUCER,
            producer_token_sha256=hash_token(producer_token),
            producer_idle_timeout_s=idle_timeout_s,
        )
        await self._store.create(record)
        await self._renew(record)  # its first lease lasts its idle timeout
        log.info("session %s created for an external producer", session_tag(record.id))
        return CreatedExternal(record, token, producer_token)

    async def find(self, session_id: str, producer_token: str) -> SessionRecord:
        """The session `producer_token` is the producer token of; else a 401, whether the
        session exists or not (so tokens cannot probe ids)."""
        record = await self._store.get(session_id)
        if (
            record is None
            or not record.is_external
            or not token_matches(producer_token, record.producer_token_sha256)
        ):
            raise ApiError(401, "invalid_token", INVALID_PRODUCER_TOKEN, headers=CHALLENGE)
        return record

    async def append(self, record: SessionRecord, seq: int, items: Items) -> BatchAccepted:
        """Append batch `seq` as the events `items` (see the module docstring); a retry
        of the last one appends nothing. Every answer renews the session's lease: the
        producer is alive."""
        answer = _answer_due(record, seq)
        if not record.status.is_final:  # an ended session has no lease to renew
            await self._renew(record)
        if answer is None:
            first = record.last_event_id + 1
            events = [make_event(first + i, kind, data) for i, (kind, data) in enumerate(items)]
            answer = await self._appended(record, seq, events)
        return answer

    async def keepalive(self, record: SessionRecord) -> None:
        """The producer is alive though it has nothing to append: renew its lease."""
        if record.status.is_final:
            raise session_ended(record)
        await self._renew(record)

    async def signal(self, record: SessionRecord, data: dict[str, object]) -> int:
        """Append a signal (`data`, a JSON object: opaque to relay) for the session's
        producer; its id. 400 past `limits.max_signal_bytes`; 409 once the session has
        ended, and for a session relay generates itself (no producer reads signals)."""
        if not record.is_external:
            message = f"session {record.id!r} is generated by relay, not an external producer:"
            raise ApiError(409, "no_producer", message + " nothing reads its signals")
        encoded = msgspec.json.encode(data)  # one line: an SSE frame's data as it is
        cap = self._settings.limits.max_signal_bytes
        if len(encoded) > cap:
            message = f"data: {len(encoded)} bytes of JSON; at most {cap} are allowed"
            raise ApiError(400, "signal_too_large", message + " (limits.max_signal_bytes)")
        try:
            return await self._store.append_signal(record.id, encoded)
        except SessionEnded as exc:
            raise session_ended(await self._reread(record.id)) from exc
        except SignalLimitReached as exc:
            cap = self._settings.store.max_signals_per_session
            message = (
                f"the session has {cap} signals, the most allowed (store.max_signals_per_session)"
            )
            raise ApiError(409, "signal_limit", message) from exc
        except SessionNotFound as exc:
            raise _gone(record.id) from exc

    async def signal_frames(
        self, record: SessionRecord, after: int, *, state: bool = False
    ) -> AsyncGenerator[bytes, None]:
        """The session's signals after `after` as SSE frames (`id`, `event: signal`, the
        data as sent), then each as it comes; a `: ping` when none came for a heartbeat;
        over once the session has ended and every signal is sent. With `state`, first
        the session's state (`state_frame`)."""
        if state:
            yield state_frame(record)
        heartbeat_s = self._settings.server.heartbeat_s
        early_s = idle_s = sse.first_heartbeat_s(heartbeat_s, record.id)
        batch = self._settings.store.read_batch
        while True:
            signals = await self._store.wait_signals(record.id, after, batch, idle_s)
            idle_s = early_s if signals else heartbeat_s
            if not signals:
                current = await self._store.get(record.id)
                if current is None or current.status.is_final:  # no signal comes after
                    signals = await self._store.read_signals(record.id, after, batch)
                    if not signals:
                        return
            if signals:
                after = signals[-1].id
                yield _signal_frames(signals)
            else:
                yield sse.PING

    async def _appended(
        self, record: SessionRecord, seq: int, events: list[Event]
    ) -> BatchAccepted:
        """Append the batch; one that ends the session gives back its client's quota
        slot first, as every end does (relay/writer.py), and if the append then fails
        the slot stays given back: the session is ending anyway."""
        if _ends_session(events, self._settings.store.max_events_per_session):
            await self._release_slot(record)
        try:
            await self._store.append_batch(record.id, seq, events)
        except (AppendConflict, SessionEnded):  # a racing retry, the reaper or a cancel
            return _answer_after_race(await self._reread(record.id), seq)
        except EventLimitReached as exc:
            cap = self._settings.store.max_events_per_session
            message = (
                f"the batch would take the session past {cap} events"
                " (store.max_events_per_session); end it with a terminal event"
            )
            raise ApiError(409, "event_limit", message) from exc
        except SessionNotFound as exc:
            raise _gone(record.id) from exc
        return BatchAccepted(seq, [event.id for event in events], appended=True)

    async def _reread(self, session_id: str) -> SessionRecord:
        record = await self._store.get(session_id)
        if record is None:
            raise _gone(session_id)
        return record

    async def _renew(self, record: SessionRecord) -> None:
        ttl_s = record.producer_idle_timeout_s or None
        await self._store.renew_leases(self._instance_id, [record.id], ttl_s)

    async def _release_slot(self, record: SessionRecord) -> None:
        """The producer is ending its session: its client's quota slot, if any, is free."""
        if record.client:
            with contextlib.suppress(StoreError):  # the next admission finds it stale
                await self._store.release(record.client, record.id)


class ProducerState(msgspec.Struct):
    """Where a session stands for its producer: whether it is still open, the last batch
    it accepted and the next it takes, and its last event's id."""

    state: str
    last_seq: int
    next_seq: int
    last_event_id: int


def state_frame(record: SessionRecord) -> bytes:
    """`event: session` with the `ProducerState`, without `id:` (it is not a signal, and
    must not move the stream's resume point)."""
    state = ProducerState(
        record.status.value, record.producer_seq, record.producer_seq + 1, record.last_event_id
    )
    return sse.data_frame(msgspec.json.encode(state), None, STATE_EVENT)


def _signal_frames(signals: list[Signal]) -> bytes:
    return b"".join(sse.event_frame(signal.id, SIGNAL_EVENT, signal.data) for signal in signals)


def _answer_due(record: SessionRecord, seq: int) -> BatchAccepted | None:
    """The answer already due for batch `seq` (a retry, or a refusal), or None when it
    is the next batch, to append."""
    if seq == record.producer_seq:
        ids = list(range(record.producer_first_id, record.producer_last_id + 1))
        return BatchAccepted(seq, ids, appended=False)
    if record.status.is_final:
        raise session_ended(record)
    if seq != record.producer_seq + 1:
        raise SeqConflict(seq, record.producer_seq + 1)
    return None


def _ends_session(events: list[Event], max_events: int) -> bool:
    """Whether the batch ends its session: its last event is terminal, and the store's
    cap takes it."""
    return events[-1].is_terminal and fits_under_cap(events[-1], max_events)


def _answer_after_race(record: SessionRecord, seq: int) -> BatchAccepted:
    """The answer once another writer appended first (the record read since)."""
    answer = _answer_due(record, seq)
    if answer is None:  # the log moved but the seq did not: ended from outside
        raise session_ended(record)
    return answer


def _gone(session_id: str) -> ApiError:
    return ApiError(
        404, "session_not_found", f"session {session_id!r} does not exist or has expired"
    )
