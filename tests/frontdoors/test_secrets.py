"""Secrets never leak: every error path reachable here is exercised, on two instances of
relay (one memory store, or one redis-server), then every sink is searched for every secret.

Secrets: each upstream's API key (read from `api_key_env`; the stub upstreams echo the key
they were sent back in every way they fail), each session's read token, and each
session's id (its random part, which its wire ids share: in logs only, since answers to
the session's owner carry it on purpose). Sinks: log records at DEBUG (message and
traceback, the access log included), the names of running tasks, response bodies
(error bodies and in-band error events), response headers, and `relay check-config`.

To extend it (client keys, metrics labels): add a `Secret` with the sinks it must never
reach to `Sweep.secrets`, or a sink's texts with `Sweep.see`.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.app import create_app
from relay.cli import main
from relay.config import Settings, load_settings
from relay.logs import AccessLog
from relay.providers.base import Provider, ProviderItem, TextDelta
from relay.providers.failures import SECRET_PIECE_CHARS
from relay.services import SERVICES
from relay.session import SessionRecord, hash_token, new_session_id, new_token
from relay.store import Store
from relay.store.memory import MemoryStore
from relay.vocabulary import READ_TOKEN_PREFIX, GenerationRequest, session_suffix
from tests.providers.stub_upstream import Handler, StubUpstream, stub_upstream

MESSAGES = [{"role": "user", "content": "hello"}]
# Each way an upstream fails, and the error code a client must get for it.
FAILURES = {
    "auth": "upstream_auth",  # 401 echoing the key
    "fail": "upstream_unavailable",  # 500 echoing the key
    "cut": "upstream_bad_request",  # 400 with the key across the 1,000-character cut
    "prefix": "upstream_forbidden",  # 403 with 14 characters of the key, cut by the upstream
    "malformed": "upstream_bad_response",  # 200 whose events are not the format's
    "in_stream": "upstream_auth",  # 200 whose stream reports an error quoting the key
    "redirect": "upstream_redirect",  # 307 to another origin
}
KINDS = ("openai", "anthropic")


class Sink(enum.StrEnum):
    LOGS = "logs"
    TASK_NAMES = "task names"
    BODIES = "response bodies"
    HEADERS = "response headers"
    CHECK_CONFIG = "check-config output"


EVERYWHERE = frozenset(Sink)
LOGS_ONLY = frozenset({Sink.LOGS, Sink.TASK_NAMES})


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    never_in: frozenset[Sink]
    pieces: bool = False  # nor any SECRET_PIECE_CHARS of its characters in a row

    def found_in(self, text: str) -> bool:
        if self.value in text:
            return True
        width = SECRET_PIECE_CHARS
        chunks = (self.value[i : i + width] for i in range(len(self.value) - width + 1))
        return self.pieces and any(chunk in text for chunk in chunks)


@dataclass
class Sweep:
    secrets: list[Secret] = field(default_factory=list)
    seen: list[tuple[Sink, str, str]] = field(default_factory=list)  # sink, where, text
    error_codes: dict[str, set[str]] = field(default_factory=dict)  # upstream → codes

    def see(self, sink: Sink, where: str, text: str) -> None:
        self.seen.append((sink, where, text))

    def session(self, session_id: str, token: str | None = None) -> None:
        self.secrets.append(Secret(f"session {session_id}", session_suffix(session_id), LOGS_ONLY))
        if token is not None:
            never_in = LOGS_ONLY | {Sink.HEADERS}
            self.secrets.append(Secret(f"read token of {session_id}", token, never_in))

    def leaks(self) -> list[str]:
        return [
            f"{secret.name} in {sink} ({where})"
            for secret in self.secrets
            for sink, where, text in self.seen
            if sink in secret.never_in and secret.found_in(text)
        ]


def upstream_key() -> str:
    """Random throughout: a piece of a readable prefix could match the upstream's name."""
    return "sk-" + new_token("")


