"""Client keys over HTTP, on both stores: every route needs a key (401 in each front
door's own shape), a session is its creator's (any other client gets the answer an
unknown id gets, on every endpoint and on every instance), the models a client may use
and its max_tokens cap, read tokens for browsers, and the official SDKs with a key."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import anthropic
import openai
import pytest

from relay.session import new_session_id
from tests.frontdoors.conftest import FAST_MOCK, MESSAGES, Relay, StartRelay
from tests.frontdoors.test_native_api import REDIS_ONLY, assert_well_formed
from tests.sse_client import SseParser

WEB_KEY = "rk_web_3kT9qLw2Vx8mZp4Rb6Nc1Hd5"
WEB_NEXT_KEY = "rk_web_next_Jf7Ys2Qe9Ua4Wi6Ol3"
MOBILE_KEY = "rk_mobile_Pq8Gh3Xz5Tb1Kd7Mv2"
SLOW_MOCK = "mock:tokens=400,tps=40,ttft_ms=0"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


CLIENTS = [
    {"name": "web", "api_key_sha256": [sha256(WEB_KEY), sha256(WEB_NEXT_KEY)]},
    {
        "name": "mobile",
        "api_key_sha256": sha256(MOBILE_KEY),
        "models": ["mock:tokens=*"],
        "max_tokens": 5,
        "origins": ["https://m.example.com"],
        "requests_per_minute": 60,
    },
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Answer:
    def __init__(self, status: int, text: str, headers: Mapping[str, str]) -> None:
        self.status = status
        self.text = text
        self.headers = headers

    def json(self) -> Any:
        return json.loads(self.text)


async def call(
    relay: Relay,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
) -> Answer:
    async with relay.http.request(method, relay.url(path), headers=headers, json=body) as response:
        return Answer(response.status, await response.text(), response.headers)


async def create(relay: Relay, key: str, model: str = FAST_MOCK, **fields: Any) -> dict[str, Any]:
    body = {"model": model, "messages": MESSAGES, **fields}
    answer = await call(relay, "POST", "/v1/sessions", bearer(key), body)
    assert answer.status == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def ended(relay: Relay, key: str, session_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        answer = await call(relay, "GET", f"/v1/sessions/{session_id}", bearer(key))
        snapshot: dict[str, Any] = answer.json()
        if snapshot["status"] != "running":
            return snapshot
        assert time.monotonic() < deadline, snapshot
        await asyncio.sleep(0.02)


def response_id(session_id: str) -> str:
    return "resp_" + session_id.removeprefix("s_")


@pytest.fixture
async def relay(start_relay: StartRelay) -> Relay:
    return await start_relay(clients=CLIENTS)


# --- every route needs a key ------------------------------------------------------------

CHAT = {"model": FAST_MOCK, "messages": MESSAGES}
ANTHROPIC = {"model": FAST_MOCK, "max_tokens": 10, "messages": MESSAGES}
RESPONSES = {"model": FAST_MOCK, "input": "hi"}
# method, path ({sid}: a session id, {rid}: its response id), body, error shape
ROUTES = [
    ("POST", "/v1/sessions", CHAT, "relay"),
    ("GET", "/v1/sessions/{sid}", None, "relay"),
    ("GET", "/v1/sessions/{sid}/events", None, "relay"),
    ("GET", "/v1/sessions/{sid}/events?format=openai", None, "relay"),
    ("DELETE", "/v1/sessions/{sid}", None, "relay"),
    ("GET", "/v1/models", None, "relay"),
    ("POST", "/v1/chat/completions", CHAT, "openai"),
    ("POST", "/v1/responses", RESPONSES, "openai"),
    ("GET", "/v1/responses/{rid}", None, "openai"),
    ("GET", "/v1/responses/{rid}?stream=true", None, "openai"),
    ("POST", "/v1/responses/{rid}/cancel", None, "openai"),
    ("POST", "/v1/messages", ANTHROPIC, "anthropic"),
]


def assert_unauthenticated(answer: Answer, shape: str, code: str) -> None:
    assert answer.status == 401, answer.text
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="relay"'
    body = answer.json()
    if shape == "relay":
        assert body["error"]["code"] == code
    elif shape == "openai":
        assert (body["error"]["code"], body["error"]["type"]) == (code, "authentication_error")
    else:
        assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert WEB_KEY not in answer.text and "wrong-key" not in answer.text


@pytest.mark.parametrize(("method", "path", "body", "shape"), ROUTES)
async def test_a_request_without_a_key_is_401_missing_api_key(
    relay: Relay, method: str, path: str, body: Any, shape: str
) -> None:
    session_id = (await create(relay, WEB_KEY))["id"]
    path = path.format(sid=session_id, rid=response_id(session_id))
    assert_unauthenticated(await call(relay, method, path, body=body), shape, "missing_api_key")


@pytest.mark.parametrize(("method", "path", "body", "shape"), ROUTES)
@pytest.mark.parametrize("authorization", ["Bearer wrong-key", "Basic d2ViOmtleQ==", "Bearer "])
async def test_a_request_with_a_wrong_key_is_401_invalid_api_key(
    relay: Relay, method: str, path: str, body: Any, shape: str, authorization: str
) -> None:
    session_id = (await create(relay, WEB_KEY))["id"]
    path = path.format(sid=session_id, rid=response_id(session_id))
    headers = {"Authorization": authorization}
    answer = await call(relay, method, path, headers, body)
    assert_unauthenticated(answer, shape, "invalid_api_key")


async def test_every_key_of_a_client_works_during_a_rotation(relay: Relay) -> None:
    first = await create(relay, WEB_KEY)
    # A session created with the old key is the client's, whichever of its keys asks.
    snapshot = await ended(relay, WEB_NEXT_KEY, first["id"])
    assert snapshot["status"] == "completed"


async def test_the_anthropic_front_door_takes_x_api_key_too(relay: Relay) -> None:
    answer = await call(relay, "POST", "/v1/messages", {"x-api-key": WEB_KEY}, ANTHROPIC)
    assert answer.status == 200, answer.text
    assert answer.json()["type"] == "message"
    wrong = await call(relay, "POST", "/v1/messages", {"x-api-key": "wrong-key"}, ANTHROPIC)
    assert_unauthenticated(wrong, "anthropic", "invalid_api_key")
    # Only there: the OpenAI front doors read Authorization alone.
    chat = await call(relay, "POST", "/v1/chat/completions", {"x-api-key": WEB_KEY}, CHAT)
    assert_unauthenticated(chat, "openai", "missing_api_key")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/", "/static/relay-client.js"])
async def test_probes_the_demo_page_and_its_files_need_no_key(relay: Relay, path: str) -> None:
    assert (await call(relay, "GET", path)).status == 200


async def test_without_clients_no_key_is_needed(relay_server: Relay) -> None:
    created = await create(relay_server, "any-key-at-all")
    events = await relay_server.events(created["id"])
    assert_well_formed(events)


# --- isolation --------------------------------------------------------------------------

# Every endpoint that names a session: method, path.
SESSION_ENDPOINTS = [
    ("GET", "/v1/sessions/{sid}"),
    ("GET", "/v1/sessions/{sid}/events"),
    ("GET", "/v1/sessions/{sid}/events?format=openai"),
    ("GET", "/v1/sessions/{sid}/events?format=anthropic"),
    ("DELETE", "/v1/sessions/{sid}"),
    ("GET", "/v1/responses/{rid}"),
    ("GET", "/v1/responses/{rid}?stream=true&starting_after=2"),
    ("POST", "/v1/responses/{rid}/cancel"),
]


async def assert_as_if_unknown(
    relay: Relay, key: str, method: str, path: str, session_id: str
) -> None:
    """The answer for `session_id` is the one an unknown id gets, the id aside."""
    unknown = new_session_id()
    answers = []
    for sid in (session_id, unknown):
        filled = path.format(sid=sid, rid=response_id(sid))
        answer = await call(relay, method, filled, bearer(key))
        answers.append((answer.status, answer.text.replace(sid.removeprefix("s_"), "ID")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404


@pytest.mark.parametrize(("method", "path"), SESSION_ENDPOINTS)
async def test_another_clients_session_is_404_as_an_unknown_one(
    relay: Relay, method: str, path: str
) -> None:
    created = await create(relay, WEB_KEY, SLOW_MOCK)
    await assert_as_if_unknown(relay, MOBILE_KEY, method, path, created["id"])
    # Nothing the other client sent reached the session: it is still generating.
    answer = await call(relay, "GET", f"/v1/sessions/{created['id']}", bearer(WEB_KEY))
    assert answer.json()["status"] == "running"


@pytest.mark.parametrize(("method", "path"), SESSION_ENDPOINTS)
async def test_the_owner_reaches_its_session_on_every_endpoint(
    relay: Relay, method: str, path: str
) -> None:
    created = await create(relay, WEB_KEY)
    await ended(relay, WEB_KEY, created["id"])
    filled = path.format(sid=created["id"], rid=response_id(created["id"]))
    answer = await call(relay, method, filled, bearer(WEB_KEY))
    assert answer.status in (200, 202, 204), answer.text


async def test_a_session_made_through_a_provider_front_door_is_its_clients(relay: Relay) -> None:
    async with relay.http.post(
        relay.url("/v1/chat/completions"), json=CHAT, headers=bearer(WEB_KEY)
    ) as response:
        assert response.status == 200
        session_id = response.headers["X-Relay-Session-Id"]
    path = "/v1/sessions/{sid}/events?format=openai"
    await assert_as_if_unknown(relay, MOBILE_KEY, "GET", path, session_id)
    answer = await call(relay, "GET", path.format(sid=session_id), bearer(WEB_KEY))
    assert answer.status == 200 and "data: [DONE]" in answer.text


@REDIS_ONLY
async def test_isolation_holds_on_every_instance(start_relay: StartRelay, store_url: str) -> None:
    one = await start_relay(clients=CLIENTS)
    two = await start_relay(clients=CLIENTS)
    created = await create(one, WEB_KEY, SLOW_MOCK)
    for method, path in SESSION_ENDPOINTS:
        await assert_as_if_unknown(two, MOBILE_KEY, method, path, created["id"])
    snapshot = await call(two, "GET", f"/v1/sessions/{created['id']}", bearer(WEB_KEY))
    assert snapshot.status == 200 and snapshot.json()["status"] == "running"
    # The owner cancels it from the other instance.
    cancel = await call(two, "DELETE", f"/v1/sessions/{created['id']}", bearer(WEB_KEY))
    assert cancel.status == 202
    assert (await ended(one, WEB_KEY, created["id"]))["status"] == "cancelled"


# --- models and max_tokens --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "shape"),
    [
        ("/v1/sessions", {**CHAT, "model": "mock"}, "relay"),
        ("/v1/chat/completions", {**CHAT, "model": "mock"}, "openai"),
        ("/v1/responses", {**RESPONSES, "model": "mock"}, "openai"),
        ("/v1/messages", {**ANTHROPIC, "model": "mock"}, "anthropic"),
    ],
)
async def test_a_model_the_client_may_not_use_is_403(
    relay: Relay, path: str, body: Any, shape: str
) -> None:
    answer = await call(relay, "POST", path, bearer(MOBILE_KEY), body)
    assert answer.status == 403, answer.text
    error = answer.json()["error"]
    message = "model 'mock' is not allowed for client 'mobile'; allowed: mock:tokens=*"
    assert error["message"] == message
    if shape == "relay":
        assert error["code"] == "model_not_allowed"
    elif shape == "openai":
        assert (error["code"], error["type"]) == ("model_not_allowed", "permission_error")
    else:
        assert error["type"] == "permission_error"


async def test_the_models_list_shows_what_the_client_may_use(relay: Relay) -> None:
    web = (await call(relay, "GET", "/v1/models", bearer(WEB_KEY))).json()
    mobile = (await call(relay, "GET", "/v1/models", bearer(MOBILE_KEY))).json()
    assert [model["id"] for model in web["data"]] == ["mock"]
    assert mobile["data"] == []


@pytest.mark.parametrize(("asked", "generated"), [(None, 5), (50, 5), (3, 3)])
async def test_max_tokens_above_the_clients_cap_is_capped(
    relay: Relay, asked: int | None, generated: int
) -> None:
    fields = {} if asked is None else {"max_tokens": asked}
    created = await create(relay, MOBILE_KEY, FAST_MOCK, **fields)
    snapshot = await ended(relay, MOBILE_KEY, created["id"])
    assert snapshot["usage"]["output_tokens"] == generated
    assert (snapshot["status"], snapshot["finish_reason"]) == ("completed", "length")
    assert len(snapshot["text"].split()) == generated


# --- read tokens ------------------------------------------------------------------------


async def test_the_read_token_alone_reads_the_events_and_the_snapshot(relay: Relay) -> None:
    created = await create(relay, WEB_KEY)
    events = await relay.events(created["id"], params={"token": created["token"]})
    assert_well_formed(events)
    answer = await call(relay, "GET", f"/v1/sessions/{created['id']}?token={created['token']}")
    assert answer.status == 200 and answer.json()["status"] == "completed"


async def test_forged_and_other_sessions_tokens_are_401(relay: Relay) -> None:
    first = await create(relay, WEB_KEY)
    second = await create(relay, WEB_KEY)
    unknown = new_session_id()
    for session_id, token in [
        (second["id"], first["token"]),
        (second["id"], "rt_" + "A" * 32),
        (second["id"], ""),
        (unknown, first["token"]),
    ]:
        for path in (f"/v1/sessions/{session_id}", f"/v1/sessions/{session_id}/events"):
            answer = await call(relay, "GET", f"{path}?token={token}")
            assert answer.status == 401, answer.text
            assert answer.json()["error"]["code"] == "invalid_token"
            assert answer.headers["WWW-Authenticate"] == 'Bearer realm="relay"'


async def test_a_read_token_opens_nothing_but_reading(relay: Relay) -> None:
    created = await create(relay, WEB_KEY, SLOW_MOCK)
    token = created["token"]
    sid, rid = created["id"], response_id(created["id"])
    for method, path in [
        ("DELETE", f"/v1/sessions/{sid}?token={token}"),
        ("GET", f"/v1/responses/{rid}?token={token}"),
        ("POST", f"/v1/responses/{rid}/cancel?token={token}"),
        ("POST", f"/v1/sessions?token={token}"),
    ]:
        answer = await call(relay, method, path, body=CHAT)
        assert answer.status == 401, (method, path, answer.text)
        assert answer.json()["error"]["code"] == "missing_api_key"
    snapshot = await call(relay, "GET", f"/v1/sessions/{sid}", bearer(WEB_KEY))
    assert snapshot.json()["status"] == "running"


async def test_a_token_is_revoked_when_its_session_expires(start_relay: StartRelay) -> None:
    relay = await start_relay(clients=CLIENTS, store={"retention_s": 1.0})
    created = await create(relay, WEB_KEY)
    sid, token = created["id"], created["token"]
    await ended(relay, WEB_KEY, sid)
    assert (await call(relay, "GET", f"/v1/sessions/{sid}?token={token}")).status == 200
    deadline = time.monotonic() + 10
    while (await call(relay, "GET", f"/v1/sessions/{sid}", bearer(WEB_KEY))).status != 404:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    for path in (f"/v1/sessions/{sid}", f"/v1/sessions/{sid}/events"):
        answer = await call(relay, "GET", f"{path}?token={token}")
        assert (answer.status, answer.json()["error"]["code"]) == (401, "invalid_token")


async def test_the_owner_key_and_a_token_together_must_both_hold(relay: Relay) -> None:
    first = await create(relay, WEB_KEY)
    second = await create(relay, WEB_KEY)
    path = f"/v1/sessions/{second['id']}?token={first['token']}"
    assert (await call(relay, "GET", path, bearer(WEB_KEY))).status == 401
    wrong_key = await call(relay, "GET", path, bearer("wrong-key"))
    assert (wrong_key.status, wrong_key.json()["error"]["code"]) == (401, "invalid_api_key")


# --- the official SDKs ------------------------------------------------------------------


HI: list[Any] = [{"role": "user", "content": "hi"}]
# Each client's keys (web's two, as during a rotation) and how its generations end:
# mobile's are capped at 5 tokens. Each key's other client cannot see its sessions.
SDK_KEYS = [
    pytest.param(WEB_KEY, "stop", id="web"),
    pytest.param(WEB_NEXT_KEY, "stop", id="web-next-key"),
    pytest.param(MOBILE_KEY, "length", id="mobile"),
]
OTHER_CLIENTS_KEY = {WEB_KEY: MOBILE_KEY, WEB_NEXT_KEY: MOBILE_KEY, MOBILE_KEY: WEB_KEY}
RESPONSE_STATUS = {"stop": "completed", "length": "incomplete"}
STOP_REASON = {"stop": "end_turn", "length": "max_tokens"}


@pytest.mark.parametrize(("key", "finish"), SDK_KEYS)
async def test_the_openai_sdk_authenticates_with_api_key(
    relay: Relay, key: str, finish: str
) -> None:
    """Chat Completions, whole and streamed, and Responses, created, streamed and
    retrieved; another client's key cannot retrieve the response."""
    client = relay.openai_sdk(key)
    completion = await client.chat.completions.create(model=FAST_MOCK, messages=HI)
    assert completion.choices[0].finish_reason == finish
    assert completion.choices[0].message.content
    stream = await client.chat.completions.create(model=FAST_MOCK, messages=HI, stream=True)
    chunks = [chunk async for chunk in stream]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == finish
    response = await client.responses.create(model=FAST_MOCK, input="hi")
    assert response.status == RESPONSE_STATUS[finish] and response.output_text
    events = await client.responses.create(model=FAST_MOCK, input="hi", stream=True)
    types = [event.type async for event in events]
    assert types[-1] == f"response.{RESPONSE_STATUS[finish]}"
    again = await client.responses.retrieve(response.id)
    assert again.output_text == response.output_text
    with pytest.raises(openai.NotFoundError):
        await relay.openai_sdk(OTHER_CLIENTS_KEY[key]).responses.retrieve(response.id)


