"""Starting and stopping a relay: shutdown ends every task it owns, whenever it comes."""

from __future__ import annotations

import asyncio

import pytest

from tests.frontdoors.conftest import StartRelay

pytestmark = pytest.mark.parametrize("store_url", ["memory", "redis"], indirect=True)


async def test_a_relay_stopped_while_it_still_connects_to_its_store_stops(
    start_relay: StartRelay,
) -> None:
    # Right after startup the cancel listener is still connecting to Redis: a cancel that
    # lands then could be lost (Python 3.11's wait_for), and shutdown waited forever.
    for _ in range(10):
        relay = await start_relay()
        async with relay.http.get(relay.url("/healthz")) as response:
            assert response.status == 200
        await asyncio.wait_for(relay.close(), 10)
