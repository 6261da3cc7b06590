"""`MeasuredStore`: any store, with each operation timed and its failures counted
(`relay_store_operation_seconds`, `relay_store_errors_total`), in this one place
rather than in every store.

`wait` and `wait_signals` (reads that block until an append) and `cancel_requests` (a
listener) are not timed: their time is how long nothing happened. Their failures are counted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TypeVar

from relay.errors import StoreError
from relay.events import Event
from relay.metrics import StoreTimer
from relay.quotas import QuotaLimits, QuotaRefusal
from relay.session import SessionRecord
from relay.store.base import ChatStream, Signal, Store

T = TypeVar("T")

OPERATIONS = (
    "create", "get", "append", "read", "wait", "append_signal", "read_signals", "wait_signals",
    "renew_leases", "lapsed_leases", "read_takeover", "claim_lease",
    "publish_cancel", "cancel_requests", "admit", "release", "count_tokens",
    "set_chat_stream", "chat_stream", "ping",
)  # fmt: skip


class MeasuredStore(Store):
    def __init__(self, store: Store) -> None:
        self.inner = store
        self._timers = {op: StoreTimer(op) for op in OPERATIONS}

    async def _timed(self, op: str, operation: Awaitable[T]) -> T:
        timer = self._timers[op]
        started = time.perf_counter()
        try:
            return await operation
        except StoreError:
            timer.errors.inc()
            raise
        finally:
            timer.seconds.observe(time.perf_counter() - started)

    async def _counted(self, op: str, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except StoreError:
            self._timers[op].errors.inc()
            raise

    async def create(
        self,
        record: SessionRecord,
        takeover: bytes | None = None,
        first: Sequence[Event] = (),
    ) -> SessionRecord:
        return await self._timed("create", self.inner.create(record, takeover, first))

    async def read_takeover(self, session_id: str) -> bytes | None:
        return await self._timed("read_takeover", self.inner.read_takeover(session_id))

    async def get(self, session_id: str) -> SessionRecord | None:
        return await self._timed("get", self.inner.get(session_id))

    async def append(self, session_id: str, events: Sequence[Event]) -> SessionRecord:
        return await self._timed("append", self.inner.append(session_id, events))

    async def append_batch(
        self, session_id: str, seq: int, events: Sequence[Event]
    ) -> SessionRecord:
        return await self._timed("append", self.inner.append_batch(session_id, seq, events))

    async def read(self, session_id: str, after: int, limit: int) -> list[Event]:
        return await self._timed("read", self.inner.read(session_id, after, limit))

    async def wait(self, session_id: str, after: int, limit: int, timeout: float) -> list[Event]:
        return await self._counted("wait", self.inner.wait(session_id, after, limit, timeout))

    async def append_signal(self, session_id: str, data: bytes) -> int:
        return await self._timed("append_signal", self.inner.append_signal(session_id, data))

    async def read_signals(self, session_id: str, after: int, limit: int) -> list[Signal]:
        return await self._timed("read_signals", self.inner.read_signals(session_id, after, limit))

    async def wait_signals(
        self, session_id: str, after: int, limit: int, timeout: float
    ) -> list[Signal]:
        waited = self.inner.wait_signals(session_id, after, limit, timeout)
        return await self._counted("wait_signals", waited)

    async def renew_leases(
        self, owner: str, session_ids: Sequence[str], ttl_s: float | None = None
    ) -> None:
        await self._timed("renew_leases", self.inner.renew_leases(owner, session_ids, ttl_s))

    async def claim_lease(self, session_id: str, owner: str, max_takeovers: int) -> int:
        return await self._timed(
            "claim_lease", self.inner.claim_lease(session_id, owner, max_takeovers)
        )

    async def lapsed_leases(self, limit: int) -> list[str]:
        return await self._timed("lapsed_leases", self.inner.lapsed_leases(limit))

    async def publish_cancel(self, session_id: str) -> None:
        await self._timed("publish_cancel", self.inner.publish_cancel(session_id))

    async def cancel_requests(self) -> AsyncIterator[str]:
        try:
            async for session_id in self.inner.cancel_requests():
                yield session_id
        except StoreError:
            self._timers["cancel_requests"].errors.inc()
            raise

    async def admit(
        self, client: str, session_id: str, limits: QuotaLimits, now: float
    ) -> QuotaRefusal | None:
        return await self._timed("admit", self.inner.admit(client, session_id, limits, now))

    async def release(self, client: str, session_id: str) -> None:
        await self._timed("release", self.inner.release(client, session_id))

    async def count_tokens(self, client: str, tokens: int, now: float) -> None:
        await self._timed("count_tokens", self.inner.count_tokens(client, tokens, now))

    async def set_chat_stream(self, client: str, chat_id: str, stream: ChatStream) -> None:
        await self._timed("set_chat_stream", self.inner.set_chat_stream(client, chat_id, stream))

    async def chat_stream(self, client: str, chat_id: str) -> ChatStream | None:
        return await self._timed("chat_stream", self.inner.chat_stream(client, chat_id))

    async def ping(self) -> None:
        await self._timed("ping", self.inner.ping())

    async def close(self) -> None:
        await self.inner.close()
