"""The store's interfaces: the event log, the signal log, the leases, the cancel bus, the
quotas and the chat streams, and `Store`, which is all six on one backend.

Every implementation behaves identically where a caller can observe it: one contract
suite per interface in tests/store/ runs against each store on each backend. Times are
the caller's clock, in seconds since the epoch.

`ping` and `close` belong to `Store`, not to one of its parts: they all share one
backend (one Redis client, one process's memory), so whether it can serve and when it
is released are questions about the whole; closing it ends each part's waiting (see
`EventLog.wait` and `CancelBus.cancel_requests`). Code that only uses a part takes
that part's type; whoever opens the store closes it.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import AsyncIterator, Sequence

import msgspec

from relay.events import Event
from relay.quotas import QuotaLimits, QuotaRefusal
from relay.session import SessionRecord

__all__ = [
    "CancelBus",
    "ChatStream",
    "ChatStreams",
    "EventLog",
    "Leases",
    "Quotas",
    "Signal",
    "SignalLog",
    "Store",
    "check_batch",
    "check_first",
    "fits_under_cap",
    "with_first",
]


class EventLog(abc.ABC):
    """One durable event log and one record per session.

    The rules of `append`:

    - the session must exist (`SessionNotFound`) and still be running (`SessionEnded`);
    - the batch's ids continue the log exactly: first id = last id + 1, consecutive
      (`AppendConflict`), so a second writer can never interleave or duplicate;
    - a terminal event may only be the last of its batch; it ends the session, sets its
      status and starts its retention clock (`retention_s`), after which the session
      is gone (`get` is None, `read` and `wait` are []); a running session stays;
    - non-terminal events may use ids up to `max_events - 1`; the last id is kept for
      the terminal event, so a session at the cap can still end cleanly
      (`EventLimitReached`). Nothing is ever trimmed.

    Events read back exactly as appended, their data byte for byte. `wait` is woken by
    an append from any task or instance, and by the store closing.
    """

    @abc.abstractmethod
    async def create(
        self,
        record: SessionRecord,
        takeover: bytes | None = None,
        first: Sequence[Event] = (),
    ) -> SessionRecord:
        """Store a new session, with `first` as its first events, in one step; returns
        its record as stored (`last_event_id` that of the last of `first`, or 0).
        Raises `StoreFull` when there is no room.

        `takeover` is what another instance needs to take its generation over (its
        request, relay/takeover.py), opaque to the store: kept beside the record, not
        in it (no `get` reads it), while the session runs, and dropped when it ends.
        `first` (see `check_first`) saves the creator an append: its ids are 1, 2, …,
        none of them terminal, within `max_events - 1`, read back like appended ones.

        The creation is ordered before anything asked of the store after `create` was
        called, before it returns: a session's first append may be made while its
        creation is on its way (the runner's is), and lands after it, or fails with it."""

    @abc.abstractmethod
    async def read_takeover(self, session_id: str) -> bytes | None:
        """What `create` was given as `takeover`; None when it was given none, or the
        session has ended or is gone."""

    @abc.abstractmethod
    async def get(self, session_id: str) -> SessionRecord | None:
        """The session's record, or None when it never existed or has expired."""

    @abc.abstractmethod
    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        """Append `events` atomically (see the class docstring); returns the new record."""

    @abc.abstractmethod
    async def append_batch(
        self, session_id: str, seq: int, events: Sequence[Event]
    ) -> SessionRecord:
        """Append an external producer's batch `seq` like `append`, recording `seq` and
        the batch's first and last ids in the record in the same atomic step (so a retry
        of `seq` is recognised even when its first reply was lost)."""

    @abc.abstractmethod
    async def read(self, session_id: str, after: int, limit: int) -> list[Event]:
        """Up to `limit` events with id > `after`, in order; [] when there are none.
        An `after` below 0 means from the start."""

    @abc.abstractmethod
    async def wait(self, session_id: str, after: int, limit: int, timeout: float) -> list[Event]:
        """Like `read`, but when nothing is there yet, wait up to `timeout` seconds for
        the next append. Returns [] on timeout, at once for an ended or unknown session,
        and when the store closes; the caller decides what that means."""


class Signal(msgspec.Struct, frozen=True):
    """One signal from a session's users to its producer: its id in the session's signal
    log (1, 2, 3 …) and its data, a JSON object's text as sent."""

    id: int
    data: bytes


class SignalLog(abc.ABC):
    """A second, small log per session: the signals its users send its producer.

    `append_signal` gives each signal the next id (1, 2, 3 …) atomically, whichever
    instance appends; it needs the session to exist (`SessionNotFound`) and to be running
    (`SessionEnded`), and refuses a signal past `max_signals_per_session`
    (`SignalLimitReached`): nothing is trimmed. The signals expire with their session.
    `wait_signals` is woken by an append from any instance.
    """

    @abc.abstractmethod
    async def append_signal(self, session_id: str, data: bytes) -> int:
        """Append a signal (its JSON text `data`); returns its id."""

    @abc.abstractmethod
    async def read_signals(self, session_id: str, after: int, limit: int) -> list[Signal]:
        """Up to `limit` signals with id > `after`, in order; [] when there are none."""

    @abc.abstractmethod
    async def wait_signals(
        self, session_id: str, after: int, limit: int, timeout: float
    ) -> list[Signal]:
        """Like `read_signals`, but when none is there yet, wait up to `timeout` seconds
        for the next. Returns [] on timeout, and at once for an ended or unknown session
        (once its signals are read) and when the store closes."""


class Leases(abc.ABC):
    """Which instance generates each running session, so that another can end the
    sessions whose generator stopped (a crash, a lost network).

    `EventLog.create` gives a new session its first lease, held by the record's
    `owner`, for `lease_ttl_s`. A lease not renewed within its ttl (`lease_ttl_s`, or
    the `ttl_s` of its last renewal: an external producer's idle timeout) lapses.
    `lapsed_leases` names only running sessions: a session that ended (or expired)
    never lapses.
    """

    @abc.abstractmethod
    async def renew_leases(
        self, owner: str, session_ids: Sequence[str], ttl_s: float | None = None
    ) -> None:
        """`owner` still generates these running sessions: extend their leases by
        `ttl_s` (by default `lease_ttl_s`) from now."""

    @abc.abstractmethod
    async def lapsed_leases(self, limit: int) -> list[str]:
        """Up to `limit` running sessions whose lease lapsed (their generator stopped
        renewing), most overdue first. Ending them is the caller's job."""

    @abc.abstractmethod
    async def claim_lease(self, session_id: str, owner: str, max_takeovers: int) -> int:
        """Take over a running session whose lease lapsed, atomically: of any number of
        instances claiming it at once, exactly one wins. The winner becomes its `owner`,
        holds its lease for `lease_ttl_s`, and the record's `takeovers` goes up by one;
        the new count is returned. 0 when nothing changed: the lease is held (it did not
        lapse, or another claim won), the session is not running (or is gone), or it was
        taken over `max_takeovers` times already."""


class CancelBus(abc.ABC):
    """Cancel requests, broadcast to every instance on the backend.

    A published cancel reaches every listener (every `cancel_requests()` iterator) on
    the backend, the publisher's own included, in the order published. Like Redis
    pub/sub it is a broadcast, not a queue: a listener hears only what is published
    while it listens, and nothing is kept for listeners to come. A listener listens
    from the first step of its iteration (on Redis, once its SUBSCRIBE is in).
    In one process (the memory store) the backend is the store object itself.
    """

    @abc.abstractmethod
    async def publish_cancel(self, session_id: str) -> None:
        """Ask every instance to cancel this session's generation if it runs there."""

    @abc.abstractmethod
    def cancel_requests(self) -> AsyncIterator[str]:
        """Session ids whose cancel was asked through `publish_cancel`, from any
        instance, as they come; ends when the store closes (at once if it has)."""


class Quotas(abc.ABC):
    """Each client's quota counts (relay/quotas.py says what they mean), shared by every
    instance on the backend.

    A client's running sessions hold a slot each, from `admit` to `release`. Admission
    is atomic: two instances admitting at once never both take the last slot, nor the
    last request of a minute. A slot is self-healing: when the slots look full, those
    whose session has ended, or whose record is gone after `STALE_SLOT_GRACE_S`
    (its releaser crashed, or the record expired), are given back before the client
    is refused. Times are the caller's clock (`now`), as everywhere in the store.
    """

    @abc.abstractmethod
    async def admit(
        self, client: str, session_id: str, limits: QuotaLimits, now: float
    ) -> QuotaRefusal | None:
        """Admit a new session of `client`, or say which limit refuses it (None: admitted).

        Admitted, the request counts in `now`'s minute (with `requests_per_minute`) and
        `session_id` holds a slot (with `max_concurrent_sessions`); a refused request
        counts nowhere. `tokens_per_minute` refuses once the tokens counted reach it."""

    @abc.abstractmethod
    async def release(self, client: str, session_id: str) -> None:
        """Give back the session's slot; nothing when it holds none."""

    @abc.abstractmethod
    async def count_tokens(self, client: str, tokens: int, now: float) -> None:
        """Count `tokens` output tokens generated for `client` in `now`'s minute."""


class ChatStream(msgspec.Struct, frozen=True):
    """The message a chat of the Vercel AI SDK front door streams now: its session, and
    the UI message id its chunks carry (relay/frontdoors/ui_chat.py)."""

    session_id: str
    message_id: str


class ChatStreams(abc.ABC):
    """Which session each client's chat streams now, shared by every instance on the
    backend, so that a chat's stream can be resumed by its id alone (the AI SDK's
    `GET {api}/{chatId}/stream`) on any instance.

    A chat is named by its client and its id (any string: the client chooses it); two
    clients' chats of the same id are two chats. `set_chat_stream` replaces what the chat
    streamed before. An entry lasts at most `running_ttl_s + retention_s` from when it
    was set (as long as its session can be kept) and may go earlier, when its session
    expires: the session it names may have ended or be gone, which is the caller's to
    check.
    """

    @abc.abstractmethod
    async def set_chat_stream(self, client: str, chat_id: str, stream: ChatStream) -> None:
        """The chat's message is now `stream`'s."""

    @abc.abstractmethod
    async def chat_stream(self, client: str, chat_id: str) -> ChatStream | None:
        """What the chat streamed last, or None when it never streamed (or it expired)."""


class Store(EventLog, SignalLog, Leases, CancelBus, Quotas, ChatStreams):
    """The event log, the signal log, the leases, the cancel bus, the quotas and the chat
    streams of one backend."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raises `StoreUnavailable` when the store cannot serve."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the backend: wake every waiter, end every cancel listener."""


def check_batch(events: Sequence[Event]) -> None:
    """Reject a batch that no store could accept, before any I/O."""
    if not events:
        raise ValueError("append needs at least one event")
    for previous, event in itertools.pairwise(events):
        if event.id != previous.id + 1:
            raise ValueError(f"event ids must be consecutive, got {previous.id} then {event.id}")
        if previous.is_terminal:
            raise ValueError("a terminal event must be the last of its batch")


def check_first(events: Sequence[Event], max_events: int) -> None:
    """Reject a creation's first events that no store could accept, before any I/O:
    they are a batch from id 1, none terminal, that leaves the last id for the end."""
    if not events:
        return
    check_batch(events)
    if events[0].id != 1:
        raise ValueError(f"a session's first event has id 1, got {events[0].id}")
    if events[-1].is_terminal:
        raise ValueError("a session cannot be created ended: its first events end it")
    if not fits_under_cap(events[-1], max_events):
        raise ValueError(f"{len(events)} first events do not fit in {max_events} events")


def fits_under_cap(last: Event, max_events: int) -> bool:
    """Whether a batch ending with `last` fits under the cap of `max_events` per
    session: the last id is kept for a terminal event, so a session at the cap can
    still end (the append script, scripts.py, checks the same in Redis)."""
    return last.id <= (max_events if last.is_terminal else max_events - 1)


def with_first(record: SessionRecord, first: Sequence[Event]) -> SessionRecord:
    """A new session's record as stored with its `first` events."""
    if not first:
        return record
    return msgspec.structs.replace(record, last_event_id=first[-1].id)
