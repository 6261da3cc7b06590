"""The chat page at `/` in a real headless Chromium against a real `relay serve`: a
two-turn conversation (each turn sent with the messages before it), a reload mid-stream
(the answer once, with its "resumed from event N" marker), Stop (the session ends
`cancelled`), relay's own errors shown with their message (an upstream failure, an
unknown model, a missing key), two tabs on one session (and a tab that opens after the
one that asked was closed), New chat, the WebSocket transport, a cut network, reasoning
and tool calls, the keyboard, a phone-sized screen, light and dark.

Every test writes screenshots of the states it goes through, under `$RELAY_SCREENSHOTS/
<test>/` when that is set, else under the test's own `tmp_path` (`screenshots/`).
Chromium comes from Debian; Playwright drives it through `executable_path`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from relay.providers.mock import words_in
from tests.redis_server import free_port
from tests.relay_process import relay_process
from tests.web.tcp_proxy import TcpProxy

WAIT_MS = 20_000
SLOW = "mock:tokens=80,tps=20,ttft_ms=0"  # four seconds: time to reload, stop, open a tab
LONG = "mock:tokens=1000,tps=20,ttft_ms=0"  # still running when the test acts on it
RIVERS = "Tell me about rivers."


def answer_js(turn: int) -> str:
    """The answer of the conversation's `turn` (1, 2, …) in the page's DOM."""
    return f"document.querySelectorAll('article.assistant')[{turn - 1}]"


Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """Start `relay serve` with this TOML (and environment) on a free port: its base URL.
    Every one started is stopped at the end."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(config: str = "", env: Mapping[str, str] | None = None) -> str:
            port = free_port()
            path = tmp_path / f"relay-{port}.toml"
            path.write_text(config)
            log = tmp_path / f"relay-{port}.log"
            await stack.enter_async_context(relay_process(path, port, log, env=env))
            return f"http://127.0.0.1:{port}"

        yield start


@pytest.fixture
async def relay(serve: Serve) -> str:
    return await serve()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    root = os.environ.get("RELAY_SCREENSHOTS")
    folder = Path(root) / request.node.name if root else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Chat:
    """One tab of the chat page, and what a person does and sees there."""

    def __init__(self, page: Any, base: str, screenshots: Path) -> None:
        self.page = page
        self.base = base
        self.screenshots = screenshots
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    async def open(self, query: str = "") -> None:
        await self.page.goto(f"{self.base}/{query}")
        await self.ready()

    async def ready(self) -> None:
        await self.page.wait_for_function("document.body.dataset.ready === 'true'")

    async def choose(self, model: str) -> None:
        listed = await self.page.eval_on_selector_all(
            "#model option", "options => options.map(o => o.value)"
        )
        if model in listed:
            await self.page.select_option("#model", model)
        else:
            await self.page.select_option("#model", "")  # Other…
            await self.page.fill("#custom-model", model)

    async def send(self, prompt: str) -> None:
        await self.page.fill("#prompt", prompt)
        await self.page.press("#prompt", "Enter")

    async def ask(self, model: str, prompt: str = RIVERS) -> None:
        await self.choose(model)
        await self.send(prompt)

    async def answer_ends(self, state: str, turn: int = 1) -> dict[str, str]:
        """Wait for the answer of `turn` to end in `state`; its session, text and notes."""
        await self.page.wait_for_function(
            f"{answer_js(turn)}?.dataset.state === {state!r}", timeout=WAIT_MS
        )
        return await self.answer(turn)

    async def answer(self, turn: int = 1) -> dict[str, str]:
        answer: dict[str, str] = await self.page.evaluate(
            f"""(() => {{
              const answer = {answer_js(turn)};
              return {{session: answer.dataset.session, state: answer.dataset.state,
                       text: answer.querySelector(':scope > .text').textContent,
                       marker: answer.querySelector('.marker').textContent,
                       end: answer.querySelector('.end').textContent,
                       usage: answer.querySelector('.usage').textContent}};
            }})()"""
        )
        return answer

    async def words_shown(self, at_least: int, turn: int = 1) -> None:
        await self.page.wait_for_function(
            f"{answer_js(turn)}?.querySelector(':scope > .text').textContent.split(' ').length"
            f" >= {at_least}",
            timeout=WAIT_MS,
        )

    async def text(self, selector: str) -> str:
        text: str = await self.page.text_content(selector)
        return text

    async def shoot(self, name: str) -> None:
        await self.page.screenshot(path=str(self.screenshots / f"{name}.png"), full_page=True)


