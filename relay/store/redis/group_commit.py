"""The append sender: the appends of every session of a store, a pipeline at a time.

A group commit: the appends that queue while a pipeline is out go together in the next
one, so under load the client's per-command cost (a pool checkout, a write, a read) is
paid once per round trip, not once per append; with one append waiting it goes out at
once, alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from relay.errors import StoreUnavailable
from relay.store.redis.boundary import Boundary, error_reply_as_result
from relay.store.redis.connect import RedisClient
from relay.store.redis.scripts import Script
from relay.tasks import cancel_and_wait

__all__ = ["MAX_APPEND_BATCH", "AppendSender"]

# The most appends one pipeline carries.
MAX_APPEND_BATCH = 256


class _QueuedAppend:
    """One append waiting for its turn in a pipeline; `reply` is the script's answer."""

    __slots__ = ("args", "keys", "reply")

    def __init__(self, keys: Sequence[str], args: Sequence[Any]) -> None:
        self.keys = keys
        self.args = args
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
        self._queue: list[_QueuedAppend] = []
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def run(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        call = _QueuedAppend(keys, args)
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

    async def _send_forever(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                batch = self._queue[:MAX_APPEND_BATCH]
                del self._queue[:MAX_APPEND_BATCH]
                await self._send(batch)

    async def _send(self, batch: list[_QueuedAppend]) -> None:
        calls = [call for call in batch if not call.reply.done()]  # callers still there
        if not calls:
            return
        try:
            async with self._commands, self._client.pipeline(transaction=False) as pipe:
                for call in calls:
                    self._script.queue(pipe, call.keys, call.args)
                replies = await pipe.execute(raise_on_error=False)
                for call, reply in zip(calls, replies, strict=True):
                    call.settle(await self._settled(call, reply))
        except Exception as exc:  # handed to every caller, not swallowed
            for call in calls:
                call.settle(exc)
        finally:  # cancelled (the store closes): the batch may or may not have landed
            for call in calls:
                call.settle(StoreUnavailable("the store closed while appending"))

    async def _settled(self, call: _QueuedAppend, reply: Any) -> Any:
        """The script's answer, or the exception its caller raises (a refusal is one)."""
        return await error_reply_as_result(
            self._script.settle(self._client, reply, call.keys, call.args)
        )
