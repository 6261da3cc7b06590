"""Where calls cross into Redis, and the one place redis-py's exceptions are caught.

They leave the store as `StoreUnavailable` (cannot reach or use Redis now:
connection, timeout, cluster down, no master known to the Sentinels, this process out
of file descriptors, …) or `StoreError`; the append script's refusals become the
exceptions `EventLog.append` documents. Each call passes one of the store's two
`Boundary`s: commands (at most `max_connections` at once, each waiting up to
POOL_TIMEOUT_S for its turn) and the tails' blocking reads (`max_tail_connections`,
waiting as long as it takes), so blocking reads never starve commands.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from types import TracebackType
from typing import Any

import redis.exceptions
from redis.asyncio.sentinel import MasterNotFoundError

from relay.errors import (
    AppendConflict,
    EventLimitReached,
    SessionEnded,
    SessionNotFound,
    SignalLimitReached,
    StoreError,
    StoreUnavailable,
)
from relay.vocabulary import session_tag

__all__ = [
    "AppendRefusals",
    "Boundary",
    "error_reply_as_result",
    "redis_errors_translated",
    "translated",
]

# Failures that mean "Redis cannot serve now", worth retrying later.
_UNAVAILABLE_ERRORS = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError
    MasterNotFoundError,  # no Sentinel named a master (a ConnectionError too)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica after failover
    redis.exceptions.ClusterError,  # includes ClusterDownError, MasterDownError
    redis.exceptions.TryAgainError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.RedisClusterException,  # includes SlotNotCoveredError; not a RedisError
    # What redis-py lets through untranslated: at the descriptor limit, a new connection
    # fails reading the package's own metadata (EMFILE) before it opens a socket.
    OSError,
)

# The append script's refusals, by the first word of its error reply (see scripts.py).
_SCRIPT_REFUSALS = frozenset(
    {"RELAY_NOT_FOUND", "RELAY_ENDED", "RELAY_CONFLICT", "RELAY_LIMIT", "RELAY_SIGNAL_LIMIT"}
)


def translated(exc: BaseException) -> StoreError | None:
    """The relay exception for a redis exception, or an `OSError` raised inside the client;
    None for any other."""
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        return StoreUnavailable(f"redis is unavailable: {exc}")
    if isinstance(exc, redis.exceptions.RedisError):
        return StoreError(f"redis failed: {exc}")
    return None


@contextlib.contextmanager
def redis_errors_translated() -> Iterator[None]:
    """Redis exceptions raised inside become relay's; every other passes unchanged."""
    try:
        yield
    except Exception as exc:
        relay_error = translated(exc)
        if relay_error is None:
            raise
        raise relay_error from exc


class Boundary:
    """At most `limit` calls into Redis at once, and redis's exceptions become relay's
    on the way out (`async with boundary: ...`).

    A call waits for its turn up to `wait_s` (None: as long as it takes).
    """

    def __init__(self, limit: int, wait_s: float | None) -> None:
        self._turns = asyncio.Semaphore(limit)
        self._wait_s = wait_s

    async def __aenter__(self) -> None:
        if self._wait_s is None or not self._turns.locked():
            await self._turns.acquire()
            return
        try:
            async with asyncio.timeout(self._wait_s):
                await self._turns.acquire()
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"no redis connection was free within {self._wait_s:g} s"
            ) from exc

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._turns.release()
        relay_error = None if exc is None else translated(exc)
        if relay_error is not None:
            raise relay_error from exc


async def error_reply_as_result(reply: Awaitable[Any]) -> Any:
    """The awaited reply, or the error reply (`ResponseError`) Redis gave instead,
    returned rather than raised: in a pipeline it is one call's answer, not a failure of
    the whole pipeline."""
    try:
        return await reply
    except redis.exceptions.ResponseError as exc:
        return exc


class AppendRefusals:
    """The append script's error replies, raised inside, become the exceptions
    `EventLog.append` documents; any other error reply a `StoreError`
    (`with AppendRefusals(session_id, first_id): ...`)."""

    # A class, not a generator context manager: it wraps every append.
    __slots__ = ("first_id", "session_id")

    def __init__(self, session_id: str, first_id: int) -> None:
        self.session_id = session_id
        self.first_id = first_id

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, redis.exceptions.ResponseError):
            raise _append_refusal(self.session_id, self.first_id, exc) from exc


def _append_refusal(
    session_id: str, first_id: int, exc: redis.exceptions.ResponseError
) -> StoreError:
    code, _, detail = str(exc).partition(" ")
    if code not in _SCRIPT_REFUSALS:
        return StoreError(f"redis failed: {exc}")
    session = f"session {session_tag(session_id)}"  # messages are logged: no ids
    if code == "RELAY_NOT_FOUND":
        return SessionNotFound(session)
    if code == "RELAY_ENDED":
        return SessionEnded(f"{session} has ended")
    if code == "RELAY_CONFLICT":
        return AppendConflict(f"{session}: expected event {detail}, got {first_id}")
    if code == "RELAY_SIGNAL_LIMIT":
        return SignalLimitReached(f"{session} reached {detail} signals")
    return EventLimitReached(f"{session} reached {detail} events")
