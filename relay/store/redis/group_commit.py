"""The append sender: the appends (and creations) of every session of a store, a
pipeline at a time, with up to PIPELINES_IN_FLIGHT out at once.

A group commit: the calls that queue while the pipelines are out go together in the
next one, so under load the client's per-command cost (a write, a read, their wake-ups)
is paid once per round trip, not once per call; with one call waiting it goes out at
once, alone. Creations ride the same pipelines as appends (a burst of new sessions is
one round trip, not one each), and in the order they were queued: a session's first
append can never overtake its creation, though it need not wait for its reply.

On one server (or a Sentinel's master) the sender drives a connection of its own
(`OwnConnection`, `_Link`): redis-py opens it (its handshake, a Sentinel's master), then
the socket is the sender's. Calls queued in one turn of the event loop are written
together at the end of that turn, from a callback; replies are parsed (hiredis) as the
socket hands them over and each call is answered right there, and the next pipeline
written, with no task of the sender's woken in between: an append costs its caller one
wake-up. A second pipeline is written while the first one's replies are still on their
way (Redis runs a connection's commands in the order they came, and answers them in
that order), so a generation's first append goes out right behind its session's
creation instead of a round trip later. A store's pool is sized one more for it
(`RedisStore.from_url`). A Cluster splits each pipeline by node, so there (and on a
client whose connections are not sockets, an in-process fake) the sender sends
redis-py's pipelines, one at a time, from a task, within the commands' `Boundary`.

A dropped connection is opened again (a Sentinel's asks for the master again) and every
pipeline still out is written again, in order, on the new one, RECONNECTS times at most
for the first pipeline out (as redis-py's own retry does for a Cluster pipeline). A
pipeline whose bytes had reached Redis then runs twice, which its scripts recognise: a
creation finds its record, an append finds its own id as the session's last append, and
each answers as it did the first time, changing nothing (scripts.py). No reply within
the socket timeout fails every pipeline out, and the connection is closed, so a late
reply is never read as another's.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.exceptions
from redis._parsers.base import BaseParser

from relay.errors import StoreError, StoreUnavailable
from relay.store.redis.boundary import (
    Boundary,
    error_reply_as_result,
    redis_errors_translated,
    translated,
)
from relay.store.redis.connect import (
    RECONNECT_BACKOFF,
    RECONNECTS,
    SOCKET_TIMEOUT_S,
    CommandBatch,
    Commands,
    OwnConnection,
    RedisClient,
    drives_own_socket,
    pack_commands,
)
from relay.store.redis.scripts import Later, Script
from relay.tasks import cancel_and_wait

__all__ = [
    "APPEND_CONNECTIONS",
    "MAX_APPEND_BATCH",
    "PIPELINES_IN_FLIGHT",
    "AppendSender",
    "Queue",
    "Settle",
]

# The connections the sender holds of its own, per Redis server (see the docstring).
APPEND_CONNECTIONS = 1

# The most calls one pipeline carries.
MAX_APPEND_BATCH = 256

# Pipelines out at once on the sender's own connection. Two hide the round trip a call
# would otherwise wait for behind the one pipeline out; more would only cut the same
# calls into smaller pipelines under load.
PIPELINES_IN_FLIGHT = 2

# How a call puts its commands in a pipeline (returning how many it queued), and how
# their replies become its answer: returned, raised (what its caller raises), or a
# `Later` when the answer takes a round trip of its own first.
Queue = Callable[[Commands], int]
Settle = Callable[[list[Any]], Any]

_CLOSED_WHILE_APPENDING = "the store closed while appending"


class _QueuedCall:
    """One call waiting for its turn in a pipeline; `reply` is its answer."""

    __slots__ = ("queue", "reply", "settled")

    def __init__(self, queue: Queue, settle: Settle) -> None:
        self.queue = queue
        self.settled = settle
        self.reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def settle(self, outcome: Any) -> None:
        """Its reply, or the exception it raises; nothing if its caller has gone."""
        if self.reply.done():
            return
        if isinstance(outcome, BaseException):
            self.reply.set_exception(outcome)
        else:
            self.reply.set_result(outcome)


# A call and the replies to its own commands.
_Answering = list[tuple[_QueuedCall, list[Any]]]


def _answering(calls: list[_QueuedCall], counts: list[int], replies: list[Any]) -> _Answering:
    pairs, start = [], 0
    for call, count in zip(calls, counts, strict=True):
        pairs.append((call, replies[start : start + count]))
        start += count
    return pairs


class _Flight:
    """One pipeline on the sender's own connection: its calls, how many commands each
    queued, its bytes, the replies read so far, the connection it was written on (None:
    to be written), and how many connections were lost while it was the first out."""

    __slots__ = ("calls", "counts", "data", "drops", "link", "replies", "size")

    def __init__(self, calls: list[_QueuedCall]) -> None:
        batch = CommandBatch()
        self.calls = calls
        self.counts = [call.queue(batch) for call in calls]
        self.data = pack_commands(batch.commands)
        self.size = len(batch.commands)
        self.replies: list[Any] = []
        self.link: _Link | None = None
        self.drops = 0

    def answering(self) -> _Answering:
        return _answering(self.calls, self.counts, self.replies)


# hiredis's "no whole reply in what was fed yet".
_NO_REPLY_YET = object()


class _Link(asyncio.Protocol):
    """The sender's connection once redis-py has opened it: every reply, parsed as the
    socket hands it over, goes to `replied`; a dropped connection (or one whose bytes
    make no sense) to `lost`, once."""

    def __init__(
        self,
        replied: Callable[[_Link, Any], None],
        lost: Callable[[_Link, Exception], None],
    ) -> None:
        self._replied = replied
        self._lost = lost
        self._parser = hiredis.Reader(
            protocolError=redis.exceptions.InvalidResponse,
            replyError=BaseParser.parse_error,
            notEnoughData=_NO_REPLY_YET,
        )
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        """Out, unless the connection is closing: its drop is on its way, and what it
        did not carry is written again on the next one."""
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """Closed at once: nothing more is read from it (its `lost` is not called)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        while not self.closed:
            try:
                reply = self._parser.gets()
            except redis.exceptions.InvalidResponse as exc:
                self._lost(self, exc)
                return
            if reply is _NO_REPLY_YET:
                return
            self._replied(self, reply)

    def eof_received(self) -> bool:
        return False  # the transport closes itself: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        why = f"the connection to redis was lost: {exc}" if exc else "redis closed the connection"
        self._lost(self, redis.exceptions.ConnectionError(why))


