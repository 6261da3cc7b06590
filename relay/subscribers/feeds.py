"""Live feeds: one follow of a session's log per instance, shared by its SSE subscribers.

A subscriber first replays the log from its resume point with plain store reads; once
a read comes back short (it has caught up), it joins the session's feed — after
reading whatever the feed has passed meanwhile, so the join has no gap and no
duplicate. The feed runs `follow` once for everyone: each new batch is encoded once
per wire format and put in every subscriber's inbox; an idle beat puts a `: ping`
there. A feed ends after the terminal event (`session_lost` when the log vanished
before its end: see `relay.subscribers.follow`), or when the store stayed unreachable
too long, and it is stopped when its last subscriber leaves.

An encoder that raises (a renderer's bug, or data it cannot read) ends the streams it
encodes for, not the feed: the frames of the events before the one it failed on go
out, then the stream raises what it raised, and its SSE response ends with an in-band
error (`relay.subscribers.sse`). The subscribers of other encoders go on.

A replay reads the log a batch (`store.read_batch` events) at a time, the next batch's
read in flight while the current one is written (`relay.subscribers.backlog`), and
writes it a piece (about 64 KiB, or a slice of events) at a time, with other
tasks let in between two pieces: rendering a long log in a wire format is CPU work
that no store read or socket write is sure to interrupt (`relay.subscribers.slices`).

A subscriber that has written all it got and waits for more gets the next frames
written to its connection by the feed itself, at once (`Connection.write_now`), as its
stream would have written them; one still busy writing, or whose socket has bytes
unsent, gets them in its inbox, and its task writes them. The feed never waits for a
subscriber, and no subscriber makes relay hold more than `buffer_bytes` for it
(`limits.subscriber_buffer_bytes`): what its inbox holds plus what its connection has
not sent yet. Past that, when its socket is backed up (its
client stopped reading, or reads too slowly), the connection is dropped at once; every frame
relay wrote to it was whole, so its client's Last-Event-ID is the last event it got
entire (an SSE parser drops an event the connection cut short) and it resumes from
there, losing nothing. When the socket is not backed up (the subscriber's task lags,
not its client), it leaves the feed instead: it writes what its inbox holds, then
catches up from the store like a resuming client and joins again.
`Feeds` owns every feed task: `close()` ends the streams and awaits the tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Iterable, Iterator, Sequence
from typing import NamedTuple, NoReturn, Protocol

from relay import log_context, sse
from relay.errors import StoreError, StoreUnavailable
from relay.events import Event, sse_frames
from relay.metrics import TIMELINE
from relay.store import Store
from relay.subscribers.backlog import backlog
from relay.subscribers.follow import Outage, follow, is_session_lost, session_lost
from relay.subscribers.formats import WireRenderer
from relay.subscribers.slices import (
    EVENTS_PER_SLICE,
    NATIVE_EVENTS_PER_SLICE,
    let_others_run,
    prime,
)
from relay.subscribers.sse import EventEncoder, native_frame
from relay.tasks import cancel_and_wait
from relay.vocabulary import session_tag

log = logging.getLogger(__name__)

# What relay may hold for one subscriber (`limits.subscriber_buffer_bytes`'s default).
BUFFER_BYTES = 1 << 20
# A replay's writes: about what a transport buffers before it pauses.
PIECE_BYTES = 64 * 1024
# relay's own frames are made this many at a time (`relay.events.sse_frames`): most of
# the gain of one pass, and a piece of large events ends near PIECE_BYTES all the same.
NATIVE_FRAMES_AT_ONCE = 16


class Connection(Protocol):
    """A subscriber's connection, as far as its feed needs to know it."""

    def unsent(self) -> int:
        """Bytes written to it that its socket has not taken yet."""
        ...

    def drop(self) -> None:
        """Close it at once, without sending what is still unsent."""
        ...

    def write_now(self, frames: bytes) -> bool:
        """Write whole frames at once, as its stream would, if it can take them without
        a wait (nothing unsent, its headers sent); False, having written nothing, if not."""
        ...


