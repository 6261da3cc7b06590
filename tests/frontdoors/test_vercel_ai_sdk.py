"""The Vercel AI SDK's real npm packages (`ai`, `@ai-sdk/openai`, `@ai-sdk/anthropic`,
pinned in tests/node/package.json), unmodified, against a relay with two `[[clients]]`:
each provider is given relay's `/v1` as `baseURL` and a client's key as `apiKey`, on
both stores.

Chat Completions (`openai.chat`), Responses (`openai.responses`, what `openai(...)` picks)
and Anthropic Messages (`anthropic(...)`, which sends the key in `x-api-key`), each with
`generateText` and `streamText`: the text is the mock's and the session's snapshot text,
the usage is the mock's. A wrong key is the SDK's `APICallError` with status 401, a model
the client may not use one with status 403. The scripts run in Node (tests/node_scripts.py).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from relay.vocabulary import Message
from tests.frontdoors.conftest import Relay, StartRelay, keyed_clients
from tests.frontdoors.test_clients import bearer, call, ended
from tests.frontdoors.test_sdk_front_doors import expected
from tests.node_scripts import require_node, run_script

WEB_KEY = "rk_web_Zr4Lm8Qa2Xc6Vb1Np9Ty"
MOBILE_KEY = "rk_mobile_Hs5Jd3Kf7Gw2Ue8Pq"
WEB_MODEL = "mock:tokens=5"
MOBILE_MODEL = "mock:tokens=3"
CLIENTS = keyed_clients({"web": WEB_KEY, "mobile": MOBILE_KEY}, mobile={"models": [MOBILE_MODEL]})
OTHER_CLIENTS_KEY = {WEB_KEY: MOBILE_KEY, MOBILE_KEY: WEB_KEY}
PROMPT = "Where do rivers go?"

APIS = ["chat", "responses", "messages"]
# How each provider sends `apiKey` (the script shows the key as "$KEY"): the OpenAI one
# as a bearer token, the Anthropic one in `x-api-key`, as Anthropic's own API reads it.
KEY_HEADERS = {
    "chat": {"authorization": "Bearer $KEY"},
    "responses": {"authorization": "Bearer $KEY"},
    "messages": {"x-api-key": "$KEY"},
}
# The response ids docs/api.md derives from the session id.
RESPONSE_IDS = {"chat": "chatcmpl-{}", "responses": "resp_{}"}


class Usage(msgspec.Struct, rename="camel"):
    input_tokens: int
    output_tokens: int


class Response(msgspec.Struct):
    id: str
    headers: dict[str, str]


class CallError(msgspec.Struct, rename="camel"):
    """What the SDK raised: an `APICallError` has the status and the body relay sent."""

    name: str
    status_code: int | None = None
    response_body: str | None = None
    is_retryable: bool | None = None
    message: str | None = None


class Outcome(msgspec.Struct, rename="camel"):
    """One call's result as tests/node/generate.mjs prints it."""

    sent: list[dict[str, str]]
    text: str | None = None
    streamed: str | None = None
    deltas: int = 0
    usage: Usage | None = None
    finish_reason: str | None = None
    response: Response | None = None
    error: CallError | None = None


@pytest.fixture
def node() -> str:
    return require_node()


@pytest.fixture
async def relay(node: str, start_relay: StartRelay) -> Relay:
    return await start_relay(clients=CLIENTS)


async def generate_and_stream(
    relay: Relay, node: str, key: str, api: str, model: str
) -> tuple[Outcome, Outcome]:
    """`generateText`, then `streamText`, with `apiKey=key` against `api`."""
    calls = [
        {"api": api, "mode": m, "model": model, "prompt": PROMPT} for m in ("generate", "stream")
    ]
    env = {"RELAY_BASE_URL": relay.url("/v1"), "RELAY_API_KEY": key}
    printed = await run_script(node, "generate.mjs", json.dumps(calls), env=env)
    generated, streamed = msgspec.convert(printed, list[Outcome])
    return generated, streamed


def assert_the_key_went_as_the_sdk_sends_it(api: str, sent: list[dict[str, str]]) -> None:
    """One request, with the key in the provider's header and in no other."""
    (headers,) = sent
    credentials = {
        name: headers[name] for name in ("authorization", "x-api-key") if name in headers
    }
    assert credentials == KEY_HEADERS[api], headers


async def assert_the_clients_session(relay: Relay, key: str, api: str, outcome: Outcome) -> str:
    """The answer is a session of the key's client, which no other client can see; its
    snapshot text."""
    assert outcome.response is not None
    session_id = outcome.response.headers["x-relay-session-id"]
    if api in RESPONSE_IDS:
        assert outcome.response.id == RESPONSE_IDS[api].format(session_id.removeprefix("s_"))
    snapshot = await ended(relay, key, session_id)
    assert snapshot["status"] == "completed", snapshot
    other = await call(relay, "GET", f"/v1/sessions/{session_id}", bearer(OTHER_CLIENTS_KEY[key]))
    assert other.status == 404, other.text
    text: str = snapshot["text"]
    return text


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    ("key", "model"),
    [
        pytest.param(WEB_KEY, WEB_MODEL, id="web"),
        pytest.param(MOBILE_KEY, MOBILE_MODEL, id="mobile"),
    ],
)
async def test_the_sdk_generates_and_streams_with_a_clients_api_key(
    node: str, relay: Relay, api: str, key: str, model: str
) -> None:
    text, _, usage = await expected(model, [Message(role="user", content=PROMPT)])
    generated, streamed = await generate_and_stream(relay, node, key, api, model)
    for outcome in (generated, streamed):
        assert outcome.error is None, outcome.error
        assert_the_key_went_as_the_sdk_sends_it(api, outcome.sent)
        assert (outcome.text, outcome.finish_reason) == (text, "stop")
        assert outcome.usage == Usage(usage.input_tokens, usage.output_tokens)
        assert await assert_the_clients_session(relay, key, api, outcome) == text
    assert streamed.streamed == text and streamed.deltas >= 1


def error_code(api: str, body: Any) -> str:
    """The error's code in the front door's own shape: OpenAI's `error.code`, or the
    `error.type` of Anthropic's, which has no code."""
    code: str = body["error"]["type"] if api == "messages" else body["error"]["code"]
    return code


REFUSALS = {
    "chat": {401: "invalid_api_key", 403: "model_not_allowed"},
    "responses": {401: "invalid_api_key", 403: "model_not_allowed"},
    "messages": {401: "authentication_error", 403: "permission_error"},
}


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    ("key", "model", "status"),
    [
        pytest.param("rk_nobody_Wq3Ez7Rt1Yu5", WEB_MODEL, 401, id="wrong-key"),
        pytest.param(MOBILE_KEY, WEB_MODEL, 403, id="other-clients-model"),
    ],
)
async def test_a_refusal_is_the_sdks_api_call_error_with_its_status(
    node: str, relay: Relay, api: str, key: str, model: str, status: int
) -> None:
    for outcome in await generate_and_stream(relay, node, key, api, model):
        error = outcome.error
        assert error is not None and error.name == "AI_APICallError", outcome
        assert (error.status_code, error.is_retryable) == (status, False)
        assert error.response_body is not None
        assert error_code(api, json.loads(error.response_body)) == REFUSALS[api][status]
        assert key not in error.response_body
