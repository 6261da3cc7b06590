"""The demo page in a real headless Chromium: generate, reload mid-stream, resume; how a
session's end reads (completed, failed with relay's error, cancelled), also on a page
opened after the end; a cut network shows reconnecting, then the stream resumes.

Chromium comes from Debian (`apt-get install chromium`); Playwright drives it through
`executable_path`, so nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.redis_server import free_port

MODEL = "mock:tokens=60,tps=30,ttft_ms=0"
STATE_TIMEOUT_MS = 20_000


@pytest.fixture
async def page(browser):  # type: ignore[no-untyped-def]
    return await browser.new_page()


async def generate(page, base_url: str, model: str) -> None:  # type: ignore[no-untyped-def]
    await page.goto(base_url + "/")
    await page.fill("input[name=model]", model)
    await page.click("button[type=submit]")


async def state_starts_with(page, prefix: str) -> str:  # type: ignore[no-untyped-def]
    await page.wait_for_function(
        f"document.getElementById('state').textContent.startsWith({prefix!r})",
        timeout=STATE_TIMEOUT_MS,
    )
    state: str = await page.text_content("#state")
    return state


async def snapshot_of_page_session(page, base_url: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    session_id = await page.evaluate("JSON.parse(localStorage.getItem('relay-demo')).id")
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{base_url}/v1/sessions/{session_id}") as response,
    ):
        snapshot: dict[str, Any] = await response.json()
        return snapshot


async def test_the_page_resumes_its_stream_after_a_reload(page, relay_url: str) -> None:  # type: ignore[no-untyped-def]
    await generate(page, relay_url, MODEL)
    # Reload while the generation is mid-way: some words shown, not all.
    await page.wait_for_function(
        "document.getElementById('output').textContent.split(' ').length >= 10"
    )
    before = await page.text_content("#output")
    await page.reload()
    await state_starts_with(page, "completed")
    after = await page.text_content("#output")
    snapshot = await snapshot_of_page_session(page, relay_url)
    assert snapshot["status"] == "completed"
    assert len(snapshot["text"].split(" ")) == 60
    assert after == snapshot["text"]  # no gap, no duplicate across the reload
    assert snapshot["text"].startswith(before or "")


async def test_a_finished_session_shows_completed_with_its_finish_reason(
    page,  # type: ignore[no-untyped-def]
    relay_url: str,
    tmp_path: Path,
) -> None:
    await generate(page, relay_url, "mock:tokens=8,tps=40,ttft_ms=0")
    assert await state_starts_with(page, "completed") == "completed · finish reason: stop"
    await asyncio.sleep(1.5)  # longer than `retry:`: nothing overwrites the final state
    assert await page.text_content("#state") == "completed · finish reason: stop"
    await page.screenshot(path=str(tmp_path / "completed.png"))
    # A page opened after the end (the events endpoint answers 204) reads the snapshot.
    await page.reload()
    assert await state_starts_with(page, "completed") == "completed · finish reason: stop"
    snapshot = await snapshot_of_page_session(page, relay_url)
    assert await page.text_content("#output") == snapshot["text"]


async def test_relays_error_event_shows_its_code_and_message(page, relay_url: str) -> None:  # type: ignore[no-untyped-def]
    await generate(page, relay_url, "mock:tokens=50,fail_after=5,tps=40,ttft_ms=0")
    state = await state_starts_with(page, "failed")
    error = (await snapshot_of_page_session(page, relay_url))["error"]
    assert state == f"failed · {error['code']}: {error['message']}"
    assert error["code"] == "upstream_error"
    await asyncio.sleep(1.5)
    assert await page.text_content("#state") == state  # not "reconnecting…"
    await page.reload()
    assert await state_starts_with(page, "failed") == state


async def test_a_cancelled_session_shows_cancelled(page, relay_url: str) -> None:  # type: ignore[no-untyped-def]
    await generate(page, relay_url, "mock:tokens=1000,tps=20,ttft_ms=0")
    await page.wait_for_function("document.getElementById('output').textContent.length > 0")
    await page.click("#cancel")
    assert await state_starts_with(page, "cancelled") == "cancelled · reason: client"
    assert await page.is_disabled("#cancel")
    await page.reload()
    assert await state_starts_with(page, "cancelled") == "cancelled"


class CuttableProxy:
    """A TCP proxy to relay whose connections can be cut, and new ones refused, at will:
    a real network interruption as the browser sees it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def close(self) -> None:
        self.interrupt()
        if self._server is not None:
            self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def interrupt(self) -> None:
        self.cut = True
        for writer in self._writers:
            writer.transport.abort()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers |= {writer, up_writer}
        for pipe in (self._pipe(reader, up_writer), self._pipe(up_reader, writer)):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)


async def test_a_cut_network_shows_reconnecting_then_the_stream_resumes(
    page,  # type: ignore[no-untyped-def]
    relay_url: str,
) -> None:
    proxy = CuttableProxy(int(relay_url.rsplit(":", 1)[1]))
    await proxy.start()
    try:
        base = f"http://127.0.0.1:{proxy.port}"
        await generate(page, base, MODEL)
        await page.wait_for_function(
            "document.getElementById('output').textContent.split(' ').length >= 10"
        )
        proxy.interrupt()
        await state_starts_with(page, "reconnecting")
        await asyncio.sleep(1.5)  # EventSource retries (every `retry:` ms) and stays reconnecting
        assert await page.text_content("#state") == "reconnecting…"
        proxy.cut = False
        assert await state_starts_with(page, "completed") == "completed · finish reason: stop"
        snapshot = await snapshot_of_page_session(page, relay_url)
        assert await page.text_content("#output") == snapshot["text"]  # no gap, no duplicate
        assert len(snapshot["text"].split(" ")) == 60
    finally:
        await proxy.close()