def share_key(encode: EventEncoder) -> Hashable | None:
    """Subscribers whose encoders have the same key get the same bytes for an event;
    None: this encoder's output is its own (see `WireRenderer.share_key`)."""
    if encode is native_frame:
        return "native"
    if isinstance(encode, WireRenderer):
        return encode.share_key()
    return None


class Encoded(NamedTuple):
    """An encoder's frames for a batch, up to the event with id `last_id`; `error` is
    what it raised on the next event, if it did (the rest were not encoded)."""

    frames: bytes
    last_id: int
    error: Exception | None = None

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def encode_batch(encode: EventEncoder, events: Iterable[Event], after: int) -> Encoded:
    """`events` (those after event `after`) encoded, as far as the encoder gets."""
    frames: list[bytes] = []
    last_id = after
    for event in events:
        try:
            frames.append(encode(event))
        except Exception as exc:  # carried to the stream that owns the encoder
            return Encoded(b"".join(frames), last_id, exc)
        last_id = event.id
    return Encoded(b"".join(frames), last_id)


def replay_frames(
    encode: EventEncoder,
    events: Sequence[Event],
    piece_bytes: int = PIECE_BYTES,
    piece_events: int | None = None,
) -> Iterator[bytes]:
    """The frames of `events`, about `piece_bytes` or `piece_events` events at a time
    (by default `EVENTS_PER_SLICE`, or `NATIVE_EVENTS_PER_SLICE` for relay's own frames,
    which cost far less each): a client that stops reading during a replay holds up one
    piece, not a whole read batch, and the caller can let other tasks run between pieces.
    A piece is empty when its events gave no frames (a Responses stream skips what its
    client has). Raises what `encode` raised, after the frames of the events before."""
    per_piece = piece_events or (
        NATIVE_EVENTS_PER_SLICE if encode is native_frame else EVENTS_PER_SLICE
    )
    step = NATIVE_FRAMES_AT_ONCE if encode is native_frame else 1
    frames: list[bytes] = []
    size = count = 0
    for start in range(0, len(events), step):
        part = events[start : start + step]
        made, error = _frames(encode, part)
        frames += made
        size, count = size + sum(map(len, made)), count + len(part)
        if error is not None:
            if frames:
                yield b"".join(frames)
            raise error
        if size >= piece_bytes or count >= per_piece:
            yield b"".join(frames)
            frames, size, count = [], 0, 0
    if count:
        yield b"".join(frames)


def _frames(encode: EventEncoder, events: Sequence[Event]) -> tuple[list[bytes], Exception | None]:
    """The frames of `events`, and what `encode` raised on the next one if it did.
    relay's own frames are made in one pass, joined (`sse_frames`)."""
    if encode is native_frame:
        return [sse_frames(events)], None
    frames: list[bytes] = []
    for event in events:
        try:
            frames.append(encode(event))
        except Exception as exc:  # raised to the stream after the frames before it
            return frames, exc
    return frames, None


async def replayed(encode: EventEncoder, events: Sequence[Event]) -> AsyncIterator[bytes]:
    """`replay_frames`' pieces that hold frames, with a pause after every piece."""
    for piece in replay_frames(encode, events):
        if piece:
            yield piece
        await let_others_run()


