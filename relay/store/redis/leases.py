"""Leases on Redis: each running session's lease key, and the index all sessions share.

The lease key (`relay:{<session id>}:lease`, see keys.py) exists while the generating
instance keeps renewing it: its expiry, by Redis's clock, decides whether a lease
lapsed. The lease index scores each running session with its lease deadline (ms, by the
renewer's clock): a shortlist of sessions to check, so that finding the lapsed ones
does not scan every key. `RedisStore.create` writes a session's first lease and index
entry in the round trip that writes its record (`queue_index_entries`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from relay.config import StoreSettings
from relay.events import SessionStatus
from relay.store.base import Leases
from relay.store.redis.boundary import Boundary
from relay.store.redis.codec import ms
from relay.store.redis.connect import Commands, RedisClient
from relay.store.redis.keys import LEASE_INDEX_KEY, session_keys
from relay.store.redis.scripts import CLAIM_SCRIPT

__all__ = ["RedisLeases"]


class RedisLeases(Leases):
    def __init__(
        self,
        client: RedisClient,
        commands: Boundary,
        settings: StoreSettings,
        clock: Callable[[], float],
    ) -> None:
        self._client = client
        self._commands = commands
        self._settings = settings
        self._clock = clock

    async def renew_leases(
        self, owner: str, session_ids: Sequence[str], ttl_s: float | None = None
    ) -> None:
        ttl_ms = ms(ttl_s or self._settings.lease_ttl_s)
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.set(session_keys(session_id).lease, owner, px=ttl_ms)
            self.queue_index_entries(pipe, session_ids, ttl_ms)
            await pipe.execute()

    def queue_index_entries(
        self, pipe: Commands, session_ids: Sequence[str], ttl_ms: int | None = None
    ) -> None:
        """Put these sessions in the lease index as part of `pipe`, due a lease (of
        `ttl_ms`, by default `lease_ttl_s`) from now."""
        deadline_ms = int(self._clock() * 1000) + (ttl_ms or ms(self._settings.lease_ttl_s))
        scored = [part for session_id in session_ids for part in (deadline_ms, session_id)]
        pipe.execute_command("ZADD", LEASE_INDEX_KEY, *scored)

    async def claim_lease(self, session_id: str, owner: str, max_takeovers: int) -> int:
        keys = session_keys(session_id)
        script_keys = [keys.meta, keys.lease]
        args = [owner, ms(self._settings.lease_ttl_s), max_takeovers]
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            CLAIM_SCRIPT.queue(pipe, script_keys, args)
            (reply,) = await pipe.execute(raise_on_error=False)
            takeovers = int(await CLAIM_SCRIPT.settle(self._client, reply, script_keys, args))
        if takeovers:  # its index entry is due again (the new owner renews it from now)
            async with self._commands, self._client.pipeline(transaction=False) as pipe:
                self.queue_index_entries(pipe, [session_id])
                await pipe.execute()
        return takeovers

    async def lapsed_leases(self, limit: int) -> list[str]:
        now_ms = int(self._clock() * 1000)
        async with self._commands:
            due = await self._client.zrangebyscore(LEASE_INDEX_KEY, "-inf", now_ms, 0, limit)
        session_ids = [member.decode() for member in cast(list[bytes], due)]
        if not session_ids:
            return []
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                keys = session_keys(session_id)
                pipe.hget(keys.meta, "status")
                pipe.exists(keys.lease)
            replies = await pipe.execute()
        return await self._sort_lapsed(session_ids, replies[::2], replies[1::2])

    async def _sort_lapsed(
        self, session_ids: list[str], statuses: list[bytes | None], leased: list[int]
    ) -> list[str]:
        """The running sessions without a lease; sessions gone or ended leave the index."""
        lapsed, done = [], []
        for session_id, status, has_lease in zip(session_ids, statuses, leased, strict=True):
            if status is None or SessionStatus(status.decode()).is_final:
                done.append(session_id)
            elif not has_lease:
                lapsed.append(session_id)
        if done:
            async with self._commands:
                await self._client.zrem(LEASE_INDEX_KEY, *done)
        return lapsed
