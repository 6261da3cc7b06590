"""`relay serve` out of file descriptors (a low RLIMIT_NOFILE), on uvloop and on plain
asyncio: a flood of connections past the limit is refused without a traceback per
accept (asyncio's way: hundreds of MB of log a minute), a kept-alive connection is served
throughout, and new clients are served again once descriptors free up."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import resource
from pathlib import Path

import pytest

from tests.redis_server import free_port
from tests.relay_process import relay_process

# The soft limit relay serve runs under: room for what it opens at startup, not for the flood.
NOFILE = 64
FLOOD = 150
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def low_descriptor_limit() -> None:
    """Run in the child before it starts: the soft limit down to NOFILE."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))


@pytest.fixture(params=["uvloop", "asyncio"])
def unimportable(request: pytest.FixtureRequest) -> list[str]:
    """What `relay serve` cannot import: nothing (it runs on uvloop), or uvloop."""
    if request.param == "asyncio":
        return ["uvloop"]
    if importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed")
    return []


async def healthz_status(connection: Connection) -> int:
    """One `/healthz` on a kept-alive connection: the answer's status."""
    reader, writer = connection
    writer.write(HEALTHZ)
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split(" ")[1])


async def connect(port: int) -> Connection | None:
    """A connection, or None when the connect did not go through in time."""
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(2):
            return await asyncio.open_connection("127.0.0.1", port)
    return None


async def served_again(port: int, within_s: float) -> None:
    """A new client gets its answer, once relay has descriptors again."""
    async with asyncio.timeout(within_s):
        while True:
            connection = await connect(port)
            if connection is not None:
                with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
                    if await healthz_status(connection) == 200:
                        connection[1].close()
                        return
                connection[1].close()
            await asyncio.sleep(0.2)


async def test_out_of_descriptors_relay_refuses_quietly_and_serves_what_it_has(
    tmp_path: Path, unimportable: list[str]
) -> None:
    port, config, log_path = free_port(), tmp_path / "relay.toml", tmp_path / "relay.log"
    config.write_text("")
    async with relay_process(
        config, port, log_path, preexec_fn=low_descriptor_limit, unimportable=unimportable
    ):
        kept = await asyncio.open_connection("127.0.0.1", port)
        assert await healthz_status(kept) == 200
        flood = [connection for connection in await asyncio.gather(
            *(connect(port) for _ in range(FLOOD))) if connection is not None]  # fmt: skip
        await asyncio.sleep(2.5)  # asyncio tries its accepts again each second
        assert await healthz_status(kept) == 200  # still served, out of descriptors
        for _, writer in flood:
            writer.close()
        await served_again(port, within_s=10)
        kept[1].close()
    log = log_path.read_text()
    lines = log.splitlines()
    assert len(flood) > NOFILE  # relay did run out
    assert "Traceback" not in log
    assert len(lines) < 30, log[-3000:]
    refusals = [line for line in lines if "out of file descriptors (EMFILE)" in line]
    if unimportable:  # asyncio reports its failed accepts: one warning counts them
        assert len(refusals) == 1 and "WARNING" in refusals[0]
        assert "refused" in refusals[0] and "connection(s)" in refusals[0]
    else:  # libuv refuses them itself and tells no one
        assert refusals == []
