"""What each chat of the Vercel AI SDK front door streams, on Redis: one string per chat
(keys.py), the `ChatStream` as JSON, set with the longest a session can be kept
(`running_ttl_s + retention_s`), so that it never outlives its session by more.
"""

from __future__ import annotations

import msgspec

from relay.config import StoreSettings
from relay.store.base import ChatStream
from relay.store.redis.boundary import Boundary
from relay.store.redis.codec import ms
from relay.store.redis.connect import RedisClient
from relay.store.redis.keys import chat_key

__all__ = ["RedisChatStreams"]

_decoder = msgspec.json.Decoder(ChatStream)


class RedisChatStreams:
    def __init__(self, client: RedisClient, commands: Boundary, settings: StoreSettings) -> None:
        self._client = client
        self._commands = commands
        self._ttl_ms = ms(settings.running_ttl_s + settings.retention_s)

    async def set_chat_stream(self, client: str, chat_id: str, stream: ChatStream) -> None:
        async with self._commands:
            await self._client.set(
                chat_key(client, chat_id), msgspec.json.encode(stream), px=self._ttl_ms
            )

    async def chat_stream(self, client: str, chat_id: str) -> ChatStream | None:
        async with self._commands:
            value = await self._client.get(chat_key(client, chat_id))
        return None if value is None else _decoder.decode(value)
