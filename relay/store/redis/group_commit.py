"""The append sender: the appends (and creations) of every session of a store, a
pipeline at a time.

A group commit: the calls that queue while a pipeline is out go together in the next
one, so under load the client's per-command cost (a pool checkout, a write, a read) is
paid once per round trip, not once per call; with one call waiting it goes out at
once, alone. Creations ride the same pipelines as appends (a burst of new sessions is
one round trip, not one each), and in the order they were queued: a session's first
append can never overtake its creation.

On one server (or a Sentinel's master) the sender holds a connection of its own
(`OwnConnection`): no pool checkout per round trip. A store's pool is sized one more for
it (`RedisStore.from_url`). A Cluster splits each pipeline by node, so there the sender
sends redis-py's Cluster pipelines, within the commands' `Boundary` like any command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster

from relay.errors import StoreUnavailable
from relay.store.redis.boundary import Boundary, error_reply_as_result, redis_errors_translated
from relay.store.redis.connect import CommandBatch, Commands, OwnConnection, RedisClient
from relay.store.redis.scripts import Script
from relay.tasks import cancel_and_wait

__all__ = ["APPEND_CONNECTIONS", "MAX_APPEND_BATCH", "AppendSender", "Queue", "Settle"]

# The connections the sender holds of its own, per Redis server (see the docstring).
APPEND_CONNECTIONS = 1

# The most calls one pipeline carries.
MAX_APPEND_BATCH = 256

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


class AppendSender:
    """Runs the append script for every caller, one pipeline in flight at a time.

    Each append gets its own script reply or error (a refusal is the script's error
    reply, raised by `run` as redis-py's `ResponseError`); a failure of the whole
    pipeline (Redis unreachable) fails every append in it alike, and their writers retry
    (a lost reply is recognised by the id fence). The one task is the store's: `aclose`
    cancels it and fails what still waits.
    """

    def __init__(self, client: RedisClient, commands: Boundary, script: Script) -> None:
        self._client = client
        self._commands = commands
        self._script = script
        self._own = None if isinstance(client, RedisCluster) else OwnConnection(client)
        self._queue: list[_QueuedCall] = []
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
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
        """Any call: its commands go in the next pipeline, after those queued before."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        call = _QueuedCall(queue, settle)
        self._queue.append(call)
        self._queued.set()
        if self._task is None:
            self._task = asyncio.create_task(self._send_forever(), name="relay redis appends")
        return await call.reply

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            await cancel_and_wait([self._task])
        for call in self._queue:
            call.settle(StoreUnavailable("the store is closed"))
        self._queue.clear()
        if self._own is not None:
            await self._own.aclose()

    async def _send_forever(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                batch = self._queue[:MAX_APPEND_BATCH]
                del self._queue[:MAX_APPEND_BATCH]
                await self._send(batch)

    async def _send(self, batch: list[_QueuedCall]) -> None:
        calls = [call for call in batch if not call.reply.done()]  # callers still there
        if not calls:
            return
        try:
            with redis_errors_translated():  # also a settle's own call (a script sent whole)
                counts, replies = await self._round_trip(calls)
                start = 0
                for call, count in zip(calls, counts, strict=True):
                    own = replies[start : start + count]
                    start += count
                    call.settle(await error_reply_as_result(call.settled(own)))
        except Exception as exc:  # handed to every caller, not swallowed
            for call in calls:
                call.settle(exc)
        finally:  # cancelled (the store closes): the batch may or may not have landed
            for call in calls:
                call.settle(StoreUnavailable("the store closed while appending"))

    async def _round_trip(self, calls: list[_QueuedCall]) -> tuple[list[int], list[Any]]:
        """How many commands each call queued, and the replies of them all."""
        if self._own is not None:
            batch = CommandBatch()
            counts = [call.queue(batch) for call in calls]
            return counts, await self._own.execute(batch)
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            counts = [call.queue(pipe) for call in calls]
            return counts, await pipe.execute(raise_on_error=False)
