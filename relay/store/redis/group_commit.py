"""The append sender: the appends (and creations) of every session of a store, a
pipeline at a time, with up to PIPELINES_IN_FLIGHT out at once.

A group commit: the calls that queue while the pipelines are out go together in the
next one, so under load the client's per-command cost (a pool checkout, a write, a read)
is paid once per round trip, not once per call; with one call waiting it goes out at
once, alone. Creations ride the same pipelines as appends (a burst of new sessions is
one round trip, not one each), and in the order they were queued: a session's first
append can never overtake its creation, though it need not wait for its reply.

On one server (or a Sentinel's master) the sender holds a connection of its own
(`OwnConnection`): no pool checkout per round trip, and a second pipeline is written
while the first one's replies are still on their way (Redis runs a connection's
commands in the order they came, and answers them in that order). So a generation's
first append goes out right behind its session's creation instead of a round trip
later. A store's pool is sized one more for it (`RedisStore.from_url`). A Cluster
splits each pipeline by node, so there the sender sends redis-py's Cluster pipelines,
one at a time, within the commands' `Boundary` like any command.

A dropped connection is reconnected (a Sentinel's asks for the master again) and every
pipeline still out is written again, in order, on the new one, RECONNECTS times at most
(as redis-py's own retry does for a Cluster pipeline). A pipeline whose bytes had
reached Redis then runs twice, which its scripts recognise: a creation finds its record,
an append finds its own id as the session's last append, and each answers as it did the
first time, changing nothing (scripts.py). A reply that does not come within the socket
timeout fails every pipeline out, and the connection is closed, so a late reply is never
read as another's.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from relay.errors import StoreUnavailable
from relay.store.redis.boundary import Boundary, error_reply_as_result, redis_errors_translated
from relay.store.redis.connect import (
    RECONNECT_BACKOFF,
    RECONNECTS,
    CommandBatch,
    Commands,
    OwnConnection,
    RedisClient,
)
from relay.store.redis.scripts import Script
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
# their replies become its answer (raising what its caller raises).
Queue = Callable[[Commands], int]
Settle = Callable[[list[Any]], Awaitable[Any]]


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


class _Flight:
    """One pipeline written (or to be written again) to the sender's own connection:
    its calls, how many commands each queued, the connection it went out on
    (`OwnConnection.epoch`; None: not on the current one), and why its write failed
    other than by a drop (a timeout: not tried again)."""

    __slots__ = ("batch", "calls", "counts", "epoch", "failure")

    def __init__(self, calls: list[_QueuedCall]) -> None:
        self.calls = calls
        self.batch = CommandBatch()
        self.counts = [call.queue(self.batch) for call in calls]
        self.epoch: int | None = None
        self.failure: Exception | None = None

    def went_out_on(self, own: OwnConnection) -> bool:
        """It was written on the connection open now: its replies will come on it."""
        return self.epoch is not None and self.epoch == own.epoch


class AppendSender:
    """Runs the append script for every caller, in pipelines sent in the order called.

    Each append gets its own script reply or error (a refusal is the script's error
    reply, raised by `run` as redis-py's `ResponseError`); a failure of the whole
    pipeline (Redis unreachable) fails every append in it alike, and their writers retry
    (a lost reply is recognised by the id fence). Its tasks (the writer, and on its own
    connection the reader of the replies) are the store's: `aclose` cancels them and
    fails what still waits.
    """

    def __init__(self, client: RedisClient, commands: Boundary, script: Script) -> None:
        self._client = client
        self._commands = commands
        self._script = script
        self._own = None if isinstance(client, RedisCluster) else OwnConnection(client)
        self._queue: list[_QueuedCall] = []
        self._queued = asyncio.Event()
        self._in_flight: collections.deque[_Flight] = collections.deque()
        self._flying = asyncio.Event()  # set while a pipeline is out
        self._room = asyncio.Event()  # set while fewer than PIPELINES_IN_FLIGHT are
        self._room.set()
        self._writing = asyncio.Lock()  # a pipeline's bytes go out whole, in order
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    async def run(
        self, keys: Sequence[str], args: Sequence[Any], stored: Callable[[], None] | None = None
    ) -> Any:
        """The append script's reply for `keys` and `args`. `stored` is called once the
        script has succeeded, in the sender's task: one loop turn before the caller
        resumes (the store wakes its subscribers with it)."""
        script, client = self._script, self._client

        def queue(pipe: Commands) -> int:
            script.queue(pipe, keys, args)
            return 1

        async def settle(replies: list[Any]) -> Any:
            reply = await script.settle(client, replies[0], keys, args)  # raises a refusal
            if stored is not None:
                stored()
            return reply

        return await self.send(queue, settle)

    async def send(self, queue: Queue, settle: Settle) -> Any:
        """Any call: its commands go in the next pipeline, after those queued before.
        Its `settle` runs in the sender's task, after those of the calls before it."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        call = _QueuedCall(queue, settle)
        self._queue.append(call)
        self._queued.set()
        if not self._tasks:
            self._start()
        return await call.reply

    async def aclose(self) -> None:
        self._closed = True
        await cancel_and_wait(self._tasks)
        closed = StoreUnavailable("the store is closed")
        for call in self._queue:
            call.settle(closed)
        self._queue.clear()
        self._fail_in_flight(StoreUnavailable("the store closed while appending"))
        if self._own is not None:
            await self._own.aclose()

    def _start(self) -> None:
        if self._own is None:
            self._tasks = [asyncio.create_task(self._send_forever(), name="relay redis appends")]
            return
        self._tasks = [
            asyncio.create_task(self._write_forever(self._own), name="relay redis appends"),
            asyncio.create_task(self._read_forever(self._own), name="relay redis append replies"),
        ]

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
            await _settle_all(calls, counts, replies)
        finally:  # cancelled (the store closes): the batch may or may not have landed
            for call in calls:
                call.settle(StoreUnavailable("the store closed while appending"))

    # --- the sender's own connection: pipelines in flight -----------------------------

    async def _write_forever(self, own: OwnConnection) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                await self._room.wait()
                if calls := self._next_calls():
                    await self._write(own, _Flight(calls))

    async def _write(self, own: OwnConnection, flight: _Flight) -> None:
        """Out now, unless a pipeline before it is to be written again after a drop:
        then the reader writes them all, in order (`_rewrite`)."""
        async with self._writing:
            before = self._in_flight[-1] if self._in_flight else None
            self._in_flight.append(flight)
            self._flying.set()
            if len(self._in_flight) >= PIPELINES_IN_FLIGHT:
                self._room.clear()
            if before is None or before.went_out_on(own):
                try:
                    flight.epoch = await own.write(flight.batch)
                except redis.exceptions.ConnectionError:
                    pass  # the reader writes it again on a new connection
                except redis.exceptions.RedisError as exc:  # a timeout: Redis does not answer
                    flight.failure = exc

    async def _read_forever(self, own: OwnConnection) -> None:
        while True:
            await self._flying.wait()
            flight = self._in_flight[0]
            try:
                with redis_errors_translated():
                    replies = await self._replies(own, flight)
            except Exception as exc:  # handed to every caller out, not swallowed
                await own.drop()  # a late reply must never be read as the next one's
                self._fail_in_flight(exc)
                continue
            except BaseException:  # cancelled (the store closes): the caller cannot know
                await own.drop()
                raise
            self._landed()
            try:
                await _settle_all(flight.calls, flight.counts, replies)
            finally:  # cancelled (the store closes) while a settle made its own call
                for call in flight.calls:
                    call.settle(StoreUnavailable("the store closed while appending"))

    async def _replies(self, own: OwnConnection, flight: _Flight) -> list[Any]:
        """The replies of the first pipeline out, after writing it (and the pipelines
        behind it) again on a new connection if the one it went out on dropped."""
        drops = 0
        while True:
            try:
                if not flight.went_out_on(own):
                    await self._rewrite(own)
                return await own.read(flight.batch)
            except redis.exceptions.ConnectionError:
                drops += 1
                if drops > RECONNECTS:
                    raise
                await own.drop()
                await asyncio.sleep(RECONNECT_BACKOFF.compute(drops))

    async def _rewrite(self, own: OwnConnection) -> None:
        async with self._writing:
            for flight in self._in_flight:
                if flight.failure is not None:
                    raise flight.failure
                if not flight.went_out_on(own):
                    flight.epoch = await own.write(flight.batch)

    def _landed(self) -> None:
        """The first pipeline out has its replies."""
        self._in_flight.popleft()
        self._room.set()
        if not self._in_flight:
            self._flying.clear()

    def _fail_in_flight(self, error: BaseException) -> None:
        for flight in self._in_flight:
            for call in flight.calls:
                call.settle(error)
        self._in_flight.clear()
        self._flying.clear()
        self._room.set()


async def _settle_all(calls: list[_QueuedCall], counts: list[int], replies: list[Any]) -> None:
    """Each call's answer from its own replies, in order. A settle's own round trip (a
    script sent whole after NOSCRIPT) that fails fails the calls not yet answered."""
    try:
        with redis_errors_translated():
            start = 0
            for call, count in zip(calls, counts, strict=True):
                own = replies[start : start + count]
                start += count
                call.settle(await error_reply_as_result(call.settled(own)))
    except Exception as exc:  # handed to every caller, not swallowed
        for call in calls:
            call.settle(exc)
