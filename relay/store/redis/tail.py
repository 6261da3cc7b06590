"""The live tail: one blocking reader per session being waited on in this process.

Waiters on one session share one tail: a task doing a short blocking XREAD on that
session's stream and handing new events to all of them. So the number of connections
grows with the sessions being watched, not with the waiters. Events appended by this
process are handed to its tail as soon as they are stored, without waiting for the
XREAD; waiters on other instances hear of them through theirs.

A session created here gets its tail at once, seeded with its first events and fed
this process's appends, so that its subscribers here (the creator's own stream, most
often) need no read of their own before its first token. Until its first waiter comes
such a tail has no task and keeps only the last few events handed to it
(UNWATCHED_RECENT_EVENTS): a session nobody follows here costs no task and no read,
and at most UNWATCHED_TAILS are kept.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster

from relay.events import Event
from relay.store.redis.connect import RedisClient
from relay.tasks import cancel_and_wait
from relay.vocabulary import session_tag

__all__ = [
    "APPEND_QUIET_S",
    "BLOCK_MS",
    "LINGER_READS",
    "RECENT_EVENTS",
    "UNWATCHED_RECENT_EVENTS",
    "UNWATCHED_TAILS",
    "SessionTail",
    "SessionTails",
    "Waiter",
    "xread_blocking",
]

# Short enough that an idle tail notices soon that its waiters have gone (or that the
# session expired), long enough to cost nothing while waiting.
BLOCK_MS = 500
# Blocking reads a tail goes on with after its last waiter took its events: subscribers
# come straight back for more, and find it still reading (no read of their own).
LINGER_READS = 1
# Events a tail keeps after handing them out, for waiters a little behind.
RECENT_EVENTS = 1024
# After an append in this process handed a session's tail its events, the tail reads
# nothing for this long: this process's appends keep coming and are handed over
# directly, and a blocking read would only bring them again, a round trip per append.
# Appends from elsewhere (a fence write after a lapsed lease) are read once it passes.
APPEND_QUIET_S = 0.5
# Tails of sessions created here that no waiter has joined yet, kept at most; past it
# the oldest is dropped (its first waiter reads the store, like one on another instance).
UNWATCHED_TAILS = 4096
# The events such a tail keeps: a generation may store its first token before the
# creator's own stream first waits (it starts before the creation is answered), and
# that stream, reading from the start, then finds the first status, the `generating`
# status and the first token here rather than in a read of its own.
UNWATCHED_RECENT_EVENTS = 8

# A tail's blocking read: the events after the cursor it is given.
ReadNew = Callable[[int], Awaitable[list[Event]]]


async def xread_blocking(
    client: RedisClient, key: str, after: str, count: int, block_ms: int = BLOCK_MS
) -> Any:
    """XREAD COUNT count BLOCK block_ms STREAMS key after (`block_ms` ≥ 1: 0 is forever)."""
    block_ms = max(1, block_ms)
    if not isinstance(client, RedisCluster):
        return await client.xread({key: after}, count=count, block=block_ms)
    # XREAD's key has no fixed position, so redis-py would ask a node where it is
    # (COMMAND GETKEYS) before every read; the key's slot already says which node.
    await client.initialize()  # returns at once unless the slot map needs a refresh
    node = client.get_node_from_key(key)
    return await client.execute_command(
        "XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS", key, after, target_nodes=node
    )


class Waiter:
    """One `wait` call parked on a tail, until events after `after` arrive."""

    __slots__ = ("after", "future", "limit")

    def __init__(self, after: int, limit: int) -> None:
        self.after = after
        self.limit = limit
        self.future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()

    def offer(self, events: list[Event]) -> bool:
        """Take the events this waiter wants; True when it has been answered."""
        if self.future.done():
            return True
        fresh = [event for event in events if event.id > self.after][: self.limit]
        # A terminal event answers everyone: nothing more will come after it.
        if fresh or events[-1].is_terminal:
            self.future.set_result(fresh)
            return True
        return False


class SessionTail:
    """The one blocking reader of a session's stream in this process, shared by its waiters.

    `cursor` is the id of an event known to exist (or 0), and every event after it is
    handed to the waiters then present, once: from its own reads, or earlier from an
    append in this process (the read in flight then brings them again, and they are
    dropped); while such appends keep coming it does not read at all, and reads again
    `APPEND_QUIET_S` after the last. A waiter that joins with `after` below the
    cursor may need events already handed out, so it is sent back to read them.
    The task runs while there are waiters, and one blocking read longer, so that waiters
    who took their events and come straight back find it still reading and need no read
    of their own; `aclose` cancels it and wakes them all.
    """

    def __init__(
        self,
        session_id: str,
        cursor: int,
        read_new: ReadNew,
        on_exit: Callable[[SessionTail], None],
        *,
        append_quiet_s: float = APPEND_QUIET_S,
    ) -> None:
        self.session_id = session_id
        self._cursor = cursor
        self._append_quiet_s = append_quiet_s
        self._appended_at = -math.inf  # when an append here last handed it events
        self._read_new = read_new
        self._on_exit = on_exit
        self._waiters: set[Waiter] = set()
        self._task: asyncio.Task[None] | None = None
        self._ended = False  # it handed out the terminal event
        # The events it handed out last, for waiters a little behind (e.g. still writing
        # the previous batch to a slow socket); ids are consecutive, so they index it.
        self._recent: collections.deque[Event] = collections.deque(maxlen=RECENT_EVENTS)

    def caught_up(self, after: int) -> bool:
        """True when a waiter after `after` needs nothing this tail has already seen."""
        return not self._ended and after == self._cursor

    def recent_after(self, after: int, limit: int) -> list[Event]:
        """Events after `after` from those recently handed out; [] when they do not
        reach back that far (the caller reads the store) or there are none yet."""
        if not self._recent or not self._recent[0].id <= after + 1 <= self._recent[-1].id:
            return []
        start = after + 1 - self._recent[0].id
        return list(itertools.islice(self._recent, start, start + limit))

    def join(self, after: int, limit: int) -> Waiter | None:
        if after < self._cursor:
            return None
        waiter = Waiter(after, limit)
        self._waiters.add(waiter)
        if self._task is None:
            self._task = asyncio.create_task(
                self._run(), name=f"relay tail {session_tag(self.session_id)}"
            )
        return waiter

    def leave(self, waiter: Waiter) -> None:
        self._waiters.discard(waiter)

    def take_appended(self, events: Sequence[Event]) -> None:
        """Events this process just appended: its waiters need not wait for the read
        that will bring them (and that the cursor then skips), and while such appends
        keep coming the tail does not read (APPEND_QUIET_S)."""
        # Also when the read in flight brought them first: appends here keep coming.
        if self._take(events) or (events and events[-1].id <= self._cursor):
            self._appended_at = asyncio.get_running_loop().time()

    def _take(self, events: Sequence[Event]) -> bool:
        """Hand out the events after the cursor, each once and in order. Events that do
        not follow on from it (another instance appended some in between) are left to
        the reads, which bring every event after the cursor. True if any were new."""
        fresh = [event for event in events if event.id > self._cursor]
        if self._ended or not fresh or fresh[0].id != self._cursor + 1:
            return False
        self._cursor = fresh[-1].id
        self._ended = fresh[-1].is_terminal
        self._recent.extend(fresh)
        if self._task is None:  # nobody has waited yet: the last few events are enough
            while len(self._recent) > UNWATCHED_RECENT_EVENTS:
                self._recent.popleft()
        self._hand_out(fresh)
        return True

    @property
    def watched(self) -> bool:
        """A waiter has joined it (its task has started)."""
        return self._task is not None

    @property
    def ended(self) -> bool:
        """It handed out the terminal event."""
        return self._ended

    def wake(self) -> None:
        """Answer every waiter with nothing now, so that each reads the store again."""
        self._hand_out_nothing()

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        # A task cancelled before its first step never ran its `finally`.
        self._hand_out_nothing()

    async def _run(self) -> None:
        try:
            reads_without_waiters = 0
            while reads_without_waiters <= LINGER_READS and not self._ended:
                quiet = await self._quiet_after_appends()
                events = [] if quiet else await self._read_new(self._cursor)
                # Counted before the hand-out, which removes the waiters it answers.
                had_waiters = bool(self._waiters)
                self._take(events)
                reads_without_waiters = 0 if had_waiters else reads_without_waiters + 1
        except Exception as exc:  # not swallowed: every waiter raises it
            self._fail(exc)
        finally:
            self._on_exit(self)
            self._hand_out_nothing()

    async def _quiet_after_appends(self) -> bool:
        """Sleep out the quiet time after this process's last append, if it has not
        passed; False when it has, and the tail must read."""
        remaining = self._appended_at + self._append_quiet_s - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        await asyncio.sleep(remaining)
        return True

    def _hand_out(self, events: list[Event]) -> None:
        answered = {waiter for waiter in self._waiters if waiter.offer(events)}
        self._waiters -= answered

    def _fail(self, exc: Exception) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(exc)
        self._waiters.clear()

    def _hand_out_nothing(self) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_result([])
        self._waiters.clear()


class SessionTails:
    """The tails of one store, one per session waited on here, each gone once it stops.

    `read_new(session_id)` gives the blocking read of a session's tail.
    """

    def __init__(
        self, read_new: Callable[[str], ReadNew], unwatched_limit: int = UNWATCHED_TAILS
    ) -> None:
        self._read_new = read_new
        self._tails: dict[str, SessionTail] = {}
        # Tails of sessions created here that no waiter joined yet, oldest first.
        self._unwatched: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._unwatched_limit = unwatched_limit

    def get(self, session_id: str) -> SessionTail | None:
        return self._tails.get(session_id)

    def created(self, session_id: str, first: Sequence[Event]) -> None:
        """A session this process created with `first` as its first events: its tail
        starts after them, without a task until its first waiter."""
        tail = SessionTail(session_id, 0, self._read_new(session_id), self._forget)
        tail.take_appended(first)
        self._tails[session_id] = tail
        self._unwatched[session_id] = None
        if len(self._unwatched) > self._unwatched_limit:
            oldest, _ = self._unwatched.popitem(last=False)
            self._tails.pop(oldest, None)

    async def wait_on(
        self, session_id: str, top: int, after: int, limit: int, timeout: float
    ) -> list[Event] | None:
        """Events handed over by the session's tail, started at `top` (the session's
        last id) if it had none; [] on timeout; None: the caller must read again."""
        tail = self._tails.get(session_id)
        if tail is None:
            tail = SessionTail(session_id, top, self._read_new(session_id), self._forget)
            self._tails[session_id] = tail
        waiter = tail.join(after, limit)
        if waiter is None:
            return None
        self._unwatched.pop(session_id, None)  # its task runs now
        try:
            # Its own future, awaited directly: the caller resumes in the loop turn that
            # answers it (wait_for's wrapper would take one more).
            async with asyncio.timeout(timeout):
                return await waiter.future
        except TimeoutError:
            return []
        finally:
            tail.leave(waiter)

    def take_appended(self, session_id: str, events: Sequence[Event]) -> None:
        """Events this process appended: the session's waiters here wake now, not when
        the tail's read returns."""
        tail = self._tails.get(session_id)
        if tail is not None:
            tail.take_appended(events)
            if tail.ended and not tail.watched:  # nobody will wait on it now
                self._drop_unwatched(session_id)

    def wake(self, session_id: str) -> None:
        """The session's waiters here read the store again at once (an append here found
        it gone or ended), rather than at the end of their wait."""
        tail = self._tails.get(session_id)
        if tail is not None:
            tail.wake()
            if not tail.watched:
                self._drop_unwatched(session_id)

    async def aclose(self) -> None:
        tails = list(self._tails.values())
        self._tails.clear()
        self._unwatched.clear()
        await asyncio.gather(*(tail.aclose() for tail in tails))

    def _drop_unwatched(self, session_id: str) -> None:
        del self._tails[session_id]
        self._unwatched.pop(session_id, None)

    def _forget(self, tail: SessionTail) -> None:
        if self._tails.get(tail.session_id) is tail:
            del self._tails[tail.session_id]
