"""Per-client quotas over HTTP, on both stores: a client over a quota gets 429 with
`Retry-After` in each front door's own shape, naming the limit and the client; its
running sessions' slots are given back however they end (done, cancel, error,
`generation_lost`); output tokens are counted from usage; and on one Redis the quotas
span instances and survive a restart (a new app on the same Redis)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
import openai
import pytest

from relay.config import StoreSettings
from relay.events import EventType, StatusData, make_event
from relay.quotas import QuotaLimits
from relay.session import SessionRecord, hash_token, new_session_id
from relay.store import Store
from relay.store.memory import MemoryStore
from relay.store.redis import RedisStore
from tests.frontdoors.conftest import FAST_MOCK, MESSAGES, Relay, StartRelay
from tests.frontdoors.test_clients import Answer, bearer, call, create, ended, sha256
from tests.frontdoors.test_native_api import REDIS_ONLY

KEY = "rk_quota_Yb4Lr8Qs2Wn6Zt1Hc9Vd"
OTHER_KEY = "rk_other_Mg5Pk7Xa3Jf9Rw2Ue4"
SLOW_MOCK = "mock:tokens=400,tps=40,ttft_ms=0"


def clients(**quotas: int) -> list[dict[str, Any]]:
    """Client `web` with these quotas, and client `other` without any."""
    return [
        {"name": "web", "api_key_sha256": sha256(KEY), **quotas},
        {"name": "other", "api_key_sha256": sha256(OTHER_KEY)},
    ]


async def post_session(relay: Relay, model: str = FAST_MOCK, key: str = KEY) -> Answer:
    body = {"model": model, "messages": MESSAGES}
    return await call(relay, "POST", "/v1/sessions", bearer(key), body)


def assert_rate_limited(answer: Answer, limit: str, value: int) -> int:
    """The 429 in relay's shape; its Retry-After."""
    assert answer.status == 429, answer.text
    retry_after = int(answer.headers["Retry-After"])
    assert retry_after >= 1
    assert answer.json() == {
        "error": {
            "code": "rate_limited",
            "message": f"client 'web' is over {limit} = {value}; retry in {retry_after} s",
        }
    }
    return retry_after


# --- requests per minute, in each front door's shape -------------------------------------

CHAT = {"model": FAST_MOCK, "messages": MESSAGES}
# path, body, error shape
SESSION_CREATING = [
    ("/v1/sessions", CHAT, "relay"),
    ("/v1/chat/completions", CHAT, "openai"),
    ("/v1/chat/completions", {**CHAT, "stream": True}, "openai"),
    ("/v1/responses", {"model": FAST_MOCK, "input": "hi"}, "openai"),
    ("/v1/responses", {"model": FAST_MOCK, "input": "hi", "background": True}, "openai"),
    ("/v1/messages", {**CHAT, "max_tokens": 10}, "anthropic"),
    ("/v1/messages", {**CHAT, "max_tokens": 10, "stream": True}, "anthropic"),
]


def rate_limit_body(shape: str, message: str) -> dict[str, Any]:
    if shape == "relay":
        return {"error": {"code": "rate_limited", "message": message}}
    if shape == "openai":
        error = {"message": message, "type": "rate_limit_error", "param": None}
        return {"error": {**error, "code": "rate_limited"}}
    return {"type": "error", "error": {"type": "rate_limit_error", "message": message}}


@pytest.mark.parametrize(("path", "body", "shape"), SESSION_CREATING)
async def test_over_requests_per_minute_is_429_in_the_front_doors_shape(
    start_relay: StartRelay, path: str, body: dict[str, Any], shape: str
) -> None:
    relay = await start_relay(clients=clients(requests_per_minute=2))
    for _ in range(2):
        answer = await call(relay, "POST", path, bearer(KEY), body)
        assert answer.status in (200, 201), answer.text
    refused = await call(relay, "POST", path, bearer(KEY), body)
    assert refused.status == 429, refused.text
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 120
    message = f"client 'web' is over requests_per_minute = 2; retry in {retry_after} s"
    assert refused.json() == rate_limit_body(shape, message)
    # Another client is not held to web's quota.
    other = await call(relay, "POST", path, bearer(OTHER_KEY), body)
    assert other.status in (200, 201), other.text


async def test_a_refused_request_does_not_count(start_relay: StartRelay) -> None:
    relay = await start_relay(clients=clients(requests_per_minute=2, max_concurrent_sessions=1))
    created = await create(relay, KEY, SLOW_MOCK)
    for _ in range(5):
        assert_rate_limited(await post_session(relay), "max_concurrent_sessions", 1)
    await call(relay, "DELETE", f"/v1/sessions/{created['id']}", bearer(KEY))
    # The five refusals did not count: the minute's second request is admitted.
    assert (await post_session(relay)).status == 201
    assert_rate_limited(await post_session(relay), "requests_per_minute", 2)


