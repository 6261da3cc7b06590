"""`relay serve` as a real process under hostile clients, with the `[limits]` its
connection handler enforces: request heads too large, heads sent too slowly (500
slowloris connections while others are served), connections in total and per client
address, and 1,000 subscribers that never read while relay's memory stays bounded.

Clients are raw sockets on loopback; each loop is bounded in time. A client address
other than 127.0.0.1 is another loopback address (Linux routes all of 127/8 there)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tests.redis_server import free_port
from tests.relay_process import relay_process
from tests.test_serve_process import exchange

MESSAGES = [{"role": "user", "content": "hi"}]

HEALTHZ_HEAD = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, limits: str, tables: str = ""
) -> AsyncIterator[tuple[int, Path, int]]:
    """A `relay serve` with these `[limits]` lines (and other `tables` after them): its
    port, log file and pid."""
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text(f"[limits]\n{limits}\n{tables}")
    log_path = tmp_path / "relay.log"
    async with relay_process(config, port, log_path) as process:
        yield port, log_path, process.pid


async def healthy_within(port: int, seconds: float) -> float:
    """How long a plain request took; it must answer 200 within `seconds`."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        status, _, _ = await exchange(
            port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
    assert status == 200
    return time.monotonic() - started


async def test_the_request_head_limits_are_settings(tmp_path: Path) -> None:
    limits = "max_request_line_bytes = 200\nmax_header_bytes = 300\nmax_headers = 10"
    async with serving(tmp_path, limits) as (port, _, _):
        cases = [
            (b"GET /healthz?" + b"q" * 300 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 200),
            (HEALTHZ_HEAD + b"X-Big: " + b"v" * 400 + b"\r\n\r\n", 300),
        ]
        for request, limit in cases:
            status, headers, body = await exchange(port, request)
            assert (status, headers["content-type"]) == (431, "application/json"), body
            assert json.loads(body)["error"] == {
                "code": "headers_too_large",
                "message": f"the request line or a header field is longer than {limit} bytes",
            }
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(11))
        status, _, body = await exchange(
            port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n"
        )
        assert status == 431
        assert json.loads(body)["error"]["message"] == "the request has more than 10 header fields"
        fits = b"".join(b"X-H%d: v\r\n" % i for i in range(8))
        request = HEALTHZ_HEAD + b"Connection: close\r\n" + fits + b"\r\n"
        assert (await exchange(port, request))[0] == 200