async def test_the_openai_sdk_sees_a_wrong_key_as_an_authentication_error(relay: Relay) -> None:
    with pytest.raises(openai.AuthenticationError) as raised:
        await relay.openai_sdk("wrong-key").chat.completions.create(
            model=FAST_MOCK, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.status_code == 401 and raised.value.code == "invalid_api_key"


async def anthropic_sdk_generates(client: anthropic.AsyncAnthropic, finish: str) -> None:
    """A message, whole and streamed, that ends as `finish` says."""
    message = await client.messages.create(model=FAST_MOCK, max_tokens=50, messages=HI)
    assert message.stop_reason == STOP_REASON[finish] and message.content
    text = ""
    async with client.messages.stream(model=FAST_MOCK, max_tokens=50, messages=HI) as stream:
        async for piece in stream.text_stream:
            text += piece
        final = await stream.get_final_message()
    assert text and final.stop_reason == STOP_REASON[finish]


@pytest.mark.parametrize(("key", "finish"), SDK_KEYS)
async def test_the_anthropic_sdk_authenticates_with_api_key(
    relay: Relay, key: str, finish: str
) -> None:
    await anthropic_sdk_generates(relay.anthropic_sdk(key), finish)
    with pytest.raises(anthropic.AuthenticationError):
        await relay.anthropic_sdk("wrong-key").messages.create(
            model=FAST_MOCK, max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )


@pytest.mark.parametrize(("key", "finish"), SDK_KEYS)
async def test_the_anthropic_sdk_authenticates_with_x_api_key(
    relay: Relay, key: str, finish: str
) -> None:
    """The key in `x-api-key` alone, the header Anthropic's own API reads it from.
    anthropic 2.15 sends `api_key=` as `Authorization: Bearer`, so the SDK is told to
    send the header instead; an httpx hook records what went over the wire."""
    sent: list[dict[str, str]] = []

    async def record(request: Any) -> None:
        sent.append({name.lower(): value for name, value in request.headers.items()})

    http_client = anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [record]})
    headers = {"x-api-key": key, "Authorization": anthropic.omit}
    client = relay.anthropic_sdk(key, default_headers=headers, http_client=http_client)
    await anthropic_sdk_generates(client, finish)
    assert len(sent) == 2
    assert all(h["x-api-key"] == key and "authorization" not in h for h in sent), sent
    with pytest.raises(anthropic.AuthenticationError):
        await relay.anthropic_sdk(
            "unused", default_headers={"x-api-key": "wrong-key", "Authorization": anthropic.omit}
        ).messages.create(model=FAST_MOCK, max_tokens=50, messages=HI)


async def test_an_sdk_stream_resumes_with_the_clients_key(relay: Relay) -> None:
    """The resume endpoint takes the key the SDK used: a frontend resumes what it began."""
    stream = await relay.openai_sdk(WEB_KEY).chat.completions.with_raw_response.create(
        model=FAST_MOCK, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    session_id = stream.headers["X-Relay-Session-Id"]
    async for _ in stream.parse():
        pass
    path = f"/v1/sessions/{session_id}/events?format=openai"
    answer = await call(relay, "GET", path, bearer(WEB_KEY), None)
    frames = SseParser().feed(answer.text.encode())
    assert answer.status == 200 and frames[-1].data == "[DONE]"
