"""The generation's inbox (relay/pump_inbox.py): what ends each of its two waits, and
that a cancelled wait leaves no waiter behind."""

from __future__ import annotations

import asyncio

import pytest

from relay.pump_inbox import PumpInbox

LONG_S = 5.0  # a wait that must end by other means long before


async def started(wait: asyncio.Task[None]) -> None:
    await asyncio.sleep(0)
    assert not wait.done()


async def test_an_item_ends_a_wait_for_an_item() -> None:
    inbox: PumpInbox[str] = PumpInbox()
    wait = asyncio.create_task(inbox.wait_for_item(LONG_S))
    await started(wait)
    inbox.put("a")
    inbox.put("b")
    await asyncio.wait_for(wait, 1)
    assert inbox.take_all() == ["a", "b"]
    assert inbox.take_all() == []


async def test_a_wait_for_an_item_with_one_there_returns_at_once() -> None:
    inbox: PumpInbox[str] = PumpInbox()
    inbox.put("a")
    await asyncio.wait_for(inbox.wait_for_item(LONG_S), 0.1)


async def test_an_interrupt_does_not_end_a_wait_for_an_item() -> None:
    inbox: PumpInbox[str] = PumpInbox()
    wait = asyncio.create_task(inbox.wait_for_item(0.05))
    await started(wait)
    inbox.interrupt()
    await asyncio.sleep(0.01)
    assert not wait.done()  # it ends at its timeout
    await asyncio.wait_for(wait, 1)


async def test_items_do_not_end_a_wait_for_an_interrupt_and_an_interrupt_does() -> None:
    inbox: PumpInbox[str] = PumpInbox()
    wait = asyncio.create_task(inbox.wait_for_interrupt(LONG_S))
    await started(wait)
    inbox.put("a")
    await asyncio.sleep(0.01)
    assert not wait.done()
    inbox.interrupt()
    await asyncio.wait_for(wait, 1)
    assert inbox.take_all() == ["a"]


async def test_once_interrupted_every_wait_for_an_interrupt_returns_at_once() -> None:
    inbox: PumpInbox[str] = PumpInbox()
    inbox.interrupt()
    for _ in range(3):
        await asyncio.wait_for(inbox.wait_for_interrupt(LONG_S), 0.1)


@pytest.mark.parametrize("for_items", [True, False])
async def test_a_wait_ends_at_its_timeout(for_items: bool) -> None:
    inbox: PumpInbox[str] = PumpInbox()
    loop = asyncio.get_running_loop()
    began = loop.time()
    await (inbox.wait_for_item(0.05) if for_items else inbox.wait_for_interrupt(0.05))
    assert loop.time() - began >= 0.04


async def test_a_cancelled_wait_leaves_nothing_to_wake() -> None:
    inbox: PumpInbox[str] = PumpInbox()
    wait = asyncio.create_task(inbox.wait_for_item(LONG_S))
    await started(wait)
    wait.cancel()
    with pytest.raises(asyncio.CancelledError):
        await wait
    inbox.put("a")  # nobody waits: nothing to wake, nothing raised
    await asyncio.wait_for(inbox.wait_for_item(LONG_S), 0.1)
    assert inbox.take_all() == ["a"]
