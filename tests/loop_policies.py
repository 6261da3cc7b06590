"""Tests on asyncio's own loop and on uvloop, which `relay serve` runs when it is
installed (its transports are its own). A module takes it with

    from tests.loop_policies import EVENT_LOOP_POLICY_WARNING, event_loop_policy

and `pytestmark = pytest.mark.filterwarnings(EVENT_LOOP_POLICY_WARNING)`: overriding
the fixture works on every pytest-asyncio this project allows (>= 0.23); its
replacement, a hook, came in 1.4.
"""

from __future__ import annotations

import asyncio

import pytest

EVENT_LOOP_POLICY_WARNING = 'ignore:Overriding the "event_loop_policy" fixture is deprecated'


@pytest.fixture(params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Each test of the module on asyncio's loop and on uvloop."""
    if request.param == "asyncio":
        return asyncio.DefaultEventLoopPolicy()
    uvloop = pytest.importorskip("uvloop")
    return uvloop.EventLoopPolicy()  # type: ignore[no-any-return]
