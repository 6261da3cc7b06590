"""relay-client.js in a real headless Chromium against a real relay: each transport reads a
session to its end; a cut connection is reconnected with backoff and nothing is lost or
doubled, and so is a half-open one (a frozen proxy) after the idle timeout, which relay's
pings hold off where the transport lets the page see them; the stream keeps no events
unless asked (`keepEvents`); a reloaded tab resumes from sessionStorage at exactly the
next event; stop() cancels while close() only disconnects; a session that already ended is
a 204; relay's `error` events and refusals reach the `error` callback with relay's message.

Each test opens a blank page on relay's origin (the test adds that one page to relay's app:
a page that Playwright made up would be on no address, and Chromium's local-network checks
would then block its WebSocket to 127.0.0.1), which imports `/static/relay-client.js` as
an app would; `page.evaluate` drives it. The page's `record(stream)` logs every callback,
and the id of every event (`stream.ids`: the stream itself keeps no events by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relay.app import create_app
from relay.config import load_settings
from tests.redis_server import free_port
from tests.relay_process import relay_process
from tests.web.conftest import serving
from tests.web.tcp_proxy import TcpProxy

FAST = "mock:tokens=12,tps=0,ttft_ms=0"
SLOW = "mock:tokens=60,tps=30,ttft_ms=0"  # two seconds: time to cut, reload or stop
MESSAGES = [{"role": "user", "content": "hi"}]
TRANSPORTS = ["sse", "fetch", "websocket"]
WAIT_MS = 20_000
UNKNOWN = "s_AAAAAAAAAAAAAAAAAAAAAA"

CALLBACKS = [
    "text", "reasoning", "status", "tool_call", "usage", "done", "error", "cancelled",
    "open", "reconnecting", "resumed", "end",
]  # fmt: skip

PAGE = """<!doctype html>
<html><body><script type="module">
import * as relay from "/static/relay-client.js";
window.relay = relay;
window.record = (stream) => {
  stream.log = [];
  stream.ids = [];
  stream.on("event", (event) => stream.ids.push(event.id));
  for (const type of %s) {
    stream.on(type, (data, event) => stream.log.push(
      {type, data: JSON.parse(JSON.stringify(data ?? null)), id: event ? event.id : null}));
  }
  window.stream = stream;
  return stream;
};
window.ready = true;
</script></body></html>
""" % (CALLBACKS,)  # noqa: UP031 (the page's braces would all need doubling in an f-string)


async def test_page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


def relay_app(overrides: dict[str, Any] | None = None) -> web.Application:
    """relay with the default settings (and `overrides`), plus the test page."""
    settings = load_settings(None, environ={}, overrides=overrides)
    app = create_app(settings)
    app.router.add_get("/client-test", test_page)
    return app


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    """conftest's relay, plus the test page."""
    async with serving(relay_app()) as url:
        yield url


async def open_page(browser: Any, origin: str) -> Any:  # playwright's Page
    page = await browser.new_page()
    await page.goto(f"{origin}/client-test")
    await page.wait_for_function("window.ready === true")
    return page


async def snapshot(base_url: str, session_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base_url}/v1/sessions/{session_id}") as response,
    ):
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def ended_snapshot(base_url: str, session_id: str) -> dict[str, Any]:
    for _ in range(200):
        answer = await snapshot(base_url, session_id)
        if answer["status"] != "running":
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {session_id} still running")


async def started_page(
    browser: Any, origin: str, options: dict[str, Any], model: str = SLOW
) -> Any:  # playwright's Page
    """A page on `origin` whose `new RelayClient(options)` has started a session of
    `model`, its stream recorded as `window.stream`."""
    page = await open_page(browser, origin)
    await page.evaluate(
        """async ([options, model, messages]) => {
            record(await new relay.RelayClient(options).start({model, messages}));
        }""",
        [options, model, MESSAGES],
    )
    return page


async def stream_snapshot(page: Any, base_url: str) -> dict[str, Any]:
    """The snapshot of the session the page's stream reads."""
    return await snapshot(base_url, await page.evaluate("stream.id"))


async def wait_for_words(page: Any, count: int) -> None:
    await page.wait_for_function(
        f"window.stream && window.stream.text.split(' ').length >= {count}", timeout=WAIT_MS
    )


