"""The WebSocket API in a real headless Chromium: a page on a client's origin (served by
the test, another port) opens `new WebSocket(…/v1/ws)`, which can send no header,
authenticates with an `auth` message, starts a session and reads its text; a page on
an origin that no client lists is refused at the upgrade, and sees the socket close."""

from __future__ import annotations

from aiohttp import web

from relay.app import create_app
from relay.config import load_settings
from tests.web import test_cors_browser
from tests.web.test_cors_browser import KEY, StartServer, client, state_of

start_server = test_cors_browser.start_server  # the fixture: pages and relays on free ports

MODEL = "mock:tokens=12,tps=0,ttft_ms=0"

# `#relay=ws://…&key=…`: `#state` says how far it got: `done: <text>`, `error: <code>`,
# or `closed: <close code>` when the socket ended before the session did.
PAGE = """<!doctype html>
<html><body><pre id="state">starting</pre><pre id="output"></pre><script>
const given = new URLSearchParams(location.hash.slice(1));
const state = document.getElementById("state");
const output = document.getElementById("output");
const socket = new WebSocket(given.get("relay") + "/v1/ws");
socket.onopen = () => {
  socket.send(JSON.stringify({type: "auth", key: given.get("key")}));
  socket.send(JSON.stringify(
    {type: "start", model: given.get("model"), messages: [{role: "user", content: "hi"}]}
  ));
};
socket.onmessage = (frame) => {
  const message = JSON.parse(frame.data);
  if (message.type === "session") state.textContent = "started " + message.session;
  if (message.type === "error") state.textContent = "error: " + message.code;
  if (message.type !== "event") return;
  if (message.event === "delta") output.textContent += message.data.text;
  if (message.event === "done") {
    state.textContent = "done: " + output.textContent;
    socket.close();
  }
};
socket.onclose = (event) => {
  if (!state.textContent.startsWith("done")) state.textContent = "closed: " + event.code;
};
</script></body></html>
"""


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


def page_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", page)
    return app


async def relay_for(start_server: StartServer, origin: str) -> str:
    """A relay whose client `web` has its pages on `origin`; its ws:// base URL."""
    overrides = {"clients": [client("web", KEY, origin)]}
    url = await start_server(create_app(load_settings(None, environ={}, overrides=overrides)))
    return "ws" + url.removeprefix("http")


async def test_a_page_starts_and_reads_a_session_over_a_websocket(  # type: ignore[no-untyped-def]
    browser, start_server: StartServer
) -> None:
    frontend = await start_server(page_app())
    relay = await relay_for(start_server, frontend)
    state = await state_of(browser, f"{frontend}/#relay={relay}&key={KEY}&model={MODEL}", "done")
    assert len(state.removeprefix("done: ").split()) == 12


async def test_a_page_on_an_origin_no_client_lists_is_refused(  # type: ignore[no-untyped-def]
    browser, start_server: StartServer
) -> None:
    frontend = await start_server(page_app())
    elsewhere = await start_server(page_app())
    relay = await relay_for(start_server, frontend)
    url = f"{elsewhere}/#relay={relay}&key={KEY}&model={MODEL}"
    assert await state_of(browser, url, "closed") == "closed: 1006"