# --- the stub upstreams ---------------------------------------------------------------


def presented_key(request: web.Request) -> str:
    return request.headers.get("x-api-key") or request.headers.get("Authorization", "")[7:]


def sse(*frames: str) -> web.Response:
    return web.Response(body="".join(frames).encode(), content_type="text/event-stream")


def failing_upstream(elsewhere: StubUpstream) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        failure, kind = request.path.split("/")[1:3]
        key = presented_key(request)
        match failure:
            case "auth":
                return error_json(401, f"Incorrect API key provided: {key}")
            case "fail":
                return error_json(500, f"internal error while checking {key}")
            case "cut":
                return error_json(400, "x" * 990 + key + " is malformed")
            case "prefix":
                return error_json(403, f"key {key[:14]}… has no access")
            case "malformed":
                fields = f'"type": "{key}", "index": "{key}", "choices": [{{"index": "{key}"}}]'
                return sse(f"data: {{{fields}}}\n\n")
            case "in_stream":
                return sse(*stream_error(kind, key))
            case _:
                return web.Response(status=307, headers={"Location": elsewhere.url(request.path)})

    return answer


def error_json(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "x"}}, status=status)


def stream_error(kind: str, key: str) -> list[str]:
    error = f'{{"type": "authentication_error", "message": "bad key {key}"}}'
    if kind == "anthropic":
        return [f'event: error\ndata: {{"type": "error", "error": {error}}}\n\n']
    return [f'data: {{"error": {error}}}\n\n']


# --- relay ----------------------------------------------------------------------------


class BuggyProvider(Provider):
    """A bug of relay's, injected: the stream raises what no upstream failure is."""

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        yield TextDelta("a word, then ")
        raise ZeroDivisionError("a bug")


def upstreams(base_url: str, keys: dict[str, str]) -> list[dict[str, Any]]:
    configured: list[dict[str, Any]] = [
        {"name": "mock", "kind": "mock", "models": ["mock", "mock:*"]},
        {"name": "buggy", "kind": "mock", "models": []},
    ]
    for name in keys:
        failure, kind = name.split("-")
        prefix = "/v1" if kind == "openai" else ""
        configured.append(
            {
                "name": name,
                "kind": kind,
                "base_url": f"{base_url}/{failure}/{kind}{prefix}",
                "api_key_env": f"SWEEP_KEY_{failure}_{kind}".upper(),
                "models": [],
                "max_retries": 0,
            }
        )
    return configured


@dataclass
class Instance:
    server: TestServer
    url: str

    @property
    def app(self) -> web.Application:
        return self.server.app


@pytest.fixture
async def sweep_env(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, store_url: str
) -> AsyncIterator[tuple[Sweep, Settings, dict[str, str], StubUpstream]]:
    caplog.set_level(logging.DEBUG)
    sweep = Sweep()
    keys = {f"{failure}-{kind}": upstream_key() for failure in FAILURES for kind in KINDS}
    for name, key in keys.items():
        failure, kind = name.split("-")
        monkeypatch.setenv(f"SWEEP_KEY_{failure}_{kind}".upper(), key)
        sweep.secrets.append(Secret(f"upstream key of {name}", key, EVERYWHERE, pieces=True))
    async with (
        stub_upstream(nothing) as elsewhere,
        stub_upstream(failing_upstream(elsewhere)) as upstream,
    ):
        overrides = {
            "upstreams": upstreams(upstream.url().rstrip("/"), keys),
            "server": {"drain_timeout_s": 0},
            "store": {"url": store_url, "lease_ttl_s": 2.0},  # a cancel waits 1 s
        }
        settings = load_settings(None, environ={}, overrides=overrides)
        yield sweep, settings, keys, elsewhere


async def nothing(request: web.Request) -> web.Response:
    return web.Response()


