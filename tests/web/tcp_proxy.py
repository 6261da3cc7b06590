"""A TCP proxy between a browser and relay that a test can cut: `refuse()` closes every
open connection and each new one at once (a network that dropped), `accept()` lets them
through again; `freeze()` stops forwarding on every open connection without closing it
(a half-open connection: a NAT that forgot it, a cable pulled somewhere between), while
new ones go through. Bytes are forwarded as they come, so streams stay streams. Its pipes
end as relay's own tasks do (relay.tasks.cancel_and_wait)."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from urllib.parse import urlsplit

from relay.tasks import cancel_and_wait

CHUNK_BYTES = 65536


class TcpProxy:
    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self.target_host = target.hostname or "127.0.0.1"
        self.target_port = target.port or 80
        self.refusing = False
        self.cuts = 0
        self.turned_away = 0  # connections cut at once while refusing
        self.connections = 0  # connections forwarded
        self.frozen = 0  # connections frozen
        self._writers: set[asyncio.StreamWriter] = set()
        self._gates: set[asyncio.Event] = set()  # one per open connection, set while it flows
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.refuse()
        await cancel_and_wait(list(self._tasks))
        await self._server.wait_closed()

    def refuse(self) -> None:
        self.refusing = True
        self.cuts += 1
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as a dropped network looks to the peers
        self._writers.clear()

    def accept(self) -> None:
        self.refusing = False

    def freeze(self) -> None:
        """Stop forwarding on each open connection, for good, without closing it: neither
        end hears anything more, nor that anything is wrong."""
        for gate in self._gates:
            gate.clear()
        self.frozen += len(self._gates)
        self._gates.clear()

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.turned_away += 1
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        self.connections += 1
        gate = asyncio.Event()
        gate.set()
        self._gates.add(gate)
        both = [
            asyncio.create_task(self._pipe(reader, upstream_writer, gate)),
            asyncio.create_task(self._pipe(upstream_reader, writer, gate)),
        ]
        self._tasks.update(both)
        try:
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(both)
            self._tasks.difference_update(both)
            self._gates.discard(gate)
            for end in (writer, upstream_writer):
                self._writers.discard(end)
                end.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(CHUNK_BYTES):
                await gate.wait()  # frozen: held here (and nothing more read) until the end
                writer.write(chunk)
                await writer.drain()
