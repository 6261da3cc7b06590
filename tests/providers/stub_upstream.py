"""A real HTTP server that answers every POST as a test scripts it, for what the mock
upstream cannot send: bodies that are not JSON, malformed events, redirects. It records
what it received: each request's path, headers and body."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StubUpstream:
    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers)
        self.bodies: list[bytes] = []  # one per request, as received
        self.client_ports: list[int] = []  # one per request: equal ports, one connection

    def url(self, path: str = "") -> str:
        return str(self.server.make_url(path))


@asynccontextmanager
async def stub_upstream(handler: Handler) -> AsyncIterator[StubUpstream]:
    async def recording(request: web.Request) -> web.StreamResponse:
        stub.requests.append((request.path, dict(request.headers)))
        stub.bodies.append(await request.read())
        assert request.transport is not None
        stub.client_ports.append(request.transport.get_extra_info("peername")[1])
        return await handler(request)

    app = web.Application()
    app.router.add_post("/{tail:.*}", recording)
    stub = StubUpstream(TestServer(app))
    await stub.server.start_server()
    try:
        yield stub
    finally:
        await stub.server.close()


def sse_answer(*frames: bytes) -> Handler:
    """A 200 `text/event-stream` answer of `frames`, one write each."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for frame in frames:
            await response.write(frame)
        await response.write_eof()
        return response

    return answer
