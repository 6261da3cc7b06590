"""Work over a session's log done a slice at a time, letting other tasks run between.

Rendering a log in a wire format, or folding it into an answer or a snapshot, costs CPU in
proportion to its length (a few µs an event), and a store read that finds its events
at hand (the memory store, a backlog) returns without waiting: a 50,000-event log
rendered in one go held the event loop for 0.1-0.5 s, and every other client with it.
Here the work is cut into slices of `EVENTS_PER_SLICE` events with an
`await asyncio.sleep(0)` between two slices; what it computes is what one go would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence

from relay.events import Event
from relay.session import SessionRecord, Snapshot, SnapshotFold
from relay.subscribers.formats import WireRenderer
from relay.subscribers.transcript import Transcript, TranscriptFold

# About a millisecond or two of rendering; a pause costs some microseconds.
EVENTS_PER_SLICE = 256
# relay's own SSE frames cost about 0.16 µs an event (`relay.events.sse_frames`): a slice
# four times as long is still under a quarter of a millisecond, and a replay makes a
# quarter of the writes and pauses (a 10,000-event replay: 10 rather than 40).
NATIVE_EVENTS_PER_SLICE = 1024


def slices(events: Sequence[Event], size: int = EVENTS_PER_SLICE) -> Iterator[Sequence[Event]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


async def let_others_run() -> None:
    """One turn of the event loop for every other task that is ready."""
    await asyncio.sleep(0)


async def in_slices(events: Sequence[Event], work: Callable[[Sequence[Event]], object]) -> None:
    """`work` over `events`, a slice at a time, with a pause after each slice."""
    for piece in slices(events):
        work(piece)
        await let_others_run()


async def prime(renderer: WireRenderer, events: Sequence[Event]) -> None:
    """`renderer.prime(events)` (the events a client already has), in slices."""
    await in_slices(events, renderer.prime)


async def fold_transcript(events: Sequence[Event]) -> Transcript:
    """`relay.subscribers.transcript.fold_transcript(events)`, in slices."""
    fold = TranscriptFold()
    await in_slices(events, fold.add)
    return fold.result()


async def snapshot(record: SessionRecord, events: Sequence[Event]) -> Snapshot:
    """`relay.session.snapshot(record, events)`, in slices."""
    fold = SnapshotFold()
    await in_slices(events, fold.add)
    return fold.snapshot(record)
