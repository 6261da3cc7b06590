"""A proxy of the tests' own in front of a real redis-server, on the test's event loop:
it can hold what its clients send or what the server answers (`hold`), cut every
connection (`cut`), and speak TLS to its clients (`TlsCertificates`), which the bundled
redis-server, built without TLS, cannot do itself. `ProxyThread` runs one on a loop of
its own, for fixtures that outlive a test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import trustme


class TlsCertificates:
    """A test certificate authority and the certificate it issued for 127.0.0.1: the
    server side's context, and the CA file a client names in `ssl_ca_certs`."""

    def __init__(self, directory: Path) -> None:
        authority = trustme.CA()
        self.ca_path = directory / "ca.pem"
        authority.cert_pem.write_to_path(str(self.ca_path))
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(self.server_context)


class CuttingProxy:
    """A proxy to a Redis server that can hold what its clients send, or what the server
    answers (`hold`), and cut every connection, dropping what it held (`cut`). With
    `tls`, its clients connect over TLS (`rediss://`) and it speaks plain TCP to Redis."""

    def __init__(self, target_port: int, *, tls: TlsCertificates | None = None) -> None:
        self._target_port = target_port
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self._holding: bool | None = None  # None: nothing; else whether it holds replies
        self.held = 0  # bytes held since `hold`
        self.connections = 0  # client connections accepted so far
        self.port = 0

    def url(self, db: int = 0) -> str:
        """The URL a store connects to the server through this proxy with."""
        if self._tls is None:
            return f"redis://127.0.0.1:{self.port}/{db}"
        return f"rediss://127.0.0.1:{self.port}/{db}?ssl_ca_certs={self._tls.ca_path}"

    async def start(self) -> None:
        context = None if self._tls is None else self._tls.server_context
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def hold(self, *, replies: bool = False) -> None:
        """Forward nothing clients send from now on; with `replies`, forward what they
        send, so that the server runs it, and nothing it answers."""
        self._holding, self.held = replies, 0

    async def cut(self) -> None:
        self._holding = None
        writers, self._writers = self._writers, []
        for writer in writers:
            writer.close()
        await asyncio.gather(*(self._wait_closed(writer) for writer in writers))

    async def close(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers += [writer, up_writer]
        self._pump(reader, up_writer, upstream=True)
        self._pump(up_reader, writer, upstream=False)

    def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        async def forward() -> None:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while data := await reader.read(65536):
                    if self._holding is not None and self._holding is not upstream:
                        self.held += len(data)
                        continue  # never forwarded: the cut drops it
                    writer.write(data)
                    await writer.drain()
            writer.close()

        task = asyncio.create_task(forward())
        self._pumps.add(task)
        task.add_done_callback(self._pumps.discard)

    @staticmethod
    async def _wait_closed(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


class ProxyThread:
    """A `CuttingProxy` on an event loop of its own, in a thread: for a fixture that
    outlives any one test's loop (a session's)."""

    def __init__(self, proxy: CuttingProxy) -> None:
        self.proxy = proxy
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="relay-test-redis-proxy", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        self._call(self.proxy.start())

    def close(self) -> None:
        self._call(self.proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _call(self, work: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)
