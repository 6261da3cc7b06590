"""The demo page in a real headless Chromium: generate, reload mid-stream, resume.

Chromium comes from Debian (`apt-get install chromium`); Playwright drives it through
`executable_path`, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from relay.app import create_app
from relay.config import load_settings
from tests.system_programs import missing, require_program

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODEL = "mock:tokens=60,tps=30,ttft_ms=0"


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    server = TestServer(create_app(load_settings(None, environ={})), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def page(tmp_path):  # type: ignore[no-untyped-def]
    executable = require_program("chromium", "chromium-browser", env="CHROMIUM")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[test]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def test_the_page_resumes_its_stream_after_a_reload(page, relay_url: str) -> None:  # type: ignore[no-untyped-def]
    await page.goto(relay_url + "/")
    await page.fill("input[name=model]", MODEL)
    await page.click("button[type=submit]")
    # Reload while the generation is mid-way: some words shown, not all.
    await page.wait_for_function(
        "document.getElementById('output').textContent.split(' ').length >= 10"
    )
    before = await page.text_content("#output")
    await page.reload()
    await page.wait_for_function(
        "document.getElementById('state').textContent.startsWith('done')", timeout=20_000
    )
    after = await page.text_content("#output")
    session_id = await page.evaluate("JSON.parse(localStorage.getItem('relay-demo')).id")
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{relay_url}/v1/sessions/{session_id}") as response,
    ):
        snapshot = await response.json()
    assert snapshot["status"] == "completed"
    assert len(snapshot["text"].split(" ")) == 60
    assert after == snapshot["text"]  # no gap, no duplicate across the reload
    assert snapshot["text"].startswith(before or "")
