"""relay-client.js in a real headless Chromium against a real relay.

Each test opens a blank page on relay's origin (the test adds that one page to relay's
app: a page that Playwright made up would be on no address, and Chromium's local-network
checks would then block its WebSocket to 127.0.0.1), imports `/static/relay-client.js`
as a page would, and drives it with `page.evaluate`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.app import create_app
from relay.config import load_settings

MODEL = "mock:tokens=12,tps=0,ttft_ms=0"
BLANK = "<!doctype html><html><body><pre id=out></pre></body></html>"
TIMEOUT_MS = 20_000


async def blank_page(request: web.Request) -> web.Response:
    return web.Response(text=BLANK, content_type="text/html")


def relay_app(overrides: dict[str, Any] | None = None) -> web.Application:
    """relay with the default settings (and `overrides`), plus the blank test page."""
    app = create_app(load_settings(None, environ={}, overrides=overrides))
    app.router.add_get("/client-test", blank_page)
    return app


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    server = TestServer(relay_app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/")).rstrip("/")
    finally:
        await server.close()


async def open_page(browser: Any, origin: str) -> Any:  # playwright's Page
    page = await browser.new_page()
    await page.goto(f"{origin}/client-test")
    await page.evaluate("async () => { window.relay = await import('/static/relay-client.js'); }")
    return page


@pytest.mark.parametrize("transport", ["sse", "fetch", "websocket"])
async def test_a_session_is_started_and_read_to_its_end(
    browser: Any, relay_url: str, transport: str
) -> None:
    page = await open_page(browser, relay_url)
    result = await page.evaluate(
        """async ([model, transport]) => {
            const client = new relay.RelayClient({transport});
            const stream = await client.start({model, messages: [{role: "user", content: "hi"}]});
            const seen = [];
            for await (const event of stream) seen.push(event.id + ":" + event.type);
            const stored = sessionStorage.getItem("relay-session");
            return {seen, text: stream.text, state: stream.state, stored};
        }""",
        [MODEL, transport],
    )
    assert result["state"] == "done"
    assert len(result["text"].split()) == 12
    assert result["seen"][-1].endswith(":done")
    assert result["stored"] is None