NewChat = Callable[..., Awaitable[Chat]]  # opens a tab: (base, context=None, **options)


@pytest.fixture
async def new_chat(browser, screenshots: Path) -> AsyncIterator[NewChat]:  # type: ignore[no-untyped-def]
    """Open tabs of the chat page (`context`: share one browser profile, as tabs do);
    none may have thrown a JavaScript error by the end."""
    contexts: list[Any] = []
    chats: list[Chat] = []

    async def open_chat(base: str, context: Any = None, **options: Any) -> Chat:
        if context is None:
            context = await browser.new_context(**options)
            contexts.append(context)
        chat = Chat(await context.new_page(), base, screenshots)
        chats.append(chat)
        return chat

    yield open_chat
    for context in contexts:
        await context.close()
    assert [error for chat in chats for error in chat.errors] == []


async def asking(
    new_chat: NewChat, base: str, model: str, prompt: str = RIVERS, **options: Any
) -> Chat:
    """A new tab of the chat page at `base` (browser context `options`) that has asked
    `model` `prompt`."""
    chat = await new_chat(base, **options)
    await chat.open()
    await chat.ask(model, prompt)
    return chat


async def snapshot(base: str, session_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/v1/sessions/{session_id}") as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def create(base: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/v1/sessions", json=body) as response,
    ):
        answer: dict[str, Any] = await response.json()
        return response.status, answer


def usage_line(session: dict[str, Any]) -> str:
    """What the page shows under an answer for the session's final usage."""
    usage = session["usage"]
    return f"{usage['input_tokens']} input · {usage['output_tokens']} output tokens"


async def once_ended(base: str, session_id: str) -> dict[str, Any]:
    """The session's snapshot once it is no longer running."""
    async with asyncio.timeout(WAIT_MS / 1000):
        while (found := await snapshot(base, session_id))["status"] == "running":
            await asyncio.sleep(0.1)
    return found


async def generated_text(base: str, model: str, messages: list[dict[str, str]]) -> str:
    """The text relay generates for these messages, asked directly (the mock is
    deterministic: the same model and messages give the same words)."""
    status, created = await create(base, {"model": model, "messages": messages})
    assert status == 201
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}{created['events_url']}") as stream,
    ):
        await stream.read()  # to the terminal event
    return str((await snapshot(base, created["id"]))["text"])


async def test_a_two_turn_conversation_sends_each_turn_with_the_messages_before_it(
    new_chat: NewChat, relay: str
) -> None:
    chat = await new_chat(relay)
    await chat.open()
    # The picker lists what relay's `/v1/models` does, the first one chosen, and Other….
    async with aiohttp.ClientSession() as http, http.get(f"{relay}/v1/models") as response:
        listed = [model["id"] for model in (await response.json())["data"]]
    options = await chat.page.eval_on_selector_all("#model option", "all => all.map(o => o.value)")
    assert options == [*listed, ""]
    assert await chat.page.input_value("#model") == listed[0]
    model = "mock:tokens=40,tps=20,ttft_ms=0"
    await chat.ask(model)
    await chat.words_shown(3)
    # While it streams: the status line is relay's own `status` event, the cursor shows.
    assert await chat.text("#status") == "generating · the model is answering"
    assert await chat.page.locator("article.assistant > .text.streaming").count() == 1
    await chat.shoot("1-first-turn-streaming")
    first = await chat.answer_ends("done")
    assert first["end"] == "completed · finish reason: stop"
    await chat.send("And lakes?")
    second = await chat.answer_ends("done", turn=2)
    await chat.shoot("2-second-turn-done")

    one, two = await snapshot(relay, first["session"]), await snapshot(relay, second["session"])
    assert (first["text"], second["text"]) == (one["text"], two["text"])
    # Under each answer, small, its final usage.
    assert (first["usage"], second["usage"]) == (usage_line(one), usage_line(two))
    assert one["usage"]["output_tokens"] == 40
    assert await chat.page.is_visible("article.assistant .usage")
    history = [
        {"role": "user", "content": RIVERS},
        {"role": "assistant", "content": one["text"]},
        {"role": "user", "content": "And lakes?"},
    ]
    # The second turn was asked with the first question and answer before it.
    assert two["usage"]["input_tokens"] == sum(words_in(m["content"]) for m in history)
    fast = model.replace("tps=20", "tps=0")
    assert two["text"] == await generated_text(relay, fast, history)
    assert two["text"] != await generated_text(relay, fast, history[2:])

    # A reload keeps the conversation, and starts nothing new.
    await chat.page.reload()
    await chat.ready()
    shown = await chat.page.locator("article .text").all_text_contents()
    assert shown == [RIVERS, one["text"], "And lakes?", two["text"]]
    usages = await chat.page.locator("article .usage").all_text_contents()
    assert usages == [usage_line(one), usage_line(two)]
    await chat.shoot("3-after-reload")
    await chat.page.click("#new-chat")  # and a new chat starts from nothing
    assert await chat.page.locator("article").count() == 0
    await chat.page.reload()
    await chat.ready()
    assert await chat.page.locator("article").count() == 0


