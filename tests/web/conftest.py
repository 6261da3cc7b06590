"""What the browser tests share: a relay with the default settings on a real socket, and
Debian's Chromium driven by Playwright through `executable_path` (nothing is downloaded)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.app import create_app
from relay.config import load_settings
from tests.system_programs import missing, require_program

# What a root, offline, headless Chromium needs to start quietly (see the env notes).
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


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` on a real socket of 127.0.0.1: its origin, without the trailing slash."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    async with serving(create_app(load_settings(None, environ={}))) as url:
        yield url


@pytest.fixture
async def browser():  # type: ignore[no-untyped-def]
    executable = require_program("chromium", "chromium-browser", env="CHROMIUM")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing("playwright is not installed (pip install -e '.[test]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()