class Inbox:
    """What the feed has put out for one subscriber that it has not written yet."""

    def __init__(
        self, position: int, encode: EventEncoder, connection: Connection | None = None
    ) -> None:
        self.position = position  # the id of the last event put here
        self.encode = encode
        self.connection = connection
        self.key: Hashable | None = None  # the key of the shared encoder it gets bytes from
        self.shared_since: int | None = None  # its position when it began to
        self.overflowed = False
        self.ended = False
        self.error: Exception | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._wake: asyncio.Future[None] | None = None

    def unsent(self) -> int:
        """What waits for its client beyond the inbox: the connection's unsent bytes."""
        return self.connection.unsent() if self.connection is not None else 0

    @property
    def size(self) -> int:
        return self._size

    def put(self, frames: bytes, last_id: int) -> bool:
        """Hand over the frames up to event `last_id`; True when they went straight to
        the connection (see `_written_now`), False when they wait here for the task."""
        self.position = last_id
        if not frames:
            return False
        if self._written_now(frames):
            return True
        self._add(frames)
        return False

    def _written_now(self, frames: bytes) -> bool:
        """A subscriber's task that waits here with nothing left to write has written
        everything before these frames, so they can go to its connection at once,
        in order, without waking the task: a broadcast to many subscribers is then a
        socket write each, not a task step, a future and a write through aiohttp each."""
        parked = self._wake is not None and not self._wake.done() and not self._chunks
        return parked and self.connection is not None and self.connection.write_now(frames)

    def render(self, events: list[Event]) -> Encoded:
        """The events it does not have yet, with its own encoder."""
        missing = (event for event in events if event.id > self.position)
        return encode_batch(self.encode, missing, self.position)

    def beat(self) -> None:
        if not self._chunks:
            self._add(sse.PING)

    def overflow(self) -> None:
        """Its client reads too slowly to follow live: it catches up from the store."""
        self.overflowed = True
        self._notify()

    def drop(self) -> None:
        """Its client stopped reading: its connection is closed, what it holds freed."""
        self._chunks, self._size = [], 0
        if self.connection is not None:
            self.connection.drop()
        self.end()

    def end(self, error: Exception | None = None) -> None:
        self.ended, self.error = True, error
        self._notify()

    async def take(self) -> list[bytes]:
        """Everything put here since the last call; [] once it is ended or overflowed."""
        while not self._chunks and not (self.ended or self.overflowed):
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None
        chunks, self._chunks, self._size = self._chunks, [], 0
        return chunks

    def _add(self, frames: bytes) -> None:
        self._chunks.append(frames)
        self._size += len(frames)
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)


class Feed:
    """A session's live events, read once and handed to its subscribers' inboxes."""

    def __init__(self, session_id: str, position: int, buffer_bytes: int = BUFFER_BYTES) -> None:
        self.session_id = session_id
        self.position = position  # the id of the last event handed out
        self.buffer_bytes = buffer_bytes
        self.ended = False
        self.task: asyncio.Task[None] | None = None
        self._inboxes: set[Inbox] = set()
        # One encoder per share key, advanced once per batch, and how many inboxes use it.
        self._encoders: dict[Hashable, tuple[EventEncoder, int]] = {}

    @property
    def idle(self) -> bool:
        return not self._inboxes

    def attach(
        self, after: int, encode: EventEncoder, connection: Connection | None = None
    ) -> Inbox:
        """An inbox for a subscriber that has every event up to `after` (>= position)."""
        inbox = Inbox(after, encode, connection)
        self._inboxes.add(inbox)
        if after == self.position:
            self._share(inbox)
        return inbox

    def detach(self, inbox: Inbox) -> None:
        if inbox not in self._inboxes:
            return
        self._inboxes.discard(inbox)
        if inbox.key is None:
            return
        shared, users = self._encoders[inbox.key]
        if users > 1:
            self._encoders[inbox.key] = (shared, users - 1)
        else:
            del self._encoders[inbox.key]

    def deliver(self, events: list[Event]) -> None:
        """One step of the follow: a batch for every inbox, or [] for an idle beat."""
        if not events:
            for inbox in self._inboxes:
                inbox.beat()
            return
        before, self.position = self.position, events[-1].id
        encoded = {
            key: encode_batch(encode, events, before) for key, (encode, _) in self._encoders.items()
        }
        for inbox in list(self._inboxes):
            if inbox.size and self._left_behind(inbox):
                continue
            if inbox.key is not None:
                self._put(inbox, encoded[inbox.key])
            else:
                self._deliver_ahead(inbox, events)

    def _left_behind(self, inbox: Inbox) -> bool:
        """Whether the inbox holds too much to get more: its connection is dropped when
        its socket is backed up, else it leaves to catch up from the store."""
        unsent = inbox.unsent()
        if inbox.size + unsent < self.buffer_bytes:
            return False
        if unsent:
            log.info(
                "disconnected a subscriber that reads too slowly: %d bytes waited for it"
                " after event %d (limits.subscriber_buffer_bytes)",
                inbox.size + unsent,
                inbox.position,
            )
            inbox.drop()
        else:
            tag = session_tag(self.session_id)
            log.debug("a subscriber of %s fell behind at %d", tag, inbox.position)
            inbox.overflow()
        self.detach(inbox)
        return True

    def _deliver_ahead(self, inbox: Inbox, events: list[Event]) -> None:
        """An inbox that joined ahead of the feed (it read events the feed had not yet):
        it renders what it lacks on its own, and shares once the feed has caught up.
        A `session_lost` made for the feed's position is made again for the inbox's."""
        if is_session_lost(events[-1]) and events[-1].id <= inbox.position:
            events = [session_lost(inbox.position)]
        if self._put(inbox, inbox.render(events)) and inbox.position == self.position:
            self._share(inbox)

    def _put(self, inbox: Inbox, encoded: Encoded) -> bool:
        """Hand over what was encoded; False when the encoder failed, which ends the inbox
        with its error."""
        if inbox.put(encoded.frames, encoded.last_id):
            TIMELINE.delivered(self.session_id, encoded.last_id, live=True)
        if encoded.error is None:
            return True
        self.detach(inbox)
        inbox.end(encoded.error)
        return False

    def end(self, error: Exception | None = None) -> None:
        self.ended = True
        for inbox in self._inboxes:
            inbox.end(error)
        self._inboxes.clear()
        self._encoders.clear()

    def _share(self, inbox: Inbox) -> None:
        """At the feed's position, a subscriber's encoder is in the state of the shared
        one of its key: from now on it gets the shared bytes. The first of a key lends
        a copy of its encoder; it keeps its own for when it falls behind."""
        key = share_key(inbox.encode)
        if key is None:
            return
        shared, users = self._encoders.get(key) or (copy.deepcopy(inbox.encode), 0)
        self._encoders[key] = (shared, users + 1)
        inbox.key, inbox.shared_since = key, inbox.position