async def start(settings: Settings, store: Store | None) -> Instance:
    app = create_app(settings, store=store, providers={"buggy": BuggyProvider()})
    # The access log `relay serve` uses, not aiohttp's (which logs request lines as sent).
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log_class=AccessLog)
    return Instance(server, str(server.make_url("")).rstrip("/"))


class Client:
    """Records every answer's headers and body in the sweep."""

    def __init__(self, sweep: Sweep, http: aiohttp.ClientSession) -> None:
        self.sweep = sweep
        self.http = http

    async def call(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any, str]:
        async with self.http.request(method, url, **kwargs) as response:
            body = await response.text()
        where = f"{method} {url}"
        headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.sweep.see(Sink.HEADERS, where, headers)
        self.sweep.see(Sink.BODIES, where, body)
        session_id = response.headers.get("X-Relay-Session-Id")
        if session_id:
            self.sweep.session(session_id)
        return response.status, response.headers, body

    async def create(self, base: str, model: str) -> dict[str, Any]:
        status, _, body = await self.call(
            "POST", f"{base}/v1/sessions", json={"model": model, "messages": MESSAGES}
        )
        assert status == 201, body
        created: dict[str, Any] = json.loads(body)
        self.sweep.session(created["id"], created["token"])
        return created

    async def ended(self, base: str, session_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while True:
            _, _, body = await self.call("GET", f"{base}/v1/sessions/{session_id}")
            snapshot: dict[str, Any] = json.loads(body)
            if snapshot["status"] != "running":
                return snapshot
            assert time.monotonic() < deadline, snapshot
            await asyncio.sleep(0.02)


def note_tasks(sweep: Sweep) -> None:
    names = "\n".join(task.get_name() for task in asyncio.all_tasks())
    sweep.see(Sink.TASK_NAMES, "asyncio.all_tasks()", names)


# --- what is exercised ----------------------------------------------------------------


async def every_upstream_failure(client: Client, base: str, keys: dict[str, str]) -> None:
    """Each failing upstream through every front door, streamed and not."""
    for name in keys:
        model = f"{name}/some-model"
        created = await client.create(base, model)
        await client.call("GET", f"{base}/v1/sessions/{created['id']}/events")
        snapshot = await client.ended(base, created["id"])
        client.sweep.error_codes.setdefault(name, set()).add(snapshot["error"]["code"])
        await client.call("DELETE", f"{base}/v1/sessions/{created['id']}")
        chat = {"model": model, "messages": MESSAGES}
        await client.call("POST", f"{base}/v1/chat/completions", json=chat)
        await client.call("POST", f"{base}/v1/chat/completions", json={**chat, "stream": True})
        messages = {"model": model, "messages": MESSAGES, "max_tokens": 10}
        await client.call("POST", f"{base}/v1/messages", json=messages)
        await client.call("POST", f"{base}/v1/messages", json={**messages, "stream": True})
        await client.call("POST", f"{base}/v1/responses", json={"model": model, "input": "hi"})


async def relays_own_refusals(client: Client, base: str) -> None:
    """Bad requests that name a session or carry its read token."""
    created = await client.create(base, "mock:tokens=3,tps=0,ttft_ms=0")
    session_id, token = created["id"], created["token"]
    events = f"{base}/v1/sessions/{session_id}/events"
    await client.call("GET", events, params={"token": token, "last_event_id": "x"})
    await client.call("GET", events, params={"token": token}, headers={"Last-Event-ID": "-1"})
    await client.call("GET", f"{base}/v1/sessions/{new_session_id()}", params={"token": token})
    await client.call("PUT", f"{base}/v1/sessions/{session_id}", params={"token": token})
    await client.call("POST", f"{base}/v1/sessions", data=b"{", params={"token": token})
    await client.call("POST", f"{base}/v1/sessions", json={"model": "nope/x", "messages": []})
    await client.call("GET", f"{base}/v1/responses/resp_{session_suffix(session_id)}")
    await client.call("POST", f"{base}/v1/responses/resp_{session_suffix(session_id)}/cancel")
    await client.ended(base, session_id)
    await client.call("GET", events, params={"token": token, "last_event_id": "99"})


async def cancels_leases_and_bugs(client: Client, here: Instance, there: Instance) -> None:
    """Cancel here and from another instance, a cancel no generator answers, a lease lost,
    and a bug in a provider."""
    slow = "mock:tokens=200,tps=20,ttft_ms=0"
    for base in (here.url, there.url):  # cancelled where it runs, then from elsewhere
        created = await client.create(here.url, slow)
        note_tasks(client.sweep)
        await client.call("DELETE", f"{base}/v1/sessions/{created['id']}")
        assert (await client.ended(here.url, created["id"]))["status"] == "cancelled"
    store = here.app[SERVICES].store
    orphans = [await orphan(store) for _ in range(2)]
    for session_id in orphans:
        client.sweep.session(session_id)
    await client.call("DELETE", f"{here.url}/v1/sessions/{orphans[0]}")  # nobody answers
    lost = await client.ended(here.url, orphans[1])  # its lease lapses; the reaper ends it
    assert lost["error"]["code"] == "generation_lost"
    buggy = await client.create(here.url, "buggy/m")
    assert (await client.ended(here.url, buggy["id"]))["error"]["code"] == "internal_error"


async def orphan(store: Store) -> str:
    """A running session whose generator is gone: no instance runs it."""
    now = time.time()
    session_id = new_session_id()
    token_sha256 = hash_token(new_token(READ_TOKEN_PREFIX))
    record = SessionRecord(
        id=session_id, model="mock", created_at=now, updated_at=now,
        token_sha256=token_sha256, owner="i_gone",
    )  # fmt: skip
    await store.create(record)
    return session_id


def check_config_output(
    sweep: Sweep, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "relay.toml"
    lines = []
    for upstream in settings.upstreams:
        if upstream.kind != "mock":
            lines += [
                "[[upstreams]]",
                f'name = "{upstream.name}"',
                f'kind = "{upstream.kind}"',
                f'base_url = "{upstream.base_url}"',
                f'api_key_env = "{upstream.api_key_env}"',
            ]
    path.write_text("\n".join(lines) + "\n")
    assert main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert "api_key_env" in captured.out
    sweep.see(Sink.CHECK_CONFIG, "relay check-config", captured.out + captured.err)


async def test_no_secret_reaches_any_sink(
    sweep_env: tuple[Sweep, Settings, dict[str, str], StubUpstream],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    sweep, settings, keys, elsewhere = sweep_env
    # Two instances: on one memory store, or each with its own connections to Redis.
    shared = MemoryStore(settings.store) if settings.store.url == "memory://" else None
    here, there = await start(settings, shared), await start(settings, shared)
    http = aiohttp.ClientSession()
    try:
        client = Client(sweep, http)
        await every_upstream_failure(client, here.url, keys)
        await relays_own_refusals(client, here.url)
        await cancels_leases_and_bugs(client, here, there)
    finally:
        await http.close()
        await there.server.close()
        await here.server.close()
    check_config_output(sweep, settings, tmp_path, capsys)
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    for record in caplog.records:
        sweep.see(Sink.LOGS, record.name, formatter.format(record))

    assert {name: codes for name, codes in sweep.error_codes.items()} == {
        name: {FAILURES[name.split("-")[0]]} for name in keys
    }
    assert elsewhere.requests == []  # no redirect was followed, with a key or without
    logged = "\n".join(text for sink, _, text in sweep.seen if sink is Sink.LOGS)
    for expected in ("lost its generator", "no generator answered", "provider stream raised"):
        assert expected in logged  # every path that logs a session was taken
    assert "#" in logged and "/v1/sessions/#" in logged  # sessions are named by their tags
    assert sweep.leaks() == []
