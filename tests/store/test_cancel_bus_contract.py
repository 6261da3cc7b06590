"""The `CancelBus` contract: every store passes the same tests.

A cancel published on a backend reaches every listener on that backend (every
`cancel_requests()` iterator of every store object on it, the publisher's own
included), in the order published; a listener hears only what is published while it
listens, as with Redis pub/sub; closing a store ends its listeners. The memory store is
its process's own, so there "every store object on the backend" is the store itself.
"""

from __future__ import annotations

import asyncio
import itertools

from relay.store import CancelBus, Store
from relay.tasks import cancel_and_wait
from tests.store.conftest import PeerFactory

HEARD_WITHIN_S = 2.0
# Subscribing to Redis takes a round trip after the iterator starts: a listener counts
# as listening once it has heard a probe, published until it has.
PROBE_PREFIX = "s_probe"
PROBE_EVERY_S = 0.05
_probes = itertools.count()


class Listener:
    """One `cancel_requests()` iterator, drained by a task of its own."""

    def __init__(self, bus: CancelBus) -> None:
        self._heard: asyncio.Queue[str] = asyncio.Queue()
        self._probed = asyncio.Event()
        self.task = asyncio.create_task(self._listen(bus))

    async def _listen(self, bus: CancelBus) -> None:
        async for session_id in bus.cancel_requests():
            if session_id.startswith(PROBE_PREFIX):
                self._probed.set()
            else:
                self._heard.put_nowait(session_id)

    async def listening(self, publisher: CancelBus) -> None:
        """Returns once this listener hears what `publisher` publishes."""
        async with asyncio.timeout(HEARD_WITHIN_S):
            while not self._probed.is_set():
                await publisher.publish_cancel(f"{PROBE_PREFIX}{next(_probes)}")
                await asyncio.sleep(PROBE_EVERY_S)

    async def next(self) -> str:
        return await asyncio.wait_for(self._heard.get(), HEARD_WITHIN_S)

    def heard_nothing_more(self) -> bool:
        return self._heard.empty()

    async def stop(self) -> None:
        await cancel_and_wait([self.task])


async def listening(publisher: CancelBus, *buses: CancelBus) -> list[Listener]:
    listeners = [Listener(bus) for bus in buses]
    for listener in listeners:
        await listener.listening(publisher)
    return listeners


async def test_a_cancel_reaches_a_listener_on_another_store_object(
    store: Store, open_peer: PeerFactory
) -> None:
    peer = await open_peer(store)
    (listener,) = await listening(store, peer)
    await store.publish_cancel("s_one")
    assert await listener.next() == "s_one"
    await listener.stop()


async def test_every_listener_hears_every_cancel_in_order(
    store: Store, open_peer: PeerFactory
) -> None:
    peers = [await open_peer(store) for _ in range(2)]
    # Two on one store object, one on another, and the publisher's own.
    listeners = await listening(store, peers[0], peers[0], peers[1], store)
    for session_id in ("s_a", "s_b", "s_c"):
        await store.publish_cancel(session_id)
    for listener in listeners:
        assert [await listener.next() for _ in range(3)] == ["s_a", "s_b", "s_c"]
        await listener.stop()


async def test_a_listener_does_not_hear_cancels_published_before_it_listened(
    store: Store, open_peer: PeerFactory
) -> None:
    peer = await open_peer(store)
    await store.publish_cancel("s_old")
    (listener,) = await listening(store, peer)
    await store.publish_cancel("s_new")
    assert await listener.next() == "s_new"
    assert listener.heard_nothing_more()
    await listener.stop()


async def test_a_listener_that_stops_leaves_the_others_listening(
    store: Store, open_peer: PeerFactory
) -> None:
    peer = await open_peer(store)
    stopping, kept = await listening(store, peer, peer)
    await stopping.stop()
    await store.publish_cancel("s_after")
    assert await kept.next() == "s_after"
    await kept.stop()


async def test_closing_the_store_ends_its_listeners(store: Store, open_peer: PeerFactory) -> None:
    peer = await open_peer(store)
    listeners = await listening(peer, store, store)
    await store.close()
    for listener in listeners:
        await asyncio.wait_for(listener.task, HEARD_WITHIN_S)  # ended, without an error


async def test_a_listener_on_a_closed_store_ends_at_once(store: Store) -> None:
    await store.close()
    assert await asyncio.wait_for(anext(store.cancel_requests(), None), HEARD_WITHIN_S) is None