async def test_a_reload_mid_stream_resumes_and_shows_the_answer_once(
    new_chat: NewChat, relay: str
) -> None:
    chat = await asking(new_chat, relay, SLOW)
    await chat.words_shown(10)
    await chat.shoot("1-before-reload")
    await chat.page.reload()
    await chat.ready()
    await chat.page.wait_for_selector(".marker:not([hidden])", timeout=WAIT_MS)
    await chat.shoot("2-resumed")
    answer = await chat.answer_ends("done")
    await chat.shoot("3-done")
    resumed = re.fullmatch(r"resumed from event (\d+)", answer["marker"])
    assert resumed is not None, answer["marker"]
    session = await snapshot(relay, answer["session"])
    assert 0 < int(resumed.group(1)) < session["last_event_id"]
    assert answer["text"] == session["text"]  # no gap, no duplicate across the reload
    assert len(session["text"].split()) == 80
    conversation = await chat.text("#conversation")
    assert conversation.count(session["text"]) == 1
    assert await chat.page.locator("article.assistant").count() == 1


async def test_stop_cancels_the_session_and_the_page_says_so(new_chat: NewChat, relay: str) -> None:
    chat = await asking(new_chat, relay, LONG)
    await chat.words_shown(5)
    assert await chat.page.is_enabled("#stop")
    await chat.page.click("#stop")
    answer = await chat.answer_ends("cancelled")
    await chat.shoot("stopped")
    session = await snapshot(relay, answer["session"])
    assert session["status"] == "cancelled"
    assert answer["end"] == "Stopped: cancelled · reason: client"
    # The mock reports no usage for an answer it did not finish: none is shown.
    assert session["usage"] is None
    assert answer["usage"] == ""
    assert await chat.page.is_hidden("article.assistant .usage")
    assert await chat.text("#status") == "cancelled · reason: client"
    assert answer["text"] == session["text"]  # what was generated before the stop, all of it
    assert await chat.page.is_disabled("#stop")
    assert await chat.page.is_enabled("#send-button")


async def test_a_new_chat_while_an_answer_streams_stops_it_and_starts_from_nothing(
    new_chat: NewChat, relay: str
) -> None:
    chat = await asking(new_chat, relay, LONG)
    await chat.words_shown(3)
    session_id = (await chat.answer())["session"]
    await chat.page.click("#new-chat")
    assert await chat.page.locator("article").count() == 0
    assert (await once_ended(relay, session_id))["status"] == "cancelled"
    assert await chat.text("#status") == "idle"  # the old answer's end is not this chat's
    assert await chat.page.is_enabled("#send-button")
    await chat.shoot("new-chat")


async def test_an_upstream_failure_shows_relays_error_message(
    new_chat: NewChat, relay: str
) -> None:
    chat = await asking(new_chat, relay, "mock:tokens=50,fail_after=3,tps=20,ttft_ms=0")
    answer = await chat.answer_ends("error")
    await chat.shoot("1-failed")
    error = (await snapshot(relay, answer["session"]))["error"]
    assert error["code"] == "upstream_error"
    assert answer["end"] == f"failed · upstream_error: {error['message']}"
    assert len(answer["text"].split()) == 3  # the words before the failure stay
    assert await chat.page.is_visible("article.assistant .end.error")
    await chat.page.reload()  # the failure is part of the conversation now
    await chat.ready()
    assert (await chat.answer())["end"] == answer["end"]
    await chat.shoot("2-failed-after-reload")


