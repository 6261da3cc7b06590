"""CORS in a real headless Chromium: a page served from another origin (a second aiohttp
server, another port) creates a session with `fetch` and a client key, then reads it
with `EventSource` and the read token, as a frontend does. It works on the client's
origin; on any other the browser blocks it, and the page sees that. A read token that
leaked to another site's page does not open the stream there either, even on the site of
another client (whose pages may read relay's answers)."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.app import create_app
from relay.config import load_settings

KEY = "rk_web_Zx3Cv6Bn9Mq2We5Rt8Yu"
ADMIN_KEY = "rk_admin_Lk8Jh5Gf2Ds4Aq7Wz1Xc"
MODEL = "mock:tokens=12,tps=0,ttft_ms=0"
STATE_TIMEOUT_MS = 15_000

# The frontend: `#relay=…&key=…` creates a session and follows it; `#relay=…&events=…`
# follows a session it was handed (its events URL, with the token). `#state` says how far
# it got: `done: <text>`, or `blocked: fetch` / `blocked: events` when the browser refused.
PAGE = """<!doctype html>
<html><body><pre id="state">starting</pre><pre id="output"></pre><script>
const given = new URLSearchParams(location.hash.slice(1));
const state = document.getElementById("state");
const output = document.getElementById("output");
function follow(url) {
  const source = new EventSource(url);
  source.addEventListener("delta", (e) => { output.textContent += JSON.parse(e.data).text; });
  source.addEventListener("done", () => {
    source.close();
    state.textContent = "done: " + output.textContent;
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) state.textContent = "blocked: events";
  };
}
async function create() {
  const response = await fetch(given.get("relay") + "/v1/sessions", {
    method: "POST",
    headers: {"Authorization": "Bearer " + given.get("key"), "Content-Type": "application/json"},
    body: JSON.stringify({model: given.get("model"), messages: [{role: "user", content: "hi"}]}),
  });
  const created = await response.json();
  state.textContent = "created " + response.headers.get("Location");
  follow(given.get("relay") + created.events_url + "?token=" + created.token);
}
if (given.has("events")) follow(given.get("relay") + given.get("events"));
else create().catch((error) => { state.textContent = "blocked: fetch (" + error.name + ")"; });
</script></body></html>
"""


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


StartServer = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start an app on 127.0.0.1 and a free port; its base URL. Closed at the end."""
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/")).rstrip("/")

    yield start
    for server in reversed(servers):
        await server.close()


def page_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", page)
    return app


def client(name: str, key: str, origin: str) -> dict[str, Any]:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return {"name": name, "api_key_sha256": digest, "origins": [origin]}


async def relay_for(start_server: StartServer, origin: str, *others: dict[str, Any]) -> str:
    """A relay with the client `web`, whose pages are on `origin`, and `others`."""
    overrides = {"clients": [client("web", KEY, origin), *others]}
    return await start_server(create_app(load_settings(None, environ={}, overrides=overrides)))


async def state_of(browser, url: str, prefix: str) -> str:  # type: ignore[no-untyped-def]
    """Open `url` in a new page; its `#state` once it starts with `prefix`."""
    opened = await browser.new_page()
    try:
        await opened.goto(url)
        await opened.wait_for_function(
            f"document.getElementById('state').textContent.startsWith({prefix!r})",
            timeout=STATE_TIMEOUT_MS,
        )
        state: str = await opened.text_content("#state")
        return state
    finally:
        await opened.close()


async def test_a_page_on_the_clients_origin_creates_and_reads_a_session(  # type: ignore[no-untyped-def]
    browser, start_server: StartServer
) -> None:
    frontend = await start_server(page_app())
    relay = await relay_for(start_server, frontend)
    state = await state_of(browser, f"{frontend}/#relay={relay}&key={KEY}&model={MODEL}", "done")
    assert len(state.removeprefix("done: ").split()) == 12


async def test_a_page_on_another_origin_is_blocked_and_sees_it(  # type: ignore[no-untyped-def]
    browser, start_server: StartServer
) -> None:
    frontend = await start_server(page_app())
    elsewhere = await start_server(page_app())
    relay = await relay_for(start_server, frontend)
    url = f"{elsewhere}/#relay={relay}&key={KEY}&model={MODEL}"
    assert await state_of(browser, url, "blocked") == "blocked: fetch (TypeError)"


async def test_a_leaked_read_token_does_not_open_the_stream_on_another_site(  # type: ignore[no-untyped-def]
    browser, start_server: StartServer
) -> None:
    frontend = await start_server(page_app())
    elsewhere = await start_server(page_app())
    # Another client's site: the browser would let its pages read relay's answers.
    relay = await relay_for(start_server, frontend, client("admin", ADMIN_KEY, elsewhere))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{relay}/v1/sessions", json=body, headers={"Authorization": f"Bearer {KEY}"}
        ) as response,
    ):
        created = json.loads(await response.text())
    events = urllib.parse.quote(f"{created['events_url']}?token={created['token']}", safe="")
    assert await state_of(browser, f"{elsewhere}/#relay={relay}&events={events}", "blocked") == (
        "blocked: events"
    )
    # The same token on the owner's site opens it.
    assert (await state_of(browser, f"{frontend}/#relay={relay}&events={events}", "done")) != ""
