"""A minimal HTTP/1.1 client on a raw asyncio protocol, for the load generator.

Per read it takes a timestamp, de-chunks and keeps the bytes; nothing else happens
while a run goes on, so the client costs a few microseconds per read and is not what
limits a measurement. One request at a time per connection (keep-alive).
"""

from __future__ import annotations

import asyncio
import time
from typing import cast

import msgspec

from bench.wire import ChunkedDecoder, parse_head


class HttpError(Exception):
    """A response that was not 2xx, or a connection that ended before the response did."""


class Response:
    """The timestamped body reads of one response."""

    def __init__(self) -> None:
        self.sent_at = 0.0
        self.status = 0
        self.reads: list[tuple[float, bytes]] = []
        self.size = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.first_body: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def body(self) -> bytes:
        return b"".join(data for _, data in self.reads)

    def json(self) -> object:
        return msgspec.json.decode(self.body())


class Connection(asyncio.Protocol):
    def __init__(self, *, keep_reads: bool = True) -> None:
        self.transport: asyncio.Transport | None = None
        self._keep_reads = keep_reads
        self._response: Response | None = None
        self._head = b""
        self._decoder: ChunkedDecoder | None = None
        self._left: int | None = None  # content-length bytes still to come
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int, *, keep_reads: bool = True) -> Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(lambda: cls(keep_reads=keep_reads), host, port)
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def request(self, raw: bytes) -> Response:
        """Send a request; the response fills in as bytes arrive (await `response.done`)."""
        assert self.transport is not None
        response = self._response = Response()
        self._head, self._decoder, self._left = b"", None, None
        response.sent_at = time.perf_counter()
        self.transport.write(raw)
        return response

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        response = self._response
        if response is None or response.done.done():
            return
        if not response.status:
            data = self._read_head(response, data)
            if not response.status:
                return
        body = self._decoder.feed(data) if self._decoder is not None else data
        if body:
            if not response.first_body.done():
                response.first_body.set_result(now)
            response.size += len(body)
            if self._keep_reads:
                response.reads.append((now, body))
        if self._complete(len(body)):
            response.done.set_result(None)

    def _read_head(self, response: Response, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return b""
        head = parse_head(self._head[:end])
        rest, self._head = self._head[end + 4 :], b""
        response.status = head.status
        self._decoder = ChunkedDecoder() if head.chunked else None
        self._left = head.content_length
        return rest

    def _complete(self, received: int) -> bool:
        if self._decoder is not None:
            return self._decoder.finished
        if self._left is not None:
            self._left -= received
            return self._left <= 0
        return False  # ends when the server closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self._response
        if response is None or response.done.done():
            return
        if self._decoder is None and self._left is None and response.status:
            response.done.set_result(None)  # a body that the close delimits
        else:
            response.done.set_exception(HttpError(f"connection lost mid-response: {exc}"))
        if not response.first_body.done():
            response.first_body.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def post_json(host: str, port: int, path: str, body: object) -> bytes:
    payload = msgspec.json.encode(body)
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def get(host: str, port: int, path: str, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()


def delete(host: str, port: int, path: str) -> bytes:
    return f"DELETE {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\n\r\n".encode()


async def fetch(host: str, port: int, raw: bytes) -> Response:
    """One request on a fresh connection, read to the end; HttpError unless 2xx."""
    connection = await Connection.open(host, port)
    try:
        response = connection.request(raw)
        await response.done
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise HttpError(f"HTTP {response.status}: {response.body()[:300]!r}")
    return response