# --- concurrent sessions: the slot comes back however the session ends -----------------


async def test_over_max_concurrent_sessions_is_429_with_a_short_retry(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(clients=clients(max_concurrent_sessions=2))
    running = [await create(relay, KEY, SLOW_MOCK) for _ in range(2)]
    retry_after = assert_rate_limited(await post_session(relay), "max_concurrent_sessions", 2)
    assert retry_after == 2
    assert (await post_session(relay, key=OTHER_KEY)).status == 201
    for session in running:
        await call(relay, "DELETE", f"/v1/sessions/{session['id']}", bearer(KEY))


class RecordingReleases:
    """A store that notes each slot given back (self-healing would hide a missed one)."""

    released: list[str]

    async def release(self, client: str, session_id: str) -> None:
        self.released.append(session_id)
        await super().release(client, session_id)  # type: ignore[misc]

    async def was_released(self, session_id: str) -> bool:
        """Whether the slot was given back, within a second (it follows the end)."""
        for _ in range(50):
            if session_id in self.released:
                return True
            await asyncio.sleep(0.02)
        return False


class RecordingMemory(RecordingReleases, MemoryStore):
    pass


class RecordingRedis(RecordingReleases, RedisStore):
    pass


def recording(store_url: str, **settings: Any) -> RecordingReleases:
    store_settings = StoreSettings(url=store_url, **settings)
    store: RecordingReleases
    if store_url == "memory://":
        store = RecordingMemory(store_settings)
    else:
        store = RecordingRedis.from_url(store_url, store_settings)
    store.released = []
    return store


async def start_recording(
    start_relay: StartRelay, recorder: RecordingReleases, **overrides: Any
) -> Relay:
    """A relay on `recorder`, whose client web may run one session at a time."""
    assert isinstance(recorder, Store)
    quotas = clients(max_concurrent_sessions=1)
    return await start_relay(with_store=recorder, clients=quotas, **overrides)


@pytest.mark.parametrize(
    ("model", "status"),
    [
        (FAST_MOCK, "completed"),
        ("mock:tokens=20,tps=0,ttft_ms=0,fail_after=3", "failed"),
    ],
)
async def test_a_session_that_ends_gives_its_slot_back(
    start_relay: StartRelay, store_url: str, model: str, status: str
) -> None:
    store = recording(store_url)
    relay = await start_recording(start_relay, store)
    first = await create(relay, KEY, model)
    assert (await ended(relay, KEY, first["id"]))["status"] == status
    assert await store.was_released(first["id"])
    second = await create(relay, KEY, SLOW_MOCK)
    assert_rate_limited(await post_session(relay), "max_concurrent_sessions", 1)
    await call(relay, "DELETE", f"/v1/sessions/{second['id']}", bearer(KEY))


async def test_a_cancelled_session_gives_its_slot_back(
    start_relay: StartRelay, store_url: str
) -> None:
    store = recording(store_url)
    relay = await start_recording(start_relay, store)
    first = await create(relay, KEY, SLOW_MOCK)
    assert_rate_limited(await post_session(relay), "max_concurrent_sessions", 1)
    cancel = await call(relay, "DELETE", f"/v1/sessions/{first['id']}", bearer(KEY))
    assert cancel.status == 202 and cancel.json()["status"] == "cancelled"
    assert await store.was_released(first["id"])
    assert (await post_session(relay)).status == 201


async def test_a_session_ended_as_generation_lost_gives_its_slot_back(
    start_relay: StartRelay, store_url: str
) -> None:
    """A session of web's whose instance is gone (its lease is never renewed): the lease
    reaper ends it with generation_lost, and frees the slot. (A session still generating
    on the reaping instance is never reaped there, so the orphan is made by hand.)"""
    store = recording(store_url, lease_ttl_s=0.6)
    relay = await start_recording(start_relay, store, store={"url": store_url, "lease_ttl_s": 0.6})
    lost = await orphan_of_web(store)
    snapshot = await ended(relay, KEY, lost.id)
    assert snapshot["error"]["code"] == "generation_lost"
    assert await store.was_released(lost.id)
    assert (await post_session(relay)).status == 201


async def orphan_of_web(store: RecordingReleases) -> SessionRecord:
    """A running session of web's, holding web's slot, generated by an instance now gone."""
    now = time.time()
    orphan = SessionRecord(
        new_session_id(), "mock", now, now, hash_token("t"), owner="i_gone", client="web"
    )
    assert await store.admit("web", orphan.id, QuotaLimits(1), now) is None
    await store.create(orphan)
    await store.append(orphan.id, [make_event(1, EventType.STATUS, StatusData("generating"))])
    return orphan


async def test_a_session_without_a_generator_cancelled_gives_its_slot_back(
    start_relay: StartRelay, store_url: str
) -> None:
    """No instance answers the cancel: relay ends the log itself, and frees the slot."""
    store = recording(store_url)
    relay = await start_recording(start_relay, store)
    orphan = await orphan_of_web(store)
    assert_rate_limited(await post_session(relay), "max_concurrent_sessions", 1)
    cancel = await call(relay, "DELETE", f"/v1/sessions/{orphan.id}", bearer(KEY))
    assert cancel.json()["status"] == "cancelled"
    assert await store.was_released(orphan.id)
    assert (await post_session(relay)).status == 201


@REDIS_ONLY
async def test_a_session_cancelled_from_another_instance_gives_its_slot_back(
    start_relay: StartRelay,
) -> None:
    one = await start_relay(clients=clients(max_concurrent_sessions=1))
    two = await start_relay(clients=clients(max_concurrent_sessions=1))
    created = await create(one, KEY, SLOW_MOCK)
    assert_rate_limited(await post_session(two), "max_concurrent_sessions", 1)
    cancel = await call(two, "DELETE", f"/v1/sessions/{created['id']}", bearer(KEY))
    assert cancel.status == 202
    assert (await post_session(two)).status == 201


# --- tokens per minute --------------------------------------------------------------------


async def test_output_tokens_count_against_tokens_per_minute(start_relay: StartRelay) -> None:
    relay = await start_relay(clients=clients(tokens_per_minute=30))
    first = await create(relay, KEY, "mock:tokens=20,tps=0,ttft_ms=0")
    assert (await ended(relay, KEY, first["id"]))["usage"]["output_tokens"] == 20
    # 20 of 30: a session is admitted, and is not cut when it passes the limit.
    second = await create(relay, KEY, "mock:tokens=20,tps=0,ttft_ms=0")
    assert (await ended(relay, KEY, second["id"]))["usage"]["output_tokens"] == 20
    retry_after = assert_rate_limited(await post_session(relay), "tokens_per_minute", 30)
    assert retry_after <= 120
    assert (await post_session(relay, key=OTHER_KEY)).status == 201


# --- across instances and restarts, on one Redis ------------------------------------------


@REDIS_ONLY
async def test_two_instances_share_the_concurrency_limit(start_relay: StartRelay) -> None:
    one = await start_relay(clients=clients(max_concurrent_sessions=3))
    two = await start_relay(clients=clients(max_concurrent_sessions=3))
    answers = await asyncio.gather(
        *(post_session(relay, SLOW_MOCK) for relay in (one, two) for _ in range(5))
    )
    assert sorted(answer.status for answer in answers) == [201] * 3 + [429] * 7
    for answer in answers:
        if answer.status == 201:
            await call(one, "DELETE", f"/v1/sessions/{answer.json()['id']}", bearer(KEY))


@REDIS_ONLY
async def test_two_instances_share_requests_per_minute(start_relay: StartRelay) -> None:
    one = await start_relay(clients=clients(requests_per_minute=4))
    two = await start_relay(clients=clients(requests_per_minute=4))
    answers = await asyncio.gather(*(post_session(relay) for relay in (one, two) for _ in range(5)))
    assert sorted(answer.status for answer in answers) == [201] * 4 + [429] * 6


@REDIS_ONLY
async def test_the_counts_survive_a_restart(start_relay: StartRelay) -> None:
    before = await start_relay(clients=clients(requests_per_minute=2, tokens_per_minute=1000))
    for _ in range(2):
        await create(before, KEY)
    await before.close()
    after = await start_relay(clients=clients(requests_per_minute=2, tokens_per_minute=1000))
    assert_rate_limited(await post_session(after), "requests_per_minute", 2)


# --- the official SDKs see a rate limit -------------------------------------------------


async def test_the_sdks_see_a_rate_limit_error(start_relay: StartRelay) -> None:
    relay = await start_relay(clients=clients(max_concurrent_sessions=1))
    held = await create(relay, KEY, SLOW_MOCK)
    # max_retries=0: the SDKs retry a 429 themselves, after its Retry-After.
    async with openai.AsyncOpenAI(base_url=relay.url("/v1"), api_key=KEY, max_retries=0) as sdk:
        with pytest.raises(openai.RateLimitError) as raised:
            await sdk.chat.completions.create(
                model=FAST_MOCK, messages=[{"role": "user", "content": "hi"}]
            )
    assert raised.value.status_code == 429 and raised.value.code == "rate_limited"
    async with anthropic.AsyncAnthropic(base_url=relay.url(""), api_key=KEY, max_retries=0) as ant:
        with pytest.raises(anthropic.RateLimitError) as limited:
            await ant.messages.create(
                model=FAST_MOCK, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
    assert limited.value.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "2"
    await call(relay, "DELETE", f"/v1/sessions/{held['id']}", bearer(KEY))
