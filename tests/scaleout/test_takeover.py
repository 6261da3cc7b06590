"""Takeovers under real processes: two `relay serve` instances on a real redis-server
behind a real nginx, the model a `relay mock-upstream` process. Instance A generates, a
reader follows on instance B, A is killed with SIGKILL; as the upstream's
`on_instance_loss` says, B continues the answer, restarts it, or ends the session with
`generation_lost`. Official SDK readers on B assemble one message across the seam: the
OpenAI and Anthropic SDKs reading the session in their formats, and the Vercel AI SDK's
chat (`AbstractChat`, what `useChat` runs, over `DefaultChatTransport`: ai 5, 6 and 7)
reading a message sent through the UI message stream front door (tests/node/ui_chat.mjs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from anthropic.lib.streaming import AsyncMessageStream
from anthropic.types import RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from tests.nginx_server import nginx
from tests.node_scripts import NODE_DIR, node_for_major, run_script
from tests.redis_server import free_port
from tests.relay_process import relay_process
from tests.scaleout.conftest import LEASE_TTL_S, Instance, instance_id
from tests.sse_client import SseEvent, SseParser

MARGIN_S = 3.0  # the reaper runs every lease_ttl / 4; plus process, store and model time
MODEL = "mock:tokens=240,tps=60,ttft_ms=0"  # 4 s uninterrupted
MESSAGES = [{"role": "user", "content": "tell me a long story"}]
# Upstream name -> its settings besides the mock-upstream's URL.
UPSTREAMS: dict[str, dict[str, Any]] = {
    "cont": {"kind": "anthropic", "on_instance_loss": "continue"},
    "vllm": {"kind": "openai", "on_instance_loss": "continue",
             "continuation": "continue_final_message"},
    "again": {"kind": "anthropic", "on_instance_loss": "restart"},
    "lose": {"kind": "anthropic"},
}  # fmt: skip


@dataclass
class Pair:
    a: Instance  # generates, and is killed
    b: Instance  # reads; it and c race to take over
    c: Instance
    balancer: str
    upstream: str  # the mock upstream's base URL
    logs: dict[str, Path]  # each instance's log, by its name


@contextlib.asynccontextmanager
async def mock_upstream_process(log_path: Path) -> AsyncIterator[str]:
    port = free_port()
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", "mock-upstream", "--port", str(port),
            stdout=log_file, stderr=log_file,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get(url + "/v1/models") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"relay mock-upstream never answered: {log_path.read_text()}")
        yield url
    finally:
        process.terminate()
        await process.wait()


def config_text(redis_url: str, upstream: str) -> str:
    lines = [f'[store]\nurl = "{redis_url}"\nlease_ttl_s = {LEASE_TTL_S}\n']
    for name, settings in UPSTREAMS.items():
        base_url = upstream + "/v1" if settings["kind"] == "openai" else upstream
        lines.append(f'[[upstreams]]\nname = "{name}"\nbase_url = "{base_url}"\n')
        lines += [f"{key} = {json.dumps(value)}\n" for key, value in settings.items()]
    return "".join(lines)


@pytest.fixture
async def pair(tmp_path: Path, redis_url: str) -> AsyncIterator[Pair]:
    async with contextlib.AsyncExitStack() as stack:
        upstream = await stack.enter_async_context(mock_upstream_process(tmp_path / "mock.log"))
        config = tmp_path / "relay.toml"
        config.write_text(config_text(redis_url, upstream))
        instances, logs = [], {}
        for name in ("a", "b", "c"):
            port = free_port()
            logs[name] = tmp_path / f"relay-{name}.log"
            process = await stack.enter_async_context(relay_process(config, port, logs[name]))
            instances.append(Instance(await instance_id(port), port, process))
        balancer = await stack.enter_async_context(nginx([i.port for i in instances]))
        yield Pair(*instances, balancer, upstream, logs)


async def create_on(http: aiohttp.ClientSession, base: str, model: str) -> str:
    body = {"model": model, "messages": MESSAGES}
    async with http.post(base + "/v1/sessions", json=body) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])


class Follower:
    """A native SSE reader of one session, noting when each event arrived."""

    def __init__(self) -> None:
        self.events: list[SseEvent] = []
        self.arrived: list[float] = []
        self.text_seen = asyncio.Event()

    async def follow(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(url) as stream:
            parser = SseParser()
            async for chunk in stream.content.iter_any():
                new = parser.feed(chunk)
                self.events += new
                self.arrived += [time.monotonic()] * len(new)
                if sum(e.event == "delta" for e in self.events) >= 3:
                    self.text_seen.set()


async def read_to_end(http: aiohttp.ClientSession, url: str) -> list[SseEvent]:
    follower = Follower()
    await follower.follow(http, url)
    return follower.events


def text_of(events: list[SseEvent]) -> str:
    return "".join(e.json()["text"] for e in events if e.event == "delta")


def states(events: list[SseEvent]) -> list[str]:
    return [e.json()["state"] for e in events if e.event == "status"]


@dataclass
class Killed:
    session_id: str
    reference: list[SseEvent]  # the same request, never interrupted
    events: list[SseEvent]  # what the reader on B got
    killed_at: float
    arrived: list[float]  # when each of the reader's events arrived
    chat: Any = None  # what the OpenAI SDK assembled, reading on B across the seam
    message: Any = None  # what the Anthropic SDK assembled, likewise


async def killed_mid_answer(pair: Pair, model: str, *, sdk_readers: bool = False) -> Killed:
    async with aiohttp.ClientSession() as http:
        reference_id = await create_on(http, pair.b.url, model)
        reference = asyncio.create_task(
            read_to_end(http, f"{pair.b.url}/v1/sessions/{reference_id}/events")
        )
        session_id = await create_on(http, pair.a.url, model)
        follower = Follower()
        reading = asyncio.create_task(
            follower.follow(http, f"{pair.b.url}/v1/sessions/{session_id}/events")
        )
        sdks = [openai_reader(pair.b, session_id), anthropic_reader(pair.b, session_id)]
        assembling = asyncio.gather(*sdks) if sdk_readers else None
        await asyncio.wait_for(follower.text_seen.wait(), 10)
        pair.a.kill()  # SIGKILL: nothing is written, the lease lapses
        killed_at = time.monotonic()
        await asyncio.wait_for(reading, LEASE_TTL_S + 20)
        killed = Killed(session_id, await reference, follower.events, killed_at, follower.arrived)
        if assembling is not None:
            killed.chat, killed.message = await asyncio.wait_for(assembling, 10)
        else:
            for sdk in sdks:
                sdk.close()
        return killed


async def openai_reader(instance: Instance, session_id: str) -> Any:
    """The session as `chat.completion.chunk`s, assembled by the OpenAI SDK's own state."""
    client = openai.AsyncOpenAI(base_url=instance.url + "/v1", api_key="x", max_retries=0)
    async with client:
        stream = await client.get(
            f"/sessions/{session_id}/events",
            options={"params": {"format": "openai", "include_usage": "true"}},
            cast_to=ChatCompletionChunk,
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )
        state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
        async for chunk in stream:
            state.handle_chunk(chunk)
        return state.get_final_completion()


