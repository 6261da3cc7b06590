"""CPU work that grows with a request, done off the event loop when the request is large.

Decoding and translating a body is one call that relay cannot cut into slices, and it
grows with the body: 100,000 messages held the loop for a quarter of a second, and every
other client with it (translating them for an Anthropic upstream, as long again). A
large input's work runs in a worker thread instead; the event loop goes on serving
meanwhile, as the interpreter makes a busy thread hand over the GIL every few
milliseconds (`sys.getswitchinterval()`). A small one stays on the loop, where a thread
would cost more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# From here on, decoding a body, or translating a request for an upstream, is some
# milliseconds of work and goes to a thread.
LARGE_BODY_BYTES = 256 * 1024
MANY_MESSAGES = 1000


async def off_loop(work: Callable[[], T], *, large: bool) -> T:
    """`work()`, in a worker thread when its input is `large`, else here."""
    if not large:
        return work()
    return await asyncio.to_thread(work)
