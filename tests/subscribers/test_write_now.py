"""`ResponseConnection.write_now` on the installed aiohttp, over a real socket: frames a
feed writes at once reach the client in order with the stream's own writes, chunked
(HTTP/1.1) or not (HTTP/1.0), and only once the headers are out. It reads aiohttp's
private writer state (relay/subscribers/sse.py `write_body_now`): an aiohttp that
changes it fails here, where relay itself would quietly write through the stream's
own `write` again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from relay.subscribers.sse import ResponseConnection, _HeadersWithFirstFrames

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_get("/", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/"))

    yield start
    for server in servers:
        await server.close()


@pytest.mark.parametrize("http_version", ["1.1", "1.0"])
async def test_frames_written_at_once_arrive_in_order_with_the_streams_own(
    serve: Callable[[Handler], Awaitable[str]], http_version: str
) -> None:
    counted: list[bytes] = []
    answers: list[bool] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        writer = await response.prepare(request)
        assert writer is not None
        await response.write(b"one\n")
        connection = ResponseConnection(request.transport)
        connection.writing(writer, counted.append)
        answers.append(connection.write_now(b"two\n"))
        await response.write(b"three\n")
        answers.append(connection.write_now(b"four\n"))
        connection.stopped_writing()
        answers.append(connection.write_now(b"never\n"))
        await response.write_eof()
        return response

    url = URL(await serve(handler))
    head, body = await raw_get(url, http_version)
    chunked = b"transfer-encoding: chunked" in head.lower()
    assert chunked is (http_version == "1.1")
    assert (dechunked(body) if chunked else body) == b"one\ntwo\nthree\nfour\n"
    assert answers == [True, True, False]
    assert counted == [b"two\n", b"four\n"]


async def raw_get(url: URL, http_version: str) -> tuple[bytes, bytes]:
    """One GET on a socket of its own, read to the end (`Connection: close`)."""
    reader, writer = await asyncio.open_connection(url.host, url.port)
    request = f"GET / HTTP/{http_version}\r\nHost: {url.host}\r\nConnection: close\r\n\r\n"
    writer.write(request.encode())
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def dechunked(body: bytes) -> bytes:
    data = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return data
        data, body = data + body[:size], body[size + 2 :]


async def test_nothing_is_written_at_once_before_the_headers_are_out(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    """A stream whose headers wait for its first frames (`_HeadersWithFirstFrames`): a
    write at once before them would put body bytes ahead of the headers."""
    answers: list[bool] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        response = _HeadersWithFirstFrames(headers={"Content-Type": "text/event-stream"})
        writer = await response.prepare(request)
        assert writer is not None
        connection = ResponseConnection(request.transport)
        connection.writing(writer, lambda frames: None)
        answers.append(connection.write_now(b"early\n"))
        await response.write(b"first\n")  # the headers go with it
        answers.append(connection.write_now(b"second\n"))
        await response.write_eof()
        return response

    url = await serve(handler)
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert await response.read() == b"first\nsecond\n"
    assert answers == [False, True]