async def anthropic_reader(instance: Instance, session_id: str) -> Any:
    """The session as Messages stream events, assembled by the Anthropic SDK's stream."""
    client = anthropic.AsyncAnthropic(base_url=instance.url, api_key="x", max_retries=0)
    async with client:
        raw = await client.get(
            f"/v1/sessions/{session_id}/events",
            options={"params": {"format": "anthropic"}},
            cast_to=anthropic.types.Message,
            stream=True,
            stream_cls=anthropic.AsyncStream[RawMessageStreamEvent],
        )
        return await AsyncMessageStream(raw, anthropic.NOT_GIVEN).get_final_message()


def takers(pair: Pair) -> list[str]:
    """The instances whose log says they took a session over."""
    return [name for name, path in pair.logs.items() if "taken over from" in path.read_text()]


def assert_one_log(events: list[SseEvent], terminal: str) -> None:
    ids = [e.int_id for e in events]
    assert ids == list(range(1, len(ids) + 1))  # consecutive: no gap, no event twice
    assert [e.event for e in events if e.is_terminal] == [terminal] and events[-1].is_terminal


def seam_at(events: list[SseEvent]) -> int:
    return next(i for i, e in enumerate(events) if e.event == "status" and
                e.json()["state"] == "taken_over")  # fmt: skip


