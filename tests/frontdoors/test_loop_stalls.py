"""An event loop blocked for longer than `lease_ttl_s`, over real sockets, on both
stores: the sessions it generates keep their leases and end as they would have, with
`done`; the lease renewal warns how late it ran."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.frontdoors.conftest import StartRelay

LEASE_TTL_S = 0.5


async def test_a_loop_stall_longer_than_the_lease_does_not_end_a_live_session(
    start_relay: StartRelay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="relay.leases")
    relay = await start_relay(store={"lease_ttl_s": LEASE_TTL_S})
    created = await relay.create("mock:tokens=30,tps=30,ttft_ms=0")
    async with relay.subscribe(created["id"]) as reader:
        await reader.read(2)  # status, then the first delta
        time.sleep(LEASE_TTL_S * 3)  # noqa: ASYNC251  # relay runs on this loop: a stall
        events = await reader.read_all()
    snapshot = await relay.wait_until_ended(created["id"])
    assert events[-1].event == "done", events[-1]
    assert snapshot["status"] == "completed"
    ids = [int(event.id) for event in events if event.id]
    assert ids == list(range(1, len(ids) + 1))
    text = "".join(json.loads(e.data)["text"] for e in events if e.event == "delta")
    assert len(text.split(" ")) == 30
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("lease renewal ran" in m and "of 1 session(s)" in m for m in warnings), warnings
    assert not any("lost its generator" in m for m in warnings)
