"""The cancel bus on Redis: cancel requests published on one pub/sub channel.

Every listener has a subscription (and a connection) of its own, read by a task the bus
owns: closing the store cancels those tasks, which ends their listeners. Pub/sub keeps
nothing, so a listener hears only what is published while it is subscribed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from redis.asyncio.cluster import RedisCluster

from relay.store.base import CancelBus
from relay.store.redis.boundary import Boundary, redis_errors_translated
from relay.store.redis.connect import RedisClient
from relay.store.redis.keys import CANCEL_CHANNEL
from relay.tasks import cancel_and_wait

__all__ = ["RedisCancelBus"]

# What a subscription's task passes its listener: a session id, the error that ended
# it, or None for its end.
_Heard = str | Exception | None


class RedisCancelBus(CancelBus):
    def __init__(self, client: RedisClient, commands: Boundary) -> None:
        self._client = client
        self._commands = commands
        self._subscriptions: set[asyncio.Task[None]] = set()
        self._closed = False

    async def publish_cancel(self, session_id: str) -> None:
        async with self._commands:
            await self._client.publish(CANCEL_CHANNEL, session_id)

    async def cancel_requests(self) -> AsyncIterator[str]:
        if self._closed:
            return
        heard: asyncio.Queue[_Heard] = asyncio.Queue()
        subscription = asyncio.create_task(self._subscribe(heard), name="relay cancel requests")
        # The bus owns it until it has ended: a listener cancelled again while it waits
        # for its subscription below would otherwise leave it running, owned by no one.
        self._subscriptions.add(subscription)
        subscription.add_done_callback(self._subscriptions.discard)
        try:
            while (item := await heard.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            await cancel_and_wait([subscription])

    async def _subscribe(self, heard: asyncio.Queue[_Heard]) -> None:
        """Pass on each cancel published, until the subscription ends or fails."""
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            with redis_errors_translated():
                if isinstance(self._client, RedisCluster):
                    # Routing SUBSCRIBE takes the slot map, which a client that has
                    # sent nothing yet has not loaded.
                    await self._client.initialize()
                await pubsub.subscribe(CANCEL_CHANNEL)
                async for message in pubsub.listen():
                    heard.put_nowait(message["data"].decode())
        except Exception as exc:  # not swallowed: the listener raises it
            heard.put_nowait(exc)
        finally:
            heard.put_nowait(None)
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # untyped before redis 8.2

    async def aclose(self) -> None:
        """End every listener: each hears what came before, then its iteration ends."""
        self._closed = True
        await cancel_and_wait(self._subscriptions)