async def test_an_unknown_model_is_refused_with_relays_message(
    new_chat: NewChat, relay: str
) -> None:
    chat = await asking(new_chat, relay, "no-such-model")
    await chat.page.wait_for_function(
        "document.getElementById('alert').textContent !== ''", timeout=WAIT_MS
    )
    await chat.shoot("refused")
    status, refused = await create(
        relay, {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 400
    assert "no-such-model" in refused["error"]["message"]
    error = refused["error"]
    assert await chat.text("#alert") == f"{error['code']}: {error['message']}"
    # Nothing was sent: no turn, and the question is back in the box to send again.
    assert await chat.page.locator("article").count() == 0
    assert await chat.page.input_value("#prompt") == RIVERS


async def test_two_tabs_following_one_session_show_the_same_text(
    new_chat: NewChat, relay: str
) -> None:
    first = await asking(new_chat, relay, SLOW)
    await first.words_shown(5)
    second = await new_chat(relay, context=first.page.context)  # a tab of the same browser
    await second.open()
    await second.words_shown(10)
    await second.shoot("1-second-tab-streaming")
    one, two = await first.answer_ends("done"), await second.answer_ends("done")
    await first.shoot("2-first-tab-done")
    await second.shoot("3-second-tab-done")
    session = await snapshot(relay, one["session"])
    assert two["session"] == one["session"]
    assert one["text"] == two["text"] == session["text"]
    assert len(session["text"].split()) == 80
    # A question asked in one open tab is followed in the other too.
    await first.send("And lakes?")
    one, two = await first.answer_ends("done", turn=2), await second.answer_ends("done", turn=2)
    await second.shoot("4-second-tab-follows-the-next-turn")
    assert one["session"] == two["session"]
    assert one["text"] == two["text"] == (await snapshot(relay, one["session"]))["text"]


async def test_a_tab_closed_mid_answer_leaves_the_answer_to_the_next_tab(
    new_chat: NewChat, relay: str
) -> None:
    first = await asking(new_chat, relay, "mock:tokens=30,tps=20,ttft_ms=0")
    await first.words_shown(5)
    session_id = (await first.answer())["session"]
    context = first.page.context
    await first.page.close()  # nobody saw the end of it
    await once_ended(relay, session_id)
    later = await new_chat(relay, context=context)
    await later.open()
    answer = await later.answer_ends("done")
    await later.shoot("the-next-tab")
    ended = await snapshot(relay, session_id)
    assert answer["session"] == session_id
    assert answer["text"] == ended["text"]
    assert len(answer["text"].split()) == 30
    assert answer["usage"] == usage_line(ended)  # from the snapshot: the stream had ended


async def test_the_page_follows_over_the_websocket(new_chat: NewChat, relay: str) -> None:
    chat = await new_chat(relay)
    sockets: list[str] = []
    chat.page.on("websocket", lambda socket: sockets.append(socket.url))
    event_streams: list[str] = []
    chat.page.on("request", lambda r: event_streams.append(r.url) if "/events" in r.url else None)
    await chat.open("?transport=websocket")
    assert await chat.text("#transport") == "websocket"
    await chat.ask(SLOW)
    await chat.words_shown(10)
    await chat.page.reload()  # resumes over the socket too
    await chat.ready()
    answer = await chat.answer_ends("done")
    await chat.shoot("websocket-done")
    session = await snapshot(relay, answer["session"])
    assert answer["text"] == session["text"]
    assert re.fullmatch(r"resumed from event \d+", answer["marker"])
    assert len(sockets) == 2  # one before the reload, one after
    assert all(url.endswith("/v1/ws") for url in sockets)
    assert event_streams == []  # nothing went over SSE


async def test_a_cut_network_shows_reconnecting_then_the_stream_resumes(
    new_chat: NewChat, relay: str
) -> None:
    async with TcpProxy(relay) as proxy:
        chat = await asking(new_chat, proxy.url, SLOW)
        await chat.words_shown(10)
        proxy.refuse()
        await chat.page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('reconnecting')",
            timeout=WAIT_MS,
        )
        await chat.shoot("1-reconnecting")
        proxy.accept()
        answer = await chat.answer_ends("done")
        await chat.shoot("2-resumed")
    session = await snapshot(relay, answer["session"])
    assert answer["text"] == session["text"]  # no gap, no duplicate
    assert len(session["text"].split()) == 80
    assert re.fullmatch(r"reconnected: resumed from event \d+", answer["marker"])


async def test_reasoning_is_folded_and_tool_calls_are_shown(
    new_chat: NewChat, serve: Serve, mock_upstream: TestServer
) -> None:
    upstream = str(mock_upstream.make_url("/v1"))
    relay = await serve(
        f'[[upstreams]]\nname = "mock"\nkind = "mock"\nmodels = ["mock", "mock:*"]\n'
        f'[[upstreams]]\nname = "oai"\nkind = "openai"\nbase_url = "{upstream}"\nmodels = []\n'
    )
    chat = await new_chat(relay)
    await chat.open()
    await chat.ask("oai/mock:reasoning=8,tokens=10,tps=0,ttft_ms=0", "Think first.")
    answer = await chat.answer_ends("done")
    reasoning = chat.page.locator("article.assistant details.reasoning").first
    assert await reasoning.is_visible()
    assert await reasoning.get_attribute("open") is None  # folded
    await chat.shoot("1-reasoning-folded")
    await chat.page.click("article.assistant details.reasoning summary")
    thought = await chat.text("article.assistant .reasoning-text")
    assert len(thought.split()) == 8
    await chat.shoot("2-reasoning-open")
    assert answer["text"] == (await snapshot(relay, answer["session"]))["text"]

    await chat.ask("mock:tools=true,tps=0,ttft_ms=0", "Call a tool.")
    answer = await chat.answer_ends("done", turn=2)
    await chat.shoot("3-tool-call")
    call = (await snapshot(relay, answer["session"]))["tool_calls"][0]
    shown = chat.page.locator("article.assistant").last.locator(".tool-call")
    assert await shown.locator(".name").text_content() == call["name"]
    arguments = await shown.locator(".arguments").text_content()
    assert json.loads(arguments or "") == json.loads(call["arguments"])
    assert answer["end"] == "completed · finish reason: tool_calls"
    assert await reasoning.get_attribute("open") is not None  # still as the person left it
    await chat.page.emulate_media(color_scheme="dark")
    await chat.shoot("4-dark")


async def test_the_keyboard_sends_with_enter_and_breaks_lines_with_shift_enter(
    new_chat: NewChat, relay: str
) -> None:
    chat = await new_chat(relay)
    await chat.open("?model=mock:tokens=5,tps=0,ttft_ms=0")  # a model picked in the URL
    assert await chat.page.input_value("#custom-model") == "mock:tokens=5,tps=0,ttft_ms=0"
    await chat.page.focus("#prompt")
    await chat.page.keyboard.type("first line")
    await chat.page.keyboard.press("Shift+Enter")
    await chat.page.keyboard.type("second line")
    assert await chat.page.locator("article").count() == 0  # Shift+Enter sent nothing
    await chat.page.keyboard.press("Enter")
    await chat.answer_ends("done")
    assert await chat.text("article.user .text") == "first line\nsecond line"
    assert await chat.page.input_value("#prompt") == ""
    # Tab reaches the controls, and the focused one is outlined.
    await chat.page.keyboard.press("Tab")
    focused = await chat.page.evaluate(
        "[document.activeElement.id, getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused == ["send-button", "solid"]
    await chat.shoot("keyboard-focus")


async def test_the_page_fits_a_phone_in_light_and_dark(new_chat: NewChat, relay: str) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True}
        prompt = "Tell me about rivers, at length, on a small screen."
        model = "mock:tokens=40,tps=0,ttft_ms=0,seed=7"
        chat = await asking(new_chat, relay, model, prompt, color_scheme=scheme, **phone)
        await chat.answer_ends("done")
        await chat.shoot(f"phone-{scheme}")
        # Nothing wider than the screen; the message box and Send are on it.
        width = await chat.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        for control in ("#prompt", "#send-button", "#model"):
            box = await chat.page.locator(control).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        background = "getComputedStyle(document.body).backgroundColor"
        backgrounds[scheme] = await chat.page.evaluate(background)
    assert backgrounds == {"light": "rgb(255, 255, 255)", "dark": "rgb(20, 21, 24)"}


KEY = "rk_chat_Qw3Er6Ty9Ui2Op5As8Df"


async def test_with_clients_the_page_asks_for_a_key_and_works_with_it(
    new_chat: NewChat, serve: Serve
) -> None:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    relay = await serve(f'[[clients]]\nname = "demo"\napi_key_sha256 = "{digest}"\n')
    chat = await new_chat(relay)
    await chat.open()
    alert = await chat.text("#alert")
    assert alert.startswith("missing_api_key: ")
    assert await chat.page.get_attribute("#settings", "open") is not None
    await chat.shoot("1-asks-for-a-key")
    await chat.page.fill("#api-key", KEY)
    await chat.page.press("#api-key", "Enter")
    await chat.page.wait_for_function("document.getElementById('alert').textContent === ''")
    await chat.ask("mock:tokens=6,tps=0,ttft_ms=0", "hi")
    answer = await chat.answer_ends("done")
    await chat.shoot("2-with-a-key")
    assert len(answer["text"].split()) == 6
    # The key stays in this tab's sessionStorage, never in localStorage.
    in_tab = await chat.page.evaluate("sessionStorage.getItem('relay-chat-api-key')")
    everywhere = await chat.page.evaluate("JSON.stringify(localStorage)")
    assert in_tab == KEY and KEY not in everywhere
