"""The real app on a real socket, reached through a real `aiohttp.ClientSession`.

Every test here runs once per store: `memory://` and a real redis-server (its
`redis_url` fixture lives in tests/conftest.py and is requested only for that param).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp.test_utils import TestServer

from relay import sse
from relay.app import create_app
from relay.config import Settings, load_settings
from relay.providers.base import Provider
from relay.store import Store
from tests.sse_client import SseEvent, SseReader

READ_TIMEOUT_S = 10.0
FAST_MOCK = "mock:tokens=20,tps=0,ttft_ms=0"
MESSAGES = [{"role": "user", "content": "tell me a short story"}]

Overrides = Mapping[str, Mapping[str, Any]]


def keyed_clients(keys: Mapping[str, str], **more: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`[[clients]]` for `start_relay(clients=…)`: one per name in `keys`, known by the
    SHA-256 of its key, with the fields `more` gives under its name."""
    return [
        {
            "name": name,
            "api_key_sha256": hashlib.sha256(key.encode()).hexdigest(),
            **more.get(name, {}),
        }
        for name, key in keys.items()
    ]


class Relay:
    """One running relay, a client for its native API, and the official SDKs' clients
    pointed at it.

    The SDK clients are closed with the relay, inside the test's event loop. One left to
    the garbage collector closes itself later on whatever loop runs then (the SDKs'
    `__del__` schedules `aclose()` there); its connections belong to the test's loop,
    which has ended, so the close fails and asyncio logs "Task exception was never
    retrieved" in another test.
    """

    def __init__(self, server: TestServer, http: aiohttp.ClientSession, settings: Settings):
        self.server = server
        self.http = http
        self.settings = settings
        self.sdks: list[openai.AsyncOpenAI | anthropic.AsyncAnthropic] = []

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def openai_sdk(self, api_key: str = "unused") -> openai.AsyncOpenAI:
        sdk = openai.AsyncOpenAI(base_url=self.url("/v1"), api_key=api_key, max_retries=0)
        self.sdks.append(sdk)
        return sdk

    def anthropic_sdk(self, api_key: str = "unused", **options: Any) -> anthropic.AsyncAnthropic:
        sdk = anthropic.AsyncAnthropic(
            base_url=self.url(""), api_key=api_key, max_retries=0, **options
        )
        self.sdks.append(sdk)
        return sdk

    async def post_session(self, body: Any) -> aiohttp.ClientResponse:
        return await self.http.post(self.url("/v1/sessions"), json=body)

    async def create(
        self, model: str = FAST_MOCK, messages: Any = None, **fields: Any
    ) -> dict[str, Any]:
        """Create a session; its 201 answer."""
        body = {"model": model, "messages": MESSAGES if messages is None else messages, **fields}
        async with await self.post_session(body) as response:
            assert response.status == 201, await response.text()
            created: dict[str, Any] = await response.json()
            return created

    async def snapshot(self, session_id: str) -> dict[str, Any]:
        async with self.http.get(self.url(f"/v1/sessions/{session_id}")) as response:
            assert response.status == 200, await response.text()
            snapshot: dict[str, Any] = await response.json()
            return snapshot

    async def wait_until_ended(self, session_id: str) -> dict[str, Any]:
        """The snapshot once the session has its terminal event."""
        deadline = time.monotonic() + READ_TIMEOUT_S
        while (snapshot := await self.snapshot(session_id))["status"] == "running":
            assert time.monotonic() < deadline, f"{session_id} still running: {snapshot}"
            await asyncio.sleep(0.02)
        return snapshot

    async def open_events(
        self,
        session_id: str,
        *,
        last_event_id: str | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """GET the events endpoint; the response, whatever its status."""
        sent = dict(headers or {})
        if last_event_id is not None:
            sent["Last-Event-ID"] = last_event_id
        return await self.http.get(
            self.url(f"/v1/sessions/{session_id}/events"), headers=sent, params=params
        )

    @contextlib.asynccontextmanager
    async def subscribe(self, session_id: str, **kwargs: Any) -> AsyncIterator[SseReader]:
        """An open SSE stream (status 200 asserted); closed on exit."""
        response = await self.open_events(session_id, **kwargs)
        try:
            assert response.status == 200, await response.text()
            async with asyncio.timeout(READ_TIMEOUT_S):
                yield SseReader(response)
        finally:
            response.close()

    async def events(self, session_id: str, **kwargs: Any) -> list[SseEvent]:
        """Every event of a stream, until the server closes it."""
        async with self.subscribe(session_id, **kwargs) as reader:
            events = await reader.read_all()
            assert not reader.aborted, f"the stream of {session_id} was cut: {events}"
            return events

    async def close(self) -> None:
        for sdk in self.sdks:
            await sdk.close()
        await self.http.close()
        await self.server.close()


StartRelay = Callable[..., Awaitable[Relay]]


def merge(base: Overrides, extra: Overrides) -> dict[str, dict[str, Any]]:
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in extra.items():
        if isinstance(values, Mapping):
            merged.setdefault(section, {}).update(values)
        else:
            merged[section] = values
    return merged


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
async def start_relay(store_url: str) -> AsyncIterator[StartRelay]:
    """Start relays with settings overrides, e.g. `await start_relay(server={...})`;
    `with_store=` and `with_providers=` are handed to `create_app` (to inject faults)."""
    started: list[Relay] = []

    async def start(
        *,
        with_store: Store | None = None,
        with_providers: Mapping[str, Provider] | None = None,
        **overrides: Mapping[str, Any],
    ) -> Relay:
        # Closing a test server cancels its generations at once (no drain period).
        base = {"store": {"url": store_url}, "server": {"drain_timeout_s": 0}}
        sections = merge(base, overrides)
        settings = load_settings(None, environ={}, overrides=sections)
        server = TestServer(
            create_app(settings, store=with_store, providers=with_providers), host="127.0.0.1"
        )
        await server.start_server()
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        relay = Relay(server, http, settings)
        started.append(relay)
        return relay

    yield start
    for relay in reversed(started):
        await relay.close()


@pytest.fixture
async def relay_server(start_relay: StartRelay) -> Relay:
    """A relay with the default settings on the parametrised store."""
    return await start_relay()


async def with_early_first_heartbeat(
    create: Callable[[], Awaitable[dict[str, Any]]], heartbeat_s: float
) -> tuple[dict[str, Any], float]:
    """A session `create` made whose first heartbeat (`relay.sse.first_heartbeat_s`)
    falls before 0.65 of the interval (about one in three does), and that beat."""
    for _ in range(40):
        created = await create()
        first_s = sse.first_heartbeat_s(heartbeat_s, created["id"])
        if first_s < 0.65 * heartbeat_s:
            return created, first_s
    raise AssertionError("no session id with an early first heartbeat in 40")


async def seconds_to_first_ping(response: aiohttp.ClientResponse) -> float:
    """How long an open SSE response takes to bring its first `: ping`."""
    started = time.monotonic()
    assert response.status == 200
    received = b""
    async with asyncio.timeout(READ_TIMEOUT_S):
        while sse.PING not in received:
            received += await response.content.readany()
    return time.monotonic() - started