async def read_all(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the peer sends until it closes (a reset counts as a close)."""
    async with asyncio.timeout(seconds):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def test_a_head_sent_too_slowly_is_cut_with_a_408_and_silence_is_closed(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, "header_timeout_s = 1.0") as (port, log_path, _):
        slow_reader, slow = await asyncio.open_connection("127.0.0.1", port)
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
        kept_reader, kept = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        slow.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")  # and never the blank line
        kept.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")  # a whole request, in time
        answered = await kept_reader.readuntil(b"\r\n\r\n")
        assert answered.startswith(b"HTTP/1.1 200 ")
        answer = await read_all(slow_reader, 5)
        assert 1.0 <= time.monotonic() - started < 4
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
        assert json.loads(body) == {
            "error": {
                "code": "request_timeout",
                "message": "the request head did not arrive within limits.header_timeout_s=1 s",
            }
        }
        assert await read_all(silent_reader, 5) == b""  # nothing sent, nothing answered
        # On a kept-alive connection the clock starts with the next request's first byte.
        await kept_reader.readexactly(int(answered.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
        await asyncio.sleep(1.5)  # idle is keep-alive's business, not the head's
        kept.write(b"GET /healthz HTTP/1.1\r\n")
        assert (await read_all(kept_reader, 5)).startswith(b"HTTP/1.1 408 ")
        for writer in (slow, silent, kept):
            writer.close()
    assert log_path.read_text().count("no whole request head in time") == 3


async def slowloris(port: int, stop_after_s: float) -> bool:
    """One connection that sends its head a byte every 0.2 s and never finishes it; True
    when relay cuts it (a 408, a close or a reset) before `stop_after_s`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 1000
    try:
        for byte in head[: int(stop_after_s / 0.2)]:
            writer.write(bytes([byte]))
            try:
                await asyncio.wait_for(reader.read(1024), 0.2)
                return True  # relay answered or closed
            except TimeoutError:
                continue
    except ConnectionError:
        return True
    finally:
        writer.close()
    return False


async def test_500_slowloris_connections_are_cut_and_others_are_served_meanwhile(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, "header_timeout_s = 2.0") as (port, _, _):
        attackers = [asyncio.create_task(slowloris(port, stop_after_s=15)) for _ in range(500)]
        await asyncio.sleep(1.0)  # all connected, all sending slowly
        waits = [await healthy_within(port, 2.0) for _ in range(5)]
        async with aiohttp.ClientSession() as http:
            body = {"model": "mock:tokens=20,tps=0,ttft_ms=0", "messages": MESSAGES}
            started = time.monotonic()
            async with http.post(f"http://127.0.0.1:{port}/v1/sessions", json=body) as created:
                assert created.status == 201
                events_url = (await created.json())["events_url"]
            async with http.get(f"http://127.0.0.1:{port}{events_url}") as stream:
                assert b"event: done" in await stream.read()
            assert time.monotonic() - started < 2.0
        cut = await asyncio.gather(*attackers)
    assert max(waits) < 2.0
    assert all(cut), f"{cut.count(False)} of 500 slow connections were never cut"


async def connect_from(
    address: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


async def refused(address: str, port: int) -> bool:
    """Whether a connection from `address` is closed without an answer to a request."""
    reader, writer = await connect_from(address, port)
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            await writer.drain()
        return await read_all(reader, 5) == b""
    finally:
        writer.close()


async def test_connections_past_the_limits_are_closed_at_once(tmp_path: Path) -> None:
    limits = "max_connections = 8\nmax_connections_per_ip = 3"
    async with serving(tmp_path, limits) as (port, log_path, _):
        crowd = [await connect_from("127.0.0.2", port) for _ in range(3)]
        await asyncio.sleep(0.2)  # relay has accepted them
        assert await refused("127.0.0.2", port)  # a 4th from that address
        await healthy_within(port, 2.0)  # another address is served
        crowd += [await connect_from("127.0.0.3", port) for _ in range(3)]
        crowd += [await connect_from("127.0.0.4", port) for _ in range(2)]
        await asyncio.sleep(0.2)
        assert await refused("127.0.0.5", port)  # the 9th in total
        for _, writer in crowd[:2]:
            writer.close()
        await asyncio.sleep(0.2)  # relay has seen them go
        await healthy_within(port, 2.0)
        assert not await refused("127.0.0.2", port)
        for _, writer in crowd[2:]:
            writer.close()
    log = log_path.read_text()
    assert "refused 1 connection(s) at the limit limits.max_connections_per_ip" in log


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def never_reader(port: int, path: str) -> socket.socket:
    """A subscriber that sends its request and never reads a byte (a small receive
    buffer, so that what the kernel holds for it stays small and relay's bound acts)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    return sock


async def peak_rss(pid: int, stop: asyncio.Event) -> int:
    peak = rss_kib(pid)
    while not stop.is_set():
        peak = max(peak, rss_kib(pid))
        await asyncio.sleep(0.05)
    return peak


async def served_meanwhile(base: str, http: aiohttp.ClientSession) -> float:
    """How long a whole short session took, created and read, by another client."""
    started = time.monotonic()
    body = {"model": "mock:tokens=20,tps=0,ttft_ms=0", "messages": MESSAGES}
    async with http.post(base + "/v1/sessions", json=body) as created:
        events_url = (await created.json())["events_url"]
    async with http.get(base + events_url) as stream:
        assert b"event: done" in await stream.read()
    return time.monotonic() - started


async def ended(base: str, http: aiohttp.ClientSession, session_id: str, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while True:
            async with http.get(f"{base}/v1/sessions/{session_id}") as response:
                if (await response.json())["status"] != "running":
                    return
            await asyncio.sleep(0.2)


# A long session, as fast as the mock goes: 5.7 MB of text in about 2,900 events. Its
# first token waits until every subscriber follows it live, where the byte bound acts
# (one that stops reading while it replays is let go after send_timeout_s).
LONG_SESSION = "mock:tokens=1000000,tps=0,ttft_ms=8000"
# Ten times the mock's default cap on tokens.
UNCAPPED_MOCK = (
    '[[upstreams]]\nname = "mock"\nkind = "mock"\nmodels = ["mock", "mock:*"]\n'
    "mock_max_tokens = 1000000\n"
)
SUBSCRIBERS = 1000
# Measured: about 27 KiB per open stream, plus, per stream that stops reading, what its
# transport holds unsent when it is disconnected (a few hundred KiB under the default
# subscriber_buffer_bytes of 1 MiB; queued frames are shared): 229-299 MiB in all over
# runs. Before the bound: 291 MiB, and the 1,000 connections were never closed.
RSS_GROWTH_BOUND_KIB = 400 * 1024


async def test_1000_subscribers_that_never_read_leave_memory_bounded(tmp_path: Path) -> None:
    limits = "max_connections_per_ip = 3000\nmax_subscribers_per_session = 3000"
    async with serving(tmp_path, limits, UNCAPPED_MOCK) as (port, log_path, pid):
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            body = {"model": LONG_SESSION, "messages": MESSAGES}
            async with http.post(base + "/v1/sessions", json=body) as response:
                created = await response.json()
            before = rss_kib(pid)
            stop = asyncio.Event()
            peak = asyncio.create_task(peak_rss(pid, stop))
            sockets = [await never_reader(port, created["events_url"]) for _ in range(SUBSCRIBERS)]
            try:
                await asyncio.sleep(9.0)  # the session streams to them now
                waits = [await served_meanwhile(base, http) for _ in range(3)]
                await ended(base, http, created["id"], seconds=120)
                async with asyncio.timeout(30):
                    while log_path.read_text().count("reads too slowly") < SUBSCRIBERS:
                        await asyncio.sleep(0.2)
            finally:
                stop.set()
                for sock in sockets:
                    sock.close()
            growth = await peak - before
    print(f"relay RSS: {before} KiB before, peak growth {growth} KiB; waits {waits}")
    assert max(waits) < 2.0
    assert growth < RSS_GROWTH_BOUND_KIB