class AppendSender:
    """Runs the append script for every caller, in pipelines sent in the order called.

    Each append gets its own script reply or error (a refusal is the script's error
    reply, raised by `run` as redis-py's `ResponseError`); a failure of the whole
    pipeline (Redis unreachable) fails every append in it alike, and their writers retry
    (a lost reply is recognised by the id fence). Its tasks (on a Cluster the sender of
    the pipelines; on its own connection the one that opens it, and one that settles in
    order behind an answer that takes a round trip of its own) are the store's:
    `aclose` cancels them and fails what still waits.
    """

    def __init__(self, client: RedisClient, commands: Boundary, script: Script) -> None:
        self._client = client
        self._commands = commands
        self._script = script
        self._own = OwnConnection(client) if drives_own_socket(client) else None
        self._queue: list[_QueuedCall] = []
        self._closed = False
        # Pipelines one at a time, from a task (a Cluster).
        self._queued = asyncio.Event()
        self._sending: asyncio.Task[None] | None = None
        # The sender's own connection.
        self._in_flight: collections.deque[_Flight] = collections.deque()
        self._link: _Link | None = None  # None: not open (being opened, if anything is out)
        self._opening: asyncio.Task[None] | None = None
        self._write_due = False  # a write of what is queued is due at the loop turn's end
        self._deadline: asyncio.TimerHandle | None = None  # for the first pipeline's replies
        self._settling: asyncio.Task[None] | None = None  # behind an answer that waits
        self._unsettled: collections.deque[_Flight] = collections.deque()  # behind it

    async def run(
        self, keys: Sequence[str], args: Sequence[Any], stored: Callable[[], None] | None = None
    ) -> Any:
        """The append script's reply for `keys` and `args`. `stored` is called once the
        script has succeeded, before the caller resumes (the store wakes its subscribers
        with it)."""
        script, client = self._script, self._client

        def queue(pipe: Commands) -> int:
            script.queue(pipe, keys, args)
            return 1

        def settle(replies: list[Any]) -> Any:
            answer = script.answer(client, replies[0], keys, args)  # raises a refusal
            if isinstance(answer, Later):
                return Later(lambda: _stored_after(answer, stored))
            if stored is not None:
                stored()
            return answer

        return await self.send(queue, settle)

    async def send(self, queue: Queue, settle: Settle) -> Any:
        """Any call: its commands go in the next pipeline, after those queued before.
        Its `settle` runs after those of the calls before it."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        call = _QueuedCall(queue, settle)
        self._queue.append(call)
        if self._own is None:
            self._queued.set()
            if self._sending is None:
                self._sending = asyncio.create_task(
                    self._send_forever(), name="relay redis appends"
                )
        elif not self._write_due:
            self._write_due = True
            asyncio.get_running_loop().call_soon(self._write_queued)
        return await call.reply

    async def aclose(self) -> None:
        self._closed = True
        tasks = (self._sending, self._opening, self._settling)
        await cancel_and_wait(task for task in tasks if task is not None)
        closed = StoreUnavailable("the store is closed")
        for call in self._queue:
            call.settle(closed)
        self._queue.clear()
        self._fail_in_flight(StoreUnavailable(_CLOSED_WHILE_APPENDING))
        while self._unsettled:
            for call in self._unsettled.popleft().calls:
                call.settle(StoreUnavailable(_CLOSED_WHILE_APPENDING))
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._own is not None:
            await self._own.aclose()

    def _next_calls(self) -> list[_QueuedCall]:
        """The next pipeline's calls, without those whose callers have gone."""
        batch = self._queue[:MAX_APPEND_BATCH]
        del self._queue[:MAX_APPEND_BATCH]
        return [call for call in batch if not call.reply.done()]

    # --- a Cluster: one pipeline at a time --------------------------------------------

    async def _send_forever(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                if calls := self._next_calls():
                    await self._send(calls)

    async def _send(self, calls: list[_QueuedCall]) -> None:
        try:
            with redis_errors_translated():
                async with self._commands, self._client.pipeline(transaction=False) as pipe:
                    counts = [call.queue(pipe) for call in calls]
                    replies = await pipe.execute(raise_on_error=False)
            await _settle_all(_answering(calls, counts, replies))
        finally:  # cancelled (the store closes): the batch may or may not have landed
            for call in calls:
                call.settle(StoreUnavailable(_CLOSED_WHILE_APPENDING))

    # --- the sender's own connection: pipelines in flight -----------------------------

    def _write_queued(self) -> None:
        """Put the queued calls in pipelines while fewer than PIPELINES_IN_FLIGHT are
        out, and write them (or have the connection opened: that writes them)."""
        self._write_due = False
        while self._queue and len(self._in_flight) < PIPELINES_IN_FLIGHT and not self._closed:
            calls = self._next_calls()
            if not calls:
                continue
            try:
                flight = _Flight(calls)
            except Exception as exc:  # an argument the packer refuses: the store's bug
                for call in calls:
                    call.settle(exc)
                continue
            self._in_flight.append(flight)
            link = self._link
            if link is None:
                self._open_soon(0.0)
                continue
            link.write(flight.data)
            flight.link = link
            if self._deadline is None:
                self._arm()

    def _replied(self, link: _Link, reply: Any) -> None:
        if link is not self._link:
            return
        head = self._in_flight[0] if self._in_flight else None
        if head is None or head.link is not link:
            self._lost(link, redis.exceptions.InvalidResponse("a reply no command waits for"))
            return
        if isinstance(reply, redis.exceptions.ConnectionError):  # LOADING: as redis-py does
            self._lost(link, reply)
            return
        head.replies.append(reply)
        if len(head.replies) < head.size:
            return
        self._in_flight.popleft()
        self._disarm()
        if self._in_flight:
            self._arm()
        self._write_queued()  # room for the next pipeline: out before the answers
        self._settle(head)

    def _lost(self, link: _Link, error: Exception) -> None:
        """The connection dropped: every pipeline out is written again on a new one,
        unless the first has seen RECONNECTS drops already."""
        if link.closed:
            return
        link.close()
        if link is not self._link:
            return
        self._link = None
        self._disarm()
        if not self._in_flight:
            return
        head = self._in_flight[0]
        head.drops += 1
        if head.drops > RECONNECTS:
            self._fail_in_flight(_relay_error(error))
            self._write_queued()  # what queued meanwhile gets its own try
            return
        for flight in self._in_flight:
            flight.link, flight.replies = None, []
        self._open_soon(RECONNECT_BACKOFF.compute(head.drops))

    def _open_soon(self, delay_s: float) -> None:
        if self._opening is None:
            self._opening = asyncio.create_task(
                self._open(delay_s), name="relay redis append connection"
            )

    async def _open(self, delay_s: float) -> None:
        """Open the connection, then write every pipeline out on it, in order."""
        assert self._own is not None
        link = None
        try:
            await asyncio.sleep(delay_s)
            while self._in_flight and link is None:
                link = _Link(self._replied, self._lost)
                try:
                    link.transport = await self._own.open(link)
                except redis.exceptions.ConnectionError as exc:
                    link = None
                    head = self._in_flight[0]
                    head.drops += 1
                    if head.drops > RECONNECTS:
                        self._fail_in_flight(_relay_error(exc))
                        break
                    await asyncio.sleep(RECONNECT_BACKOFF.compute(head.drops))
                except Exception as exc:  # a timeout: a server that will not answer
                    link = None
                    self._fail_in_flight(_relay_error(exc))
        finally:
            self._opening = None
        if link is None:
            self._write_queued()  # what queued meanwhile gets its own try
            return
        self._link = link
        for flight in self._in_flight:
            link.write(flight.data)
            flight.link = link
        if self._in_flight:
            self._arm()
        self._write_queued()

    def _arm(self) -> None:
        """The first pipeline out has SOCKET_TIMEOUT_S for its replies."""
        self._deadline = asyncio.get_running_loop().call_later(SOCKET_TIMEOUT_S, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        """No reply in time: everything out fails, and the connection is closed so that a
        late reply is never read as the next pipeline's."""
        self._deadline = None
        if self._link is not None:
            self._link.close()
            self._link = None
        timeout = redis.exceptions.TimeoutError(f"no reply within {SOCKET_TIMEOUT_S:g} s")
        self._fail_in_flight(_relay_error(timeout))
        self._write_queued()

    def _fail_in_flight(self, error: BaseException) -> None:
        flights, self._in_flight = self._in_flight, collections.deque()
        self._disarm()
        for flight in flights:
            for call in flight.calls:
                call.settle(error)

    def _settle(self, flight: _Flight) -> None:
        """Its calls' answers, in order, after those of every pipeline before it."""
        if self._settling is not None:
            self._unsettled.append(flight)
            return
        answering = flight.answering()
        for index, (call, replies) in enumerate(answering):
            try:
                with redis_errors_translated():
                    answer = _answer(call, replies)
            except Exception as exc:  # handed to the calls not yet answered, not swallowed
                for waiting, _ in answering[index:]:
                    waiting.settle(exc)
                return
            if isinstance(answer, Later):  # it and all behind it: in a task, in order
                rest = answering[index:]
                self._settling = asyncio.create_task(
                    self._settle_later(rest), name="relay redis append answers"
                )
                return
            call.settle(answer)

    async def _settle_later(self, answering: _Answering) -> None:
        try:
            await _settle_all(answering)
            while self._unsettled:
                answering = self._unsettled.popleft().answering()
                await _settle_all(answering)
        finally:  # cancelled (the store closes) while an answer made its round trip
            self._settling = None
            for call, _ in answering:
                call.settle(StoreUnavailable(_CLOSED_WHILE_APPENDING))


def _answer(call: _QueuedCall, replies: list[Any]) -> Any:
    """A call's answer from its replies; an error reply (`ResponseError`) is returned:
    in a pipeline it is one call's answer, not a failure of the whole pipeline."""
    try:
        return call.settled(replies)
    except redis.exceptions.ResponseError as exc:
        return exc


async def _settle_all(answering: _Answering) -> None:
    """Each call's answer, in order, awaiting those that take a round trip of their own;
    one of those that fails fails the calls not yet answered."""
    try:
        with redis_errors_translated():
            for call, replies in answering:
                answer = _answer(call, replies)
                if isinstance(answer, Later):
                    answer = await error_reply_as_result(answer.run())
                call.settle(answer)
    except Exception as exc:  # handed to every caller, not swallowed
        for call, _ in answering:
            call.settle(exc)


async def _stored_after(answer: Later, stored: Callable[[], None] | None) -> Any:
    reply = await answer.run()
    if stored is not None:
        stored()
    return reply


def _relay_error(error: Exception) -> StoreError:
    return translated(error) or StoreError(f"redis failed: {error}")
