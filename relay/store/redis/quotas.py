"""Quotas on Redis: each client's slots and per-minute counts (keys.py names them).

Admission is one script on the client's keys (scripts.py `ADMIT_SCRIPT`), so two
instances admitting at once are served one after the other. A client's keys share one
Cluster slot (its hash tag); a session's keys are elsewhere, so finding stale slots
is a second step, outside the script: when the slots look full, the record of each
holder is read (a pipeline), the stale are removed and admission is tried once more.
"""

from __future__ import annotations

from typing import Any, cast

from relay.errors import StoreError
from relay.events import SessionStatus
from relay.quotas import (
    STALE_SLOT_GRACE_S,
    QuotaLimits,
    QuotaRefusal,
    Window,
    minute_of,
    refuse_by_concurrency,
    refuse_by_windows,
    weight_at,
)
from relay.store.base import Quotas
from relay.store.redis.boundary import Boundary
from relay.store.redis.connect import RedisClient
from relay.store.redis.keys import QUOTA_COUNT_TTL_MS, QuotaKeys, quota_keys, session_keys
from relay.store.redis.scripts import ADMIT_SCRIPT

__all__ = ["RedisQuotas"]


class RedisQuotas(Quotas):
    def __init__(self, client: RedisClient, commands: Boundary) -> None:
        self._client = client
        self._commands = commands

    async def admit(
        self, client: str, session_id: str, limits: QuotaLimits, now: float
    ) -> QuotaRefusal | None:
        keys = quota_keys(client)
        refusal = await self._try_admit(keys, session_id, limits, now)
        full = refusal is not None and refusal.limit == "max_concurrent_sessions"
        if full and await self._drop_stale(keys, now, limits.max_concurrent_sessions or 0):
            refusal = await self._try_admit(keys, session_id, limits, now)
        return refusal

    async def _try_admit(
        self, keys: QuotaKeys, session_id: str, limits: QuotaLimits, now: float
    ) -> QuotaRefusal | None:
        minute = minute_of(now)
        script_keys = [
            keys.slots,
            keys.requests_in(minute - 1),
            keys.requests_in(minute),
            keys.tokens_in(minute - 1),
            keys.tokens_in(minute),
        ]
        args: list[Any] = [
            repr(weight_at(now)),
            limits.requests_per_minute or 0,
            limits.tokens_per_minute or 0,
            limits.max_concurrent_sessions or 0,
            session_id,
            int(now * 1000),
            QUOTA_COUNT_TTL_MS,
        ]
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            ADMIT_SCRIPT.queue(pipe, script_keys, args)
            (reply,) = await pipe.execute(raise_on_error=False)
            reply = await ADMIT_SCRIPT.settle(self._client, reply, script_keys, args)
        admitted, rp, rc, tp, tc, running = (int(n) for n in cast(list[int], reply))
        if admitted:
            return None
        refusal = refuse_by_windows(limits, Window(rp, rc, now), Window(tp, tc, now))
        refusal = refusal or refuse_by_concurrency(limits, running)
        if refusal is None:
            raise StoreError("the admission script refused a client its limits admit")
        return refusal

    async def _drop_stale(self, keys: QuotaKeys, now: float, limit: int) -> bool:
        """Remove the slots of sessions that ended, or whose record is gone after the
        grace; whether any were, or were given back since the refusal (a session of
        the client ended meanwhile: its writer gives the slot back just before the
        terminal event, and this admission raced that). A slot whose release failed is
        found here as its session's ended record."""
        async with self._commands:
            holders = await self._client.zrange(keys.slots, 0, -1, withscores=True)
        held = [(sid.decode(), score) for sid, score in cast(list[tuple[bytes, float]], holders)]
        if len(held) < limit:
            return True
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            for session_id, _ in held:
                pipe.hget(session_keys(session_id).meta, "status")
            statuses = cast(list[bytes | None], await pipe.execute())
        stale = [
            session_id
            for (session_id, admitted_ms), status in zip(held, statuses, strict=True)
            if _is_stale(status, admitted_ms, now)
        ]
        if stale:
            async with self._commands:
                await self._client.zrem(keys.slots, *stale)
        return bool(stale)

    async def release(self, client: str, session_id: str) -> None:
        async with self._commands:
            await self._client.zrem(quota_keys(client).slots, session_id)

    async def count_tokens(self, client: str, tokens: int, now: float) -> None:
        key = quota_keys(client).tokens_in(minute_of(now))
        async with self._commands, self._client.pipeline(transaction=False) as pipe:
            pipe.incrby(key, tokens)
            pipe.pexpire(key, QUOTA_COUNT_TTL_MS)
            await pipe.execute()


def _is_stale(status: bytes | None, admitted_ms: float, now: float) -> bool:
    if status is None:
        return now - admitted_ms / 1000 > STALE_SLOT_GRACE_S
    return SessionStatus(status.decode()).is_final