async def continuation_requests(upstream: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(upstream + "/_mock/requests") as answer:
        recorded: list[dict[str, Any]] = (await answer.json())["requests"]
    return [r for r in recorded if r["body"] and r["body"]["messages"][-1]["role"] == "assistant"]


def prefill_of(body: dict[str, Any]) -> str:
    """The final assistant message's text: a string (Chat) or text blocks (Messages)."""
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(b["text"] for b in content)


@pytest.mark.parametrize("upstream", ["cont", "vllm"])
async def test_continue_the_reader_gets_the_uninterrupted_text(pair: Pair, upstream: str) -> None:
    killed = await killed_mid_answer(pair, f"{upstream}/{MODEL}", sdk_readers=True)
    events = killed.events
    assert_one_log(events, "done")
    seam = seam_at(events)
    assert killed.arrived[seam] - killed.killed_at <= LEASE_TTL_S + MARGIN_S
    assert "restarted" not in states(events)
    prefix, text = text_of(events[:seam]), text_of(events)
    assert prefix and text == text_of(killed.reference)  # byte for byte
    asked = await continuation_requests(pair.upstream)
    assert len(asked) == 1  # one continuation, which carried exactly the stored text
    assert states(events).count("taken_over") == 1
    assert takers(pair) in (["b"], ["c"])  # b and c raced for the lease: one won
    assert prefill_of(asked[0]["body"]) in (prefix, prefix.rstrip())
    if upstream == "vllm":
        assert asked[0]["body"]["continue_final_message"] is True
        assert asked[0]["body"]["add_generation_prompt"] is False
    assert events[-1].json()["usage"]["takeovers"] == 1
    # Official SDKs reading on B across the seam: one message each, the whole text.
    assert killed.chat.choices[0].message.content == text
    assert killed.chat.choices[0].finish_reason == "stop"
    assert [block.type for block in killed.message.content] == ["text"]
    assert killed.message.content[0].text == text
    url = f"{pair.balancer}/v1/sessions/{killed.session_id}/events"
    async with aiohttp.ClientSession() as http:  # readers joining later, through nginx
        replay = await read_to_end(http, url)
        resumed = await read_to_end(http, f"{url}?last_event_id={seam - 1}")  # at the seam
    assert [e.key() for e in replay] == [e.key() for e in events]
    assert [e.key() for e in resumed] == [e.key() for e in events[seam - 1 :]]


async def test_restart_says_restarted_then_gives_the_whole_answer(pair: Pair) -> None:
    killed = await killed_mid_answer(pair, f"again/{MODEL}")
    events = killed.events
    assert_one_log(events, "done")
    seam = seam_at(events)
    assert killed.arrived[seam] - killed.killed_at <= LEASE_TTL_S + MARGIN_S
    assert states(events[seam:])[:2] == ["taken_over", "restarted"]
    assert states(events).count("taken_over") == 1 and takers(pair) in (["b"], ["c"])
    assert text_of(events[:seam])
    assert text_of(events[seam:]) == text_of(killed.reference)
    assert await continuation_requests(pair.upstream) == []  # asked again from the start
    assert events[-1].json()["usage"]["takeovers"] == 1


async def test_fail_ends_with_generation_lost(pair: Pair) -> None:
    killed = await killed_mid_answer(pair, f"lose/{MODEL}")
    events = killed.events
    assert_one_log(events, "error")
    assert events[-1].json()["code"] == "generation_lost"
    assert "taken_over" not in states(events) and takers(pair) == []
    assert killed.arrived[-1] - killed.killed_at <= LEASE_TTL_S + MARGIN_S


async def post_json(
    http: aiohttp.ClientSession, url: str, body: Any, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_an_external_producer_goes_on_from_another_process_after_an_instance_is_lost(
    pair: Pair,
) -> None:
    """Nothing of an external session is any one instance's: A serving its producer is
    killed, and a producer process on B learns from its signal stream that the session
    is still open and the seq to go on with."""
    async with aiohttp.ClientSession() as http:
        body = {"producer": "external", "producer_idle_timeout_s": 30}
        status, created = await post_json(http, pair.a.url + "/v1/sessions", body)
        assert status == 201
        sid, token = created["id"], created["producer_token"]
        batch = {"seq": 1, "events": [{"type": "delta", "data": {"text": "half"}}]}
        assert (await post_json(http, f"{pair.a.url}/v1/sessions/{sid}/events", batch, token))[
            0
        ] == 201
        auth = {"Authorization": f"Bearer {token}"}
        stream = await http.get(f"{pair.a.url}/v1/sessions/{sid}/signals", headers=auth)
        pair.a.kill()
        with contextlib.suppress(aiohttp.ClientError):  # cut with the instance
            await asyncio.wait_for(stream.read(), 10)
        stream.close()
        await asyncio.sleep(LEASE_TTL_S + 1.0)  # B's reaper has looked: nothing lapsed
        url = f"{pair.b.url}/v1/sessions/{sid}/signals"
        async with http.get(url, params={"state": "true"}, headers=auth) as resumed:
            parser, frames = SseParser(), []
            while not frames:
                frames = parser.feed(await resumed.content.readany())
        assert (frames[0].event, frames[0].id) == ("session", None)
        assert frames[0].json() == {
            "state": "running", "last_seq": 1, "next_seq": 2, "last_event_id": 1
        }  # fmt: skip
        done = {"type": "done", "data": {"finish_reason": "stop"}}
        rest = {"seq": 2, "events": [{"type": "delta", "data": {"text": " and all"}}, done]}
        status, answer = await post_json(
            http, f"{pair.b.url}/v1/sessions/{sid}/events", rest, token
        )
        assert (status, answer["ids"]) == (201, [2, 3])
        events = await read_to_end(http, f"{pair.balancer}/v1/sessions/{sid}/events")
    assert_one_log(events, "done")
    assert text_of(events) == "half and all"


async def test_a_frozen_generator_that_comes_back_after_the_takeover_cannot_write(
    pair: Pair,
) -> None:
    """A is frozen (SIGSTOP) past its lease, the session is taken over, then A wakes up
    with text it wants to append: the store's id fence stops it, and the log stays one."""
    model = f"cont/{MODEL}"
    async with aiohttp.ClientSession() as http:
        reference = asyncio.create_task(
            read_to_end(
                http, f"{pair.b.url}/v1/sessions/{await create_on(http, pair.b.url, model)}/events"
            )
        )
        session_id = await create_on(http, pair.a.url, model)
        follower = Follower()
        url = f"{pair.b.url}/v1/sessions/{session_id}/events"
        reading = asyncio.create_task(follower.follow(http, url))
        await asyncio.wait_for(follower.text_seen.wait(), 10)
        pair.a.send_signal(signal.SIGSTOP)
        try:
            async with asyncio.timeout(LEASE_TTL_S + 10):
                while "taken_over" not in states(follower.events):
                    await asyncio.sleep(0.05)
        finally:
            pair.a.send_signal(signal.SIGCONT)  # back, with text it wants to append
        await asyncio.wait_for(reading, 20)
        replay = await read_to_end(http, url)
    assert_one_log(follower.events, "done")
    assert [e.key() for e in replay] == [e.key() for e in follower.events]
    assert text_of(follower.events) == text_of(await reference)
    assert "another instance writes its log now" in pair.logs["a"].read_text()


UI_PREFIX = "/v1/ui/chat"
UI_SCRIPT_TIMEOUT_S = 60.0  # two 4 s answers, a lapsed lease, and ai 7's Node 22 starting


async def ui_chat_across_a_takeover(pair: Pair, major: str, model: str) -> dict[str, Any]:
    """tests/node/ui_chat.mjs's `takeover` scenario with the AI SDK `major`: a tab sends
    on A, a reader follows on B, A is SIGKILLed when the reader has text, and the tab
    reloads through nginx (`resumeStream`). What the script printed."""
    call = {"package": "ai", "scenario": "takeover", "chatId": "c-seam", "model": model,
            "prompt": MESSAGES[0]["content"]}  # fmt: skip
    env = {
        "RELAY_UI_A": pair.a.url + UI_PREFIX,
        "RELAY_UI_B": pair.b.url + UI_PREFIX,
        "RELAY_UI_BALANCER": pair.balancer + UI_PREFIX,
        "RELAY_API_KEY": "",
    }
    killed: list[str] = []

    def kill_a_when_told(line: str) -> None:
        if line.startswith('{"killNow"'):
            killed.append(json.loads(line)["killNow"])
            pair.a.kill()

    printed: dict[str, Any] = await run_script(
        node_for_major(major), "ui_chat.mjs", json.dumps(call), env=env,
        cwd=NODE_DIR / f"ai{major}", timeout_s=UI_SCRIPT_TIMEOUT_S, on_line=kill_a_when_told,
    )  # fmt: skip
    assert printed["version"].startswith(major + "."), printed["version"]
    assert killed, "the script never said when to kill A"
    assert printed["refused"] == [], "chunks the strict schema (ai-strict) refuses"
    printed["sessionId"] = killed[0]
    return printed


def parts_of(message: dict[str, Any]) -> list[str]:
    return [part["type"] for part in message["parts"]]


def ui_text_of(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")


def wire_of(printed: dict[str, Any], label: str) -> dict[str, Any]:
    [record] = [record for record in printed["wire"] if record["label"] == label]
    return record


async def ended_session(pair: Pair, session_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{pair.b.url}/v1/sessions/{session_id}") as answer,
    ):
        snapshot: dict[str, Any] = await answer.json()
    return snapshot


@pytest.mark.parametrize("major", ["5", "6", "7"], ids=["ai5", "ai6", "ai7"])
async def test_the_ai_sdk_chat_assembles_one_message_across_the_seam(
    pair: Pair, major: str
) -> None:
    printed = await ui_chat_across_a_takeover(pair, major, f"cont/{MODEL}")
    reference = printed["reference"]["message"]
    whole = ui_text_of(reference)
    assert parts_of(reference) == ["step-start", "text"] and whole
    snapshot = await ended_session(pair, printed["sessionId"])
    assert snapshot["status"] == "completed" and snapshot["text"] == whole
    assert snapshot["usage"]["takeovers"] == 1 and takers(pair) in (["b"], ["c"])
    # The tab on A: its stream cut with A, mid-answer.
    sent = printed["sent"]
    assert wire_of(printed, "send")["error"] and sent["status"] == "error"
    partial = ui_text_of(sent["messages"][-1])
    assert partial and whole.startswith(partial) and partial != whole
    # The reader on B read across the seam: one message, one text part, the whole text.
    followed = printed["followed"]
    assert followed["errors"] == [] and followed["message"]["id"] == sent["messages"][-1]["id"]
    assert parts_of(followed["message"]) == ["step-start", "text"]
    assert ui_text_of(followed["message"]) == whole  # byte for byte
    chunks = wire_of(printed, "follow")["chunks"]
    kinds = [chunk["type"] for chunk in chunks if chunk != "[DONE]"]
    assert kinds.count("start") == kinds.count("text-start") == kinds.count("finish") == 1
    seam = [c["data"] for c in chunks if c != "[DONE]" and c["type"] == "data-relay-status"]
    assert [s["state"] for s in seam].count("taken_over") == 1
    assert "restarted" not in [s["state"] for s in seam]
    assert chunks[-2]["messageMetadata"]["usage"]["outputTokens"] > 0
    # The tab reloaded through nginx: useChat's `resumeStream()` holds the message once.
    reloaded = printed["reloaded"]
    assert reloaded["errors"] == [] and reloaded["status"] == "ready"
    user, assistant = reloaded["messages"]
    assert user["role"] == "user" and assistant["id"] == sent["messages"][-1]["id"]
    assert parts_of(assistant) == ["step-start", "text"] and ui_text_of(assistant) == whole
    assert "taken_over" in reloaded["statuses"]  # handed to onData, kept out of the message
    assert wire_of(printed, "reloaded")["chunks"] == chunks


async def test_a_restart_is_a_second_step_of_the_ai_sdk_message(pair: Pair) -> None:
    """After `restarted`, the whole answer is a second step of the same message: the
    partial text, a `step-start`, then the answer given again."""
    printed = await ui_chat_across_a_takeover(pair, "6", f"again/{MODEL}")
    whole = ui_text_of(printed["reference"]["message"])
    snapshot = await ended_session(pair, printed["sessionId"])
    assert snapshot["status"] == "completed" and snapshot["usage"]["takeovers"] == 1
    partial = ui_text_of(printed["sent"]["messages"][-1])
    for message in (printed["followed"]["message"], printed["reloaded"]["messages"][-1]):
        assert parts_of(message) == ["step-start", "text", "step-start", "text"]
        first, again = (part["text"] for part in message["parts"] if part["type"] == "text")
        assert again == whole and first and whole.startswith(first) and first != whole
        assert first.startswith(partial) or partial.startswith(first)  # what each had
    assert printed["reloaded"]["statuses"].count("restarted") == 1