async def wait_ended(page: Any) -> dict[str, Any]:
    """The stream's end: its state, text, ids and callback log."""
    await page.wait_for_function(
        "window.stream && ['done', 'error', 'cancelled', 'closed'].includes(window.stream.state)",
        timeout=WAIT_MS,
    )
    ended: dict[str, Any] = await page.evaluate(
        """() => ({state: stream.state, text: stream.text, lastEventId: stream.lastEventId,
                   ids: stream.ids, log: stream.log})"""
    )
    return ended


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Each of relay-client.js's transports in turn."""
    name: str = request.param
    return name


def of_type(log: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [entry for entry in log if entry["type"] == kind]


# --- reading a session ------------------------------------------------------------------


async def test_each_transport_reads_a_session_to_its_end(
    browser: Any, relay_url: str, transport: str
) -> None:
    page = await open_page(browser, relay_url)
    result = await page.evaluate(
        """async ([model, messages, transport]) => {
            const client = new relay.RelayClient({transport});
            const stream = record(await client.start({model, messages}));
            const iterated = [];
            for await (const event of stream) iterated.push(event);
            return {iterated, id: stream.id, text: stream.text, state: stream.state,
                    usage: stream.usage, finished: await stream.finished, log: stream.log,
                    stored: sessionStorage.getItem("relay-session")};
        }""",
        [FAST, MESSAGES, transport],
    )
    final = await snapshot(relay_url, result["id"])
    iterated = result["iterated"]
    assert [event["id"] for event in iterated] == list(range(1, final["last_event_id"] + 1))
    assert iterated[-1]["type"] == "done"
    assert result["finished"] == iterated[-1]
    assert result["state"] == "done"
    assert result["text"] == final["text"]
    assert len(final["text"].split()) == 12
    assert result["usage"] == final["usage"]
    # The callbacks saw what the iterator saw: text pieces, one status per event…
    texts = of_type(result["log"], "text")
    assert "".join(entry["data"]["text"] for entry in texts) == final["text"]
    assert [e["data"]["state"] for e in of_type(result["log"], "status")] == [
        "connecting",
        "generating",
    ]
    assert of_type(result["log"], "done")[0]["data"]["finish_reason"] == "stop"
    assert [entry["type"] for entry in result["log"]][-1] == "end"
    assert not of_type(result["log"], "resumed")  # it started at 0
    assert result["stored"] is None  # forgotten at the terminal event


async def test_a_key_on_a_relay_without_clients_does_no_harm(
    browser: Any, relay_url: str, transport: str
) -> None:
    """Without [[clients]] relay needs no key and ignores one (a socket is authenticated
    from the start: its `auth` is `already_authenticated`, which the client passes over)."""
    page = await open_page(browser, relay_url)
    state = await page.evaluate(
        """async ([model, messages, transport]) => {
            const client = new relay.RelayClient({transport, apiKey: "rk_any"});
            const stream = await client.start({model, messages});
            await stream.finished;
            return stream.state;
        }""",
        [FAST, MESSAGES, transport],
    )
    assert state == "done"


async def test_the_sse_parser_gives_the_same_events_however_the_text_is_cut(
    browser: Any, relay_url: str
) -> None:
    page = await open_page(browser, relay_url)
    stream = (
        'retry: 1000\r\n\r\nid: 1\nevent: delta\ndata: {"text":"a"}\n\n: ping\n\n'
        'id: 2\r\nevent: status\r\ndata: {"state":"x",\r\ndata: "message":"y"}\r\n\r\n'
        "data: plain\n\nid: 3\nevent: done\ndata:{}\n\n"
    )
    result = await page.evaluate(
        """(text) => {
            const whole = relay.parseSSE(text);
            const cuts = [];
            for (let at = 0; at <= text.length; at++) {
                const first = relay.parseSSE(text.slice(0, at));
                const second = relay.parseSSE(first.rest + text.slice(at));
                cuts.push(JSON.stringify([...first.events, ...second.events]));
            }
            return {whole, cuts};
        }""",
        stream,
    )
    assert result["whole"] == {
        "events": [
            {"id": "1", "type": "delta", "data": '{"text":"a"}'},
            {"id": "2", "type": "status", "data": '{"state":"x",\n"message":"y"}'},
            {"id": None, "type": "message", "data": "plain"},
            {"id": "3", "type": "done", "data": "{}"},
        ],
        "rest": "",
    }
    # Cut anywhere, even between a CR and its LF, the parts give the same events.
    assert set(result["cuts"]) == {json.dumps(result["whole"]["events"], separators=(",", ":"))}


async def test_a_tool_call_reaches_its_callback_and_the_stream(
    browser: Any, relay_url: str
) -> None:
    page = await open_page(browser, relay_url)
    result = await page.evaluate(
        """async (messages) => {
            const client = new relay.RelayClient();
            const stream = record(await client.start({model: "mock:tools=true,tps=0", messages}));
            const terminal = await stream.finished;
            return {id: stream.id, toolCalls: stream.toolCalls, log: stream.log, terminal};
        }""",
        MESSAGES,
    )
    final = await snapshot(relay_url, result["id"])
    assert final["tool_calls"] and result["toolCalls"] == final["tool_calls"]
    assert [entry["data"] for entry in of_type(result["log"], "tool_call")] == final["tool_calls"]
    assert json.loads(result["toolCalls"][0]["arguments"])  # complete JSON
    assert result["terminal"]["data"]["finish_reason"] == "tool_calls"


AGENT_EVENTS = [
    {"type": "status", "data": {"state": "thinking", "message": "Thinking…"}},
    {"type": "reasoning", "data": {"text": "The user greets; "}},
    {"type": "reasoning", "data": {"text": "greet back."}},
    {"type": "delta", "data": {"text": "Hello"}},
    {"type": "delta", "data": {"text": " there"}},
    {"type": "usage", "data": {"input_tokens": 1, "output_tokens": 2}},
    {"type": "done", "data": {"finish_reason": "stop", "usage": None}},
]


async def test_every_event_of_an_agent_reaches_its_callback(browser: Any, relay_url: str) -> None:
    """An external producer's session (reasoning, which the mock model has not): the
    page attaches with the id and read token the agent's backend handed it."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{relay_url}/v1/sessions", json={"producer": "external"}) as made:
            created = await made.json()
        page = await open_page(browser, relay_url)
        await page.evaluate(
            "(session) => { record(new relay.RelayClient().attach(session)); }",
            {"id": created["id"], "token": created["token"]},
        )
        await page.wait_for_function("stream.state === 'open'", timeout=WAIT_MS)
        batch = {"seq": 1, "events": AGENT_EVENTS}
        auth = {"Authorization": f"Bearer {created['producer_token']}"}
        url = f"{relay_url}/v1/sessions/{created['id']}/events"
        async with http.post(url, json=batch, headers=auth) as appended:
            assert appended.status == 201, await appended.text()
    ended = await wait_ended(page)
    got = await page.evaluate("({reasoning: stream.reasoning, usage: stream.usage})")
    assert [entry["type"] for entry in ended["log"]] == [
        "open", "status", "reasoning", "reasoning", "text", "text", "usage", "done", "end",
    ]  # fmt: skip
    assert [entry["data"] for entry in ended["log"][1:-1]] == [e["data"] for e in AGENT_EVENTS]
    assert got == {"reasoning": "The user greets; greet back.", "usage": AGENT_EVENTS[5]["data"]}
    assert ended["text"] == "Hello there"
    assert ended["ids"] == [1, 2, 3, 4, 5, 6, 7]


def declared(kind: str, name: str) -> set[str]:
    """The members relay-client.d.ts declares on class `name` (`kind` "class"), or the
    names it exports (`kind` "export")."""
    source = resources.files("relay.web").joinpath("relay-client.d.ts").read_text()
    if kind == "export":
        return set(re.findall(r"^export (?:class|function) (\w+)", source, re.MULTILINE))
    body = source.split(f"export class {name} ", 1)[1].split("\n}\n", 1)[0]
    return set(re.findall(r"^  (?:readonly )?(\w+)[(<:]", body, re.MULTILINE))


async def test_what_the_d_ts_declares_is_there(browser: Any, relay_url: str) -> None:
    page = await open_page(browser, relay_url)
    present = await page.evaluate(
        """([exports, clientMembers, streamMembers]) => {
            const client = new relay.RelayClient({storage: null});
            const stream = client.attach({id: "s_x", token: "rt_x"});
            stream.close();
            const missing = (names, object) => names.filter((name) => !(name in object));
            return {exports: missing(exports, relay), client: missing(clientMembers, client),
                    stream: missing(streamMembers, stream)};
        }""",
        [
            sorted(declared("export", "")),
            sorted(declared("class", "RelayClient") - {"constructor"}),
            sorted(declared("class", "RelayStream")),
        ],
    )
    assert present == {"exports": [], "client": [], "stream": []}
    assert {"start", "resume", "attach"} <= declared("class", "RelayClient")
    assert {"stop", "close", "on", "finished", "lastEventId"} <= declared("class", "RelayStream")


async def test_the_stream_keeps_only_the_events_it_is_asked_to(
    browser: Any, relay_url: str
) -> None:
    """`stream.events` is empty by default (a long session's events would all stay in the
    page), the last `keepEvents` with it; the text and the last id are kept either way,
    and a loop started before the first event gets every event."""
    page = await open_page(browser, relay_url)
    kept = await page.evaluate(
        """async ([model, messages]) => {
            const read = async (options) => {
                const stream = await new relay.RelayClient(options).start({model, messages});
                const iterated = [];
                for await (const event of stream) iterated.push(event.id);
                const again = [];
                for await (const event of stream) again.push(event.id);
                return {kept: stream.events.map((e) => e.id), iterated, again,
                        lastEventId: stream.lastEventId, text: stream.text, id: stream.id};
            };
            return [await read({}), await read({keepEvents: 3}),
                    await read({keepEvents: Infinity})];
        }""",
        [FAST, MESSAGES],
    )
    for got in kept:
        final = await snapshot(relay_url, got["id"])
        every = list(range(1, final["last_event_id"] + 1))
        assert got["iterated"] == every
        assert (got["lastEventId"], got["text"]) == (final["last_event_id"], final["text"])
    assert [got["kept"] for got in kept] == [[], every[-3:], every]
    assert [got["again"] for got in kept] == [[], every[-3:], every]  # after the end: the kept


# --- reconnecting -----------------------------------------------------------------------

RECONNECTS = "stream.log.filter((e) => e.type === 'reconnecting')"


async def test_a_cut_connection_is_reconnected_with_backoff_losing_nothing(
    browser: Any, relay_url: str, transport: str
) -> None:
    async with TcpProxy(relay_url) as proxy:
        backoff = {"initialMs": 100, "maxMs": 400, "jitter": 0.5}
        page = await started_page(browser, proxy.url, {"transport": transport, "backoff": backoff})
        await wait_for_words(page, 5)
        proxy.refuse()  # every connection is cut; new ones are cut at once
        await page.wait_for_function(f"{RECONNECTS}.length >= 4", timeout=WAIT_MS)
        # Counted in this order, an attempt between the two counts keeps the bound below.
        reconnects = await page.evaluate(f"{RECONNECTS}.length")
        turned_away = proxy.turned_away
        proxy.accept()
        ended = await wait_ended(page)
    # One connection per attempt (the last one may be still to come): EventSource's own
    # reconnect does not run beside the client's.
    assert reconnects - 1 <= turned_away <= reconnects
    final = await stream_snapshot(page, relay_url)
    assert ended["state"] == "done"
    assert ended["text"] == final["text"]
    assert ended["ids"] == list(range(1, final["last_event_id"] + 1))  # no gap, no double
    attempts = of_type(ended["log"], "reconnecting")
    assert [a["data"]["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
    for entry in attempts:  # 100, 200, 400, 400 … ms, each minus up to half at random
        ceiling = min(400, 100 * 2 ** (entry["data"]["attempt"] - 1))
        assert ceiling / 2 <= entry["data"]["delayMs"] <= ceiling
    # It came back from where it was, saying so.
    resumed = of_type(ended["log"], "resumed")
    assert resumed and resumed[-1]["data"]["reconnected"] is True
    assert 0 < resumed[-1]["data"]["lastEventId"] < final["last_event_id"]
    assert not of_type(ended["log"], "error")


async def test_back_online_the_waiting_reconnect_goes_at_once(browser: Any, relay_url: str) -> None:
    """A backoff far longer than the test waits: only the `online` event can end it."""
    async with TcpProxy(relay_url) as proxy:
        backoff = {"initialMs": 600000, "maxMs": 600000, "jitter": 0}
        page = await started_page(browser, proxy.url, {"backoff": backoff})
        await wait_for_words(page, 5)
        proxy.refuse()
        await page.wait_for_function(f"{RECONNECTS}.length === 1", timeout=WAIT_MS)
        proxy.accept()
        await page.context.set_offline(True)
        await page.context.set_offline(False)  # the page gets `online`
        ended = await wait_ended(page)
    final = await stream_snapshot(page, relay_url)
    assert ended["state"] == "done"
    assert ended["text"] == final["text"]
    assert [entry["data"]["delayMs"] for entry in of_type(ended["log"], "reconnecting")] == [600000]


IDLE_MS = 1500


async def test_a_frozen_connection_is_reconnected_after_the_idle_timeout(
    browser: Any, relay_url: str, transport: str
) -> None:
    """The proxy stops forwarding without closing (a half-open connection): nothing tells
    the page, but nothing comes either, and after `idleTimeoutMs` the client reconnects
    from the last id it had."""
    async with TcpProxy(relay_url) as proxy:
        options = {"transport": transport, "idleTimeoutMs": IDLE_MS}
        page = await started_page(browser, proxy.url, options)
        await wait_for_words(page, 5)
        proxy.freeze()
        ended = await wait_ended(page)
    final = await stream_snapshot(page, relay_url)
    assert proxy.frozen >= 1
    assert ended["state"] == "done"
    assert ended["text"] == final["text"]
    assert ended["ids"] == list(range(1, final["last_event_id"] + 1))  # no gap, no double
    attempts = of_type(ended["log"], "reconnecting")
    assert [a["data"]["reason"] for a in attempts] == [
        f"nothing received for {IDLE_MS} ms (idle timeout)"
    ]
    resumed = of_type(ended["log"], "resumed")
    assert resumed[-1]["data"]["reconnected"] is True
    assert resumed[-1]["data"]["lastEventId"] == attempts[0]["data"]["lastEventId"] > 0


async def test_relays_pings_keep_a_quiet_stream_open_where_the_page_sees_them(
    browser: Any, transport: str
) -> None:
    """A session with nothing to say for twice the idle timeout: fetch reads relay's
    `: ping` comments and the WebSocket gets the `pong` to its `ping`, so neither
    reconnects; EventSource hides comments, so an `sse` stream reconnects, and loses
    nothing by it."""
    async with serving(relay_app({"server": {"heartbeat_s": 0.2}})) as relay_url:
        async with aiohttp.ClientSession() as http:
            made = await http.post(f"{relay_url}/v1/sessions", json={"producer": "external"})
            created = await made.json()
            page = await open_page(browser, relay_url)
            options = {"transport": transport, "idleTimeoutMs": IDLE_MS}
            await page.evaluate(
                """([session, options]) => {
                    record(new relay.RelayClient(options).attach(session)); }""",
                [{"id": created["id"], "token": created["token"]}, options],
            )
            await page.wait_for_function("stream.state === 'open'", timeout=WAIT_MS)
            await asyncio.sleep(2 * IDLE_MS / 1000)
            auth = {"Authorization": f"Bearer {created['producer_token']}"}
            url = f"{relay_url}/v1/sessions/{created['id']}/events"
            async with http.post(url, json={"seq": 1, "events": AGENT_EVENTS}, headers=auth):
                pass
        ended = await wait_ended(page)
    reconnects = of_type(ended["log"], "reconnecting")
    assert ended["state"] == "done"
    assert ended["ids"] == list(range(1, len(AGENT_EVENTS) + 1))
    assert ended["text"] == "Hello there"
    if transport == "sse":
        assert reconnects, "EventSource cannot see relay's pings: the quiet stream reconnects"
        assert all("idle timeout" in entry["data"]["reason"] for entry in reconnects)
    else:
        assert reconnects == []


# --- a reloaded tab ---------------------------------------------------------------------


async def test_a_reloaded_page_resumes_from_session_storage_at_the_next_event(
    browser: Any, relay_url: str, transport: str
) -> None:
    page = await started_page(browser, relay_url, {"transport": transport})
    await wait_for_words(page, 10)
    await page.reload()
    await page.wait_for_function("window.ready === true")
    stored = await page.evaluate("JSON.parse(sessionStorage.getItem('relay-session'))")
    assert stored["lastEventId"] > 0
    await page.evaluate(
        "(transport) => { record(new relay.RelayClient({transport}).resume()); }", transport
    )
    ended = await wait_ended(page)
    final = await snapshot(relay_url, stored["id"])
    assert ended["state"] == "done"
    assert ended["ids"] == list(range(stored["lastEventId"] + 1, final["last_event_id"] + 1))
    assert ended["text"] == final["text"]  # the stored text, then exactly the rest
    assert stored["text"] and final["text"].startswith(stored["text"])
    resumed = of_type(ended["log"], "resumed")
    assert resumed[0]["data"] == {"lastEventId": stored["lastEventId"], "reconnected": False}
    assert await page.evaluate("sessionStorage.getItem('relay-session')") is None


async def test_resume_with_nothing_stored_is_null(browser: Any, relay_url: str) -> None:
    page = await open_page(browser, relay_url)
    assert await page.evaluate("new relay.RelayClient().resume()") is None
    forgotten = await page.evaluate(
        """async ([model, messages]) => {
            const client = new relay.RelayClient();
            const stream = await client.start({model, messages});
            stream.close();
            const before = client.remembered().id === stream.id;
            client.forget();
            return [before, client.remembered(), client.resume()];
        }""",
        [SLOW, MESSAGES],
    )
    assert forgotten == [True, None, None]


# --- stop and close ---------------------------------------------------------------------


async def test_stop_cancels_the_session(browser: Any, relay_url: str, transport: str) -> None:
    page = await started_page(browser, relay_url, {"transport": transport})
    await wait_for_words(page, 3)
    terminal = await page.evaluate("stream.stop()")
    ended = await wait_ended(page)
    final = await stream_snapshot(page, relay_url)
    assert terminal["type"] == "cancelled"
    assert terminal["data"]["reason"] == "client"
    assert final["status"] == "cancelled"
    assert ended["state"] == "cancelled"
    assert ended["text"] == final["text"]
    assert await page.evaluate("sessionStorage.getItem('relay-session')") is None


async def test_close_only_disconnects_and_the_session_completes(
    browser: Any, relay_url: str, transport: str
) -> None:
    page = await started_page(browser, relay_url, {"transport": transport})
    await wait_for_words(page, 3)
    closed_at = await page.evaluate("stream.close(); stream.lastEventId")
    ended = await wait_ended(page)
    final = await ended_snapshot(relay_url, await page.evaluate("stream.id"))
    assert ended["state"] == "closed"
    assert final["status"] == "completed"
    assert final["last_event_id"] > closed_at
    assert await page.evaluate("stream.finished") is None
    # What a reload would resume from is still there.
    stored = await page.evaluate("JSON.parse(sessionStorage.getItem('relay-session'))")
    assert stored["lastEventId"] >= closed_at


# --- the end of a session ---------------------------------------------------------------


async def test_attaching_after_the_end_is_a_204_and_the_stream_ends(
    browser: Any, relay_url: str, transport: str
) -> None:
    page = await open_page(browser, relay_url)
    first = await page.evaluate(
        """async ([model, messages]) => {
            const stream = await new relay.RelayClient({storage: null}).start({model, messages});
            await stream.finished;
            return {id: stream.id, token: stream.token, lastEventId: stream.lastEventId};
        }""",
        [FAST, MESSAGES],
    )
    await page.evaluate(
        "([session, transport]) => { record(new relay.RelayClient({transport}).attach(session)); }",
        [first, transport],
    )
    ended = await wait_ended(page)
    assert ended["state"] == "done"  # how it ended, from the snapshot
    assert ended["ids"] == []
    assert [entry["type"] for entry in ended["log"]] == ["end"]
    assert ended["log"][0]["data"]["reason"] == "ended"
    assert await page.evaluate("stream.finished") is None
    assert await page.evaluate("sessionStorage.getItem('relay-session')") is None


async def test_relays_error_event_reaches_the_error_callback(
    browser: Any, relay_url: str, transport: str
) -> None:
    page = await started_page(
        browser, relay_url, {"transport": transport}, "mock:fail_after=3,tps=0"
    )
    ended = await wait_ended(page)
    final = await stream_snapshot(page, relay_url)
    assert ended["state"] == "error"
    errors = of_type(ended["log"], "error")
    assert len(errors) == 1
    assert errors[0]["data"] == final["error"]
    assert errors[0]["data"]["code"] == "upstream_error"
    assert errors[0]["data"]["message"]
    assert errors[0]["id"] == final["last_event_id"]
    assert not of_type(ended["log"], "reconnecting")


async def test_an_unknown_session_is_refused_with_relays_message(
    browser: Any, relay_url: str, transport: str
) -> None:
    page = await open_page(browser, relay_url)
    await page.evaluate(
        "([id, transport]) => { record(new relay.RelayClient({transport}).attach("
        "{id, token: 'rt_x'})); }",
        [UNKNOWN, transport],
    )
    ended = await wait_ended(page)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{relay_url}/v1/sessions/{UNKNOWN}/events?token=rt_x") as response,
    ):
        expected = (await response.json())["error"]
    assert ended["state"] == "error"
    errors = of_type(ended["log"], "error")
    assert [(e["data"]["code"], e["data"]["message"]) for e in errors] == [
        (expected["code"], expected["message"])
    ]
    assert errors[0]["id"] is None  # not an event of the session
    assert not of_type(ended["log"], "reconnecting")
    assert (await page.evaluate("stream.finished"))["data"]["code"] == expected["code"]


async def test_start_rejects_with_relays_code_status_and_message(
    browser: Any, relay_url: str
) -> None:
    page = await open_page(browser, relay_url)
    body = {"model": "nosuch-model", "messages": MESSAGES}
    rejected = await page.evaluate(
        """async (body) => {
            try {
                await new relay.RelayClient().start(body);
                return null;
            } catch (error) {
                return {name: error.name, code: error.code, status: error.status,
                        message: error.message, isError: error instanceof Error};
            }
        }""",
        body,
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{relay_url}/v1/sessions", json=body) as response,
    ):
        expected = (await response.json())["error"]
        status = response.status
    assert rejected == {
        "name": "RelayError",
        "code": expected["code"],
        "status": status,
        "message": expected["message"],
        "isError": True,
    }
    assert expected["code"] == "unknown_model"


# --- a frontend on its own origin, with [[clients]] -------------------------------------

KEY = "rk_web_Zx3Cv6Bn9Mq2We5Rt8Yu"


class Frontend:
    """An app on its own origin: its pages, a copy of relay-client.js (as an app would
    ship it), and its backend, which holds the client key: `POST /api/start` creates a
    session on relay and hands the page `{id, token}`; `POST /api/stop` cancels one."""

    def __init__(self) -> None:
        self.relay = ""  # known once relay, which must list this origin, is started
        self.app = web.Application()
        self.app.router.add_get("/client-test", test_page)
        self.app.router.add_get("/static/relay-client.js", self.client_copy)
        self.app.router.add_post("/api/start", self.start)
        self.app.router.add_post("/api/stop", self.stop)

    async def client_copy(self, request: web.Request) -> web.Response:
        source = resources.files("relay.web").joinpath("relay-client.js").read_text()
        return web.Response(text=source, content_type="text/javascript")

    async def start(self, request: web.Request) -> web.Response:
        answer, status = await self.call("POST", "/v1/sessions", await request.json())
        if status != 201:
            return web.json_response(answer, status=status)
        return web.json_response({"id": answer["id"], "token": answer["token"]})

    async def stop(self, request: web.Request) -> web.Response:
        session_id = (await request.json())["id"]
        answer, status = await self.call("DELETE", f"/v1/sessions/{session_id}")
        return web.json_response(answer, status=status)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[Any, int]:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.relay + path, json=body, headers=headers) as response,
        ):
            return await response.json(), response.status


@pytest.fixture
async def frontend() -> AsyncIterator[tuple[Frontend, str]]:
    """The frontend and its origin, and behind it a relay whose client `web` (key KEY)
    lists that origin."""
    front = Frontend()
    async with serving(front.app) as origin:
        digest = hashlib.sha256(KEY.encode()).hexdigest()
        clients = [{"name": "web", "api_key_sha256": digest, "origins": [origin]}]
        async with serving(relay_app({"clients": clients})) as relay:
            front.relay = relay
            yield front, origin


async def stopped_through(page: Any, front: Frontend) -> tuple[dict[str, Any], dict[str, Any]]:
    """The page's `stream.stop()`: a `cancelled` session whose text is what the page had;
    what the page recorded and the session's final snapshot."""
    terminal = await page.evaluate("stream.stop()")
    ended = await wait_ended(page)
    final, _ = await front.call("GET", f"/v1/sessions/{await page.evaluate('stream.id')}")
    assert terminal["type"] == "cancelled"
    assert final["status"] == "cancelled"
    assert ended["text"] == final["text"]
    return ended, final


async def test_a_page_holding_the_key_starts_reads_and_stops_across_origins(
    browser: Any, frontend: tuple[Frontend, str], transport: str
) -> None:
    front, origin = frontend
    page = await started_page(
        browser, origin, {"baseUrl": front.relay, "apiKey": KEY, "transport": transport}
    )
    await wait_for_words(page, 3)
    ended, final = await stopped_through(page, front)
    assert ended["ids"][0] == 1
    assert ended["ids"] == list(range(1, final["last_event_id"] + 1))


async def test_the_read_token_flow_through_the_apps_backend(
    browser: Any, frontend: tuple[Frontend, str], transport: str
) -> None:
    """The page holds no key: the app's backend starts and stops; the page reads with the
    token. relay itself refuses the page's own cancel (a read token cannot cancel)."""
    front, origin = frontend
    options = {"baseUrl": front.relay, "transport": transport,
               "startUrl": "/api/start", "stopUrl": "/api/stop"}  # fmt: skip
    page = await started_page(browser, origin, options)
    await wait_for_words(page, 3)
    refused = await page.evaluate(
        """async (baseUrl) => {
            const url = `${baseUrl}/v1/sessions/${stream.id}?token=${stream.token}`;
            return (await fetch(url, {method: "DELETE"})).status;
        }""",
        front.relay,
    )
    assert refused == 401
    await stopped_through(page, front)
    # And a start the backend passes a refusal of: the page gets relay's message.
    rejected = await page.evaluate(
        """async (options) => {
            const client = new relay.RelayClient(options);
            try { await client.start({model: "nosuch", messages: []}); }
            catch (error) { return [error.status, error.code, error.message]; }
        }""",
        options,
    )
    assert rejected[0] == 400
    assert rejected[1] == "invalid_request"
    assert "messages" in rejected[2]


# --- `relay serve` ----------------------------------------------------------------------


async def test_through_relay_serve_a_reloaded_page_resumes_to_the_end(
    browser: Any, tmp_path: Path
) -> None:
    """The module as `relay serve` ships it: the page imports it from /static/ (any page of
    relay's origin will do: here the .d.ts, shown as text)."""
    config = tmp_path / "relay.toml"
    config.write_text("[server]\ndrain_timeout_s = 0\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with relay_process(config, port, tmp_path / "relay.log"):
        page = await browser.new_page()
        await page.goto(f"{base}/static/relay-client.d.ts")
        start = """async ([model, messages]) => {
            window.relay = await import("/static/relay-client.js");
            window.stream = await new relay.RelayClient().start({model, messages});
        }"""
        await page.evaluate(start, [SLOW, MESSAGES])
        await wait_for_words(page, 10)
        await page.reload()
        resumed = await page.evaluate(
            """async () => {
                const relay = await import("/static/relay-client.js");
                const stream = new relay.RelayClient({transport: "websocket"}).resume();
                const from = stream.lastEventId;
                const ids = [];
                for await (const event of stream) ids.push(event.id);
                return {from, ids, id: stream.id, text: stream.text, state: stream.state};
            }"""
        )
        final = await snapshot(base, resumed["id"])
    assert resumed["state"] == "done"
    assert resumed["ids"] == list(range(resumed["from"] + 1, final["last_event_id"] + 1))
    assert resumed["text"] == final["text"]


async def test_a_page_on_a_listed_origin_may_import_the_module_from_relay(
    browser: Any, frontend: tuple[Frontend, str]
) -> None:
    """A module script from another origin needs CORS: relay's answer carries it for the
    origins its clients list (an app would rather ship its own copy)."""
    front, origin = frontend
    page = await open_page(browser, origin)
    imported = await page.evaluate(
        """async (baseUrl) => {
            const module = await import(baseUrl + "/static/relay-client.js");
            return typeof module.RelayClient;
        }""",
        front.relay,
    )
    assert imported == "function"