class Feeds:
    """This instance's feeds, by session id."""

    def __init__(
        self,
        store: Store,
        *,
        heartbeat_s: float,
        batch: int,
        outage_s: float,
        buffer_bytes: int = BUFFER_BYTES,
    ) -> None:
        self._store = store
        self._buffer_bytes = buffer_bytes
        self._heartbeat_s = heartbeat_s
        self._batch = batch
        self._outage_s = outage_s
        self._feeds: dict[str, Feed] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        """How many feeds run."""
        return len(self._tasks)

    async def frames(
        self,
        session_id: str,
        after: int,
        encode: EventEncoder,
        read_ahead: Sequence[Event] = (),
        connection: Connection | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The session after event `after` as SSE bytes (`: ping` while idle): replayed,
        then live, until the end. The caller's `read_ahead` (the events right after
        `after`, already read) go first. Raises `StoreError` when the stream cannot go on,
        and what `encode` raised when it failed (after the frames it did make). The
        stream ends early when its `connection` is dropped (see the module docstring)."""
        if read_ahead:
            async for chunk in replayed(encode, read_ahead):
                yield chunk
            TIMELINE.delivered(session_id, read_ahead[-1].id, live=False)
            if read_ahead[-1].is_terminal:
                return
            after = read_ahead[-1].id
        while not self._closed:
            feed = None
            while feed is None:
                last: list[Event] = []
                async with contextlib.aclosing(self._backlog(session_id, after)) as batches:
                    async for events in batches:
                        async for chunk in replayed(encode, events):
                            yield chunk
                        if events:
                            TIMELINE.delivered(session_id, events[-1].id, live=False)
                            after, last = events[-1].id, events
                if last and last[-1].is_terminal:
                    return
                feed = self._joinable(session_id, after)
            inbox = feed.attach(after, encode, connection)
            try:
                written = after
                while chunks := await inbox.take():
                    position = inbox.position
                    yield b"".join(chunks)
                    if position > written:  # not a ping alone
                        TIMELINE.delivered(session_id, position, live=True)
                        written = position
            finally:
                self._leave(feed, inbox)
            if not await self._goes_on(session_id, inbox):
                return
            after = inbox.position

    async def close(self) -> None:
        """End every open stream (its client reconnects with Last-Event-ID) and stop
        the feeds."""
        self._closed = True
        for feed in list(self._feeds.values()):
            feed.end()
        await cancel_and_wait(set(self._tasks))

    def _backlog(self, session_id: str, after: int) -> AsyncGenerator[list[Event], None]:
        """The session's events after `after`, read ahead a batch at a time, up to
        the first read that ends what is there (`relay.subscribers.backlog`)."""
        return backlog(functools.partial(self._read, session_id), after, self._batch)

    async def _read(self, session_id: str, after: int) -> list[Event]:
        """One replay read, riding out a store outage as `follow` does."""
        outage = Outage(self._outage_s)
        while True:
            try:
                return await self._store.read(session_id, after, self._batch)
            except StoreUnavailable:
                await outage.wait_before_retry()

    async def _goes_on(self, session_id: str, inbox: Inbox) -> bool:
        """Whether a stream goes on once its inbox is done: it raises the inbox's error;
        it goes on (from the store, its encoder caught up) when it fell behind."""
        if inbox.error is not None:
            await self._fail(session_id, inbox, inbox.error)
        if not inbox.overflowed:
            return False
        await self._catch_up_encoder(session_id, inbox)
        return True

    async def _fail(self, session_id: str, inbox: Inbox, error: Exception) -> NoReturn:
        """End a stream with `error`. Unless the store failed, its response then ends with
        an in-band error that its own encoder makes, so that encoder first catches up
        with what its client got (shared bytes, maybe); should the store fail meanwhile,
        the error goes out all the same, from the encoder as it is."""
        if not isinstance(error, StoreError):
            with contextlib.suppress(StoreError):
                await self._catch_up_encoder(session_id, inbox)
        raise error

    async def _catch_up_encoder(self, session_id: str, inbox: Inbox) -> None:
        """A subscriber that got shared bytes and fell behind: its own encoder has not
        seen those events; run them through it (the output is the shared bytes it
        already wrote)."""
        if inbox.shared_since is None or not isinstance(inbox.encode, WireRenderer):
            return
        after = inbox.shared_since
        while after < inbox.position:
            events = await self._read(session_id, after)
            await prime(inbox.encode, [event for event in events if event.id <= inbox.position])
            after = events[-1].id if events else inbox.position

    def _joinable(self, session_id: str, after: int) -> Feed | None:
        """The session's feed, started at `after` if there is none; None when the feed
        is already past `after` (the subscriber reads up to it first)."""
        feed = self._feeds.get(session_id)
        if feed is None:
            feed = self._start(session_id, after)
        return feed if feed.position <= after else None

    def _start(self, session_id: str, after: int) -> Feed:
        feed = self._feeds[session_id] = Feed(session_id, after, self._buffer_bytes)
        feed.task = asyncio.create_task(
            self._run(feed),
            name=f"relay-feed-{session_tag(session_id)}",
            context=log_context.session_context(session_id),  # every subscriber's, not one's
        )
        self._tasks.add(feed.task)
        feed.task.add_done_callback(functools.partial(self._stopped, feed))
        return feed

    def _stopped(self, feed: Feed, task: asyncio.Task[None]) -> None:
        """Its task is let go: a cancelled one keeps its CancelledError, whose traceback
        holds `_run`'s frame and so the feed, a cycle only a full collection frees."""
        self._tasks.discard(task)
        if feed.task is task:
            feed.task = None

    async def _run(self, feed: Feed) -> None:
        batches = follow(
            self._store,
            feed.session_id,
            feed.position,
            heartbeat_s=self._heartbeat_s,
            batch=self._batch,
            outage_s=self._outage_s,
        )
        try:
            async for events in batches:
                feed.deliver(events)
                if feed.idle:  # every subscriber fell behind
                    break
            feed.end()
        except StoreError as exc:
            log.warning("live feed of %s ended early: %s", session_tag(feed.session_id), exc)
            feed.end(exc)
        except Exception as exc:  # relay's own failure: each of its streams reports it
            feed.end(exc)
        finally:
            if not feed.ended:  # stopped from outside: let no stream wait forever
                feed.end()
            self._forget(feed)
            await batches.aclose()

    def _leave(self, feed: Feed, inbox: Inbox) -> None:
        feed.detach(inbox)
        if feed.idle and not feed.ended and feed.task is not None:
            self._forget(feed)
            feed.task.cancel()

    def _forget(self, feed: Feed) -> None:
        if self._feeds.get(feed.session_id) is feed:
            del self._feeds[feed.session_id]
