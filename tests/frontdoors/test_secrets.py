"""Secrets never leak: every error path reachable here is exercised, on two instances of
relay (one memory store, or one redis-server), with two `[[clients]]` configured and
without clients, then every sink is searched for every secret and for every piece of
one 8 characters long (`SECRET_PIECE_CHARS`).

Secrets: each upstream's API key (read from `api_key_env`; the stub upstreams echo the key
they were sent back in every way they fail); each client's key (one read from
`api_key_env`, one given as `api_key_sha256`), and the near-misses and forged tokens sent
in their place; each session's read token (which only the answer that creates its session
carries); and each session's id (its random part, which its wire ids share: in logs only,
since answers to the session's owner carry it on purpose). Sinks: log records at DEBUG
(message and traceback, the access log included), the names of running tasks, response
bodies (error bodies and in-band error events), response headers, and `relay
check-config`. The instances are served as `relay serve` serves them (its connection
handler answers what the HTTP parser refuses), so requests too malformed for the app to
see are swept as well.

To extend it (metrics labels): add a `Secret` with the sinks it must never reach to
`Sweep.secrets`, or a sink's texts with `Sweep.see`.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
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
from yarl import URL

from relay.app import create_app
from relay.cli import connection_handler, main
from relay.config import Settings, load_settings
from relay.frontdoors.connections import ConnectionGate
from relay.logs import ContextFilter, JsonFormatter, TextFormatter
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
    CREATED = "the bodies of 201s that create a session"
    HEADERS = "response headers"
    CHECK_CONFIG = "check-config output"


EVERYWHERE = frozenset(Sink)
LOGS_ONLY = frozenset({Sink.LOGS, Sink.TASK_NAMES})
BUT_ITS_CREATION = EVERYWHERE - {Sink.CREATED}  # where a read token is handed out


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
            self.secret(f"read token of {session_id}", token, BUT_ITS_CREATION)

    def secret(self, name: str, value: str, never_in: frozenset[Sink] = EVERYWHERE) -> str:
        self.secrets.append(Secret(name, value, never_in, pieces=True))
        return value

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


def client_key() -> str:
    return "rk-" + new_token("")


def near_miss(key: str) -> str:
    """A key with its last character mistyped: every piece but the last is the key's."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")


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


WEB_KEY_VARIABLE = "SWEEP_CLIENT_KEY_WEB"


def two_clients(mobile_key: str) -> list[dict[str, Any]]:
    """`web`, whose key is in the environment; `mobile`, whose key is given as its
    digest, and which may use fewer models."""
    digest = hashlib.sha256(mobile_key.encode()).hexdigest()
    return [
        {"name": "web", "api_key_env": WEB_KEY_VARIABLE},
        {"name": "mobile", "api_key_sha256": digest, "models": ["mock:*"]},
    ]


@dataclass(frozen=True)
class ClientKeys:
    web: str
    mobile: str


@dataclass(frozen=True)
class Setup:
    sweep: Sweep
    settings: Settings
    upstream_keys: dict[str, str]  # upstream name → its key
    client_keys: ClientKeys | None  # None: relay is anonymous
    elsewhere: StubUpstream  # where the redirects point


@pytest.fixture(params=["two clients", "anonymous"])
async def sweep_setup(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    store_url: str,
) -> AsyncIterator[Setup]:
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(ContextFilter())  # as `relay serve`'s handler: request fields
    sweep = Sweep()
    keys = {f"{failure}-{kind}": upstream_key() for failure in FAILURES for kind in KINDS}
    for name, key in keys.items():
        failure, kind = name.split("-")
        monkeypatch.setenv(f"SWEEP_KEY_{failure}_{kind}".upper(), key)
        sweep.secret(f"upstream key of {name}", key)
    client_keys = None
    if request.param == "two clients":
        web, mobile = client_key(), client_key()
        client_keys = ClientKeys(
            sweep.secret("web's key", web), sweep.secret("mobile's key", mobile)
        )
        monkeypatch.setenv(WEB_KEY_VARIABLE, web)
    async with (
        stub_upstream(nothing) as elsewhere,
        stub_upstream(failing_upstream(elsewhere)) as upstream,
    ):
        overrides = {
            "upstreams": upstreams(upstream.url().rstrip("/"), keys),
            "clients": two_clients(client_keys.mobile) if client_keys else [],
            "server": {"drain_timeout_s": 0},
            "store": {"url": store_url, "lease_ttl_s": 2.0},  # a cancel waits 1 s
        }
        settings = load_settings(None, environ={}, overrides=overrides)
        yield Setup(sweep, settings, keys, client_keys, elsewhere)


async def nothing(request: web.Request) -> web.Response:
    return web.Response()


@dataclass
class Instance:
    runner: web.AppRunner
    listener: asyncio.Server
    url: str

    @property
    def app(self) -> web.Application:
        return self.runner.app

    async def close(self) -> None:
        self.listener.close()
        await self.runner.cleanup()


async def start(settings: Settings, store: Store | None) -> Instance:
    """An instance served as `relay serve` serves it: relay's own connection handler (which
    answers what the HTTP parser refuses) and its access log (not aiohttp's, which logs
    request lines as sent)."""
    app = create_app(settings, store=store, providers={"buggy": BuggyProvider()})
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    limits = settings.limits
    gate = ConnectionGate(limits.max_connections, limits.max_connections_per_ip)
    listener = await asyncio.get_running_loop().create_server(
        lambda: connection_handler(runner, settings, gate), "127.0.0.1", 0
    )
    port = listener.sockets[0].getsockname()[1]
    return Instance(runner, listener, f"http://127.0.0.1:{port}")


class Client:
    """Records every answer's headers and body in the sweep; sends `key` as a Bearer
    token (none when it is None)."""

    def __init__(self, sweep: Sweep, http: aiohttp.ClientSession, key: str | None) -> None:
        self.sweep = sweep
        self.http = http
        self.key = key

    def with_key(self, key: str | None) -> Client:
        return Client(self.sweep, self.http, key)

    async def call(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        sink: Sink = Sink.BODIES,
        **kwargs: Any,
    ) -> tuple[int, Any, str]:
        sent = {} if self.key is None else {"Authorization": f"Bearer {self.key}"}
        sent.update(headers or {})
        async with self.http.request(method, url, headers=sent, **kwargs) as response:
            body = await response.text()
        where = f"{method} {url}"
        headers_text = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
        self.sweep.see(Sink.HEADERS, where, headers_text)
        self.sweep.see(sink, where, body)
        session_id = response.headers.get("X-Relay-Session-Id")
        if session_id:
            self.sweep.session(session_id)
        return response.status, response.headers, body

    async def status(self, method: str, url: str, **kwargs: Any) -> int:
        return (await self.call(method, url, **kwargs))[0]

    async def raw(self, base: str, head: str) -> int:
        """Send `head` as it is on a connection of its own; the answer's status. The
        answer is recorded like any other."""
        url = URL(base)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            writer.write(head.encode("latin-1"))
            async with asyncio.timeout(10):
                answer = await reader.read()  # every head sent here asks to close
        finally:
            writer.close()
            await writer.wait_closed()
        answer_head, _, body = answer.decode("latin-1").partition("\r\n\r\n")
        status_line, _, headers = answer_head.partition("\r\n")
        self.sweep.see(Sink.HEADERS, f"raw {head[:30]!r}", headers)
        self.sweep.see(Sink.BODIES, f"raw {head[:30]!r}", body)
        return int(status_line.split()[1])

    async def create(self, base: str, model: str) -> dict[str, Any]:
        status, _, body = await self.call(
            "POST",
            f"{base}/v1/sessions",
            json={"model": model, "messages": MESSAGES},
            sink=Sink.CREATED,
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

QUICK = "mock:tokens=3,tps=0,ttft_ms=0"
SLOW = "mock:tokens=200,tps=20,ttft_ms=0"


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
    created = await client.create(base, QUICK)
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
    for base in (here.url, there.url):  # cancelled where it runs, then from elsewhere
        created = await client.create(here.url, SLOW)
        note_tasks(client.sweep)
        await client.call("DELETE", f"{base}/v1/sessions/{created['id']}")
        assert (await client.ended(here.url, created["id"]))["status"] == "cancelled"
    store = here.app[SERVICES].store
    owner = "" if client.key is None else "web"
    orphans = [await orphan(store, owner) for _ in range(2)]
    for session_id in orphans:
        client.sweep.session(session_id)
    await client.call("DELETE", f"{here.url}/v1/sessions/{orphans[0]}")  # nobody answers
    lost = await client.ended(here.url, orphans[1])  # its lease lapses; the reaper ends it
    assert lost["error"]["code"] == "generation_lost"
    buggy = await client.create(here.url, "buggy/m")
    assert (await client.ended(here.url, buggy["id"]))["error"]["code"] == "internal_error"


async def orphan(store: Store, client: str) -> str:
    """A running session of `client` whose generator is gone: no instance runs it."""
    now = time.time()
    session_id = new_session_id()
    token_sha256 = hash_token(new_token(READ_TOKEN_PREFIX))
    record = SessionRecord(
        id=session_id, model="mock", created_at=now, updated_at=now,
        token_sha256=token_sha256, owner="i_gone", client=client,
    )  # fmt: skip
    await store.create(record)
    return session_id


async def refused_tokens(client: Client, base: str) -> None:
    """Read tokens that are not the session's: another session's, forged, mistyped, for
    an unknown session; each is a 401, with a key or without."""
    first, second = await client.create(base, QUICK), await client.create(base, QUICK)
    forged = client.sweep.secret("a forged read token", new_token(READ_TOKEN_PREFIX))
    wrong = [
        (second["id"], first["token"]),
        (second["id"], forged),
        (second["id"], near_miss(second["token"])),
        (new_session_id(), first["token"]),
    ]
    for asking in (client, client.with_key(None)):
        for session_id, token in wrong:
            for path in ("", "/events", "/events?format=anthropic"):
                url = f"{base}/v1/sessions/{session_id}{path}"
                assert await asking.status("GET", url, params={"token": token}) == 401


async def malformed_requests(client: Client, base: str, key: str) -> None:
    """Requests the HTTP parser refuses, with a key in them (one that authenticates, so
    that a body is read): relay's connection handler answers them in its own words,
    quoting nothing sent."""
    start = "GET /v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    bearer = f"Authorization: Bearer {key}"
    post = start.replace("GET /v1/models", "POST /v1/sessions") + "Transfer-Encoding: chunked\r\n"
    heads = {
        f"{start}{bearer}\x01\r\n\r\n": 400,  # a control character in a value
        f"{start}{bearer}{'x' * 9000}\r\n\r\n": 431,  # a value over max_header_bytes
        f"{start}{key}\r\n\r\n": 400,  # a line that is no header
        f"{start}{key}: {key}\r\n{key}\x01: 1\r\n\r\n": 400,  # a bad header name
        f"GET /v1/models?{key} {key} HTTP/1.1\r\nHost: localhost\r\n\r\n": 400,
        f"{post}{bearer}\r\n\r\n{key}\r\n{key}\r\n0\r\n\r\n": 400,  # a chunk size that is not
    }
    for head, status in heads.items():
        assert await client.raw(base, head) == status, head


# Every route that needs a key: method, path ({sid}: a session's id, {rid}: its
# response's), body.
ROUTES = [
    ("POST", "/v1/sessions", {"model": "mock", "messages": MESSAGES}),
    ("GET", "/v1/sessions/{sid}", None),
    ("GET", "/v1/sessions/{sid}/events", None),
    ("GET", "/v1/sessions/{sid}/events?format=openai", None),
    ("DELETE", "/v1/sessions/{sid}", None),
    ("GET", "/v1/models", None),
    ("POST", "/v1/chat/completions", {"model": "mock", "messages": MESSAGES}),
    ("POST", "/v1/responses", {"model": "mock", "input": "hi"}),
    ("GET", "/v1/responses/{rid}", None),
    ("GET", "/v1/responses/{rid}?stream=true", None),
    ("POST", "/v1/responses/{rid}/cancel", None),
    ("POST", "/v1/messages", {"model": "mock", "messages": MESSAGES, "max_tokens": 10}),
]


def route(base: str, path: str, session_id: str) -> str:
    return base + path.format(sid=session_id, rid="resp_" + session_suffix(session_id))


async def refused_keys(client: Client, base: str, keys: ClientKeys) -> None:
    """Every route without a key, with a mistyped one, with the key in no scheme or in
    the query; `x-api-key`, which only /v1/messages reads."""
    session_id = (await client.create(base, QUICK))["id"]
    miss = near_miss(keys.web)
    refusals: list[dict[str, str]] = [
        {},
        {"Authorization": f"Bearer {miss}"},
        {"Authorization": keys.web},
        {"Authorization": f"Basic {keys.web}"},
    ]
    nobody = client.with_key(None)
    for method, path, body in ROUTES:
        url = route(base, path, session_id)
        for headers in refusals:
            assert await nobody.status(method, url, headers=headers, json=body) == 401
        for name in ("api_key", "key", "token"):  # a key where no key is read
            query = {name: keys.web}
            assert await nobody.status(method, url, params=query, json=body) == 401
        read = await nobody.status(method, url, headers={"x-api-key": keys.web}, json=body)
        assert (read == 200) == (path == "/v1/messages"), (method, path, read)
    messages = base + "/v1/messages"
    anthropic = {"x-api-key": miss}
    assert await nobody.status("POST", messages, headers=anthropic, json=ROUTES[-1][2]) == 401


async def another_clients_sessions(web: Client, mobile: Client, base: str) -> None:
    """mobile names web's session on every route (404, as an unknown id), shows web's read
    token with its own key (the token alone decides), and asks for models it may not
    use (403)."""
    created = await web.create(base, QUICK)
    for method, path, body in ROUTES:
        url = route(base, path, created["id"])
        status = await mobile.status(method, url, json=body)
        if "{" in path:
            assert status == 404, (method, path)
        elif body is not None:  # each asks for `mock`, which mobile may not use
            assert status == 403, (method, path)
    snapshot = f"{base}/v1/sessions/{created['id']}"
    assert await mobile.status("GET", snapshot, params={"token": created["token"]}) == 200
    for model in ("auth-openai/some-model", "buggy/m", "mock"):
        body = {"model": model, "messages": MESSAGES}
        assert await mobile.status("POST", f"{base}/v1/sessions", json=body) == 403
    # A read token opens reading only: the endpoints that take none want a key.
    for method, path, _ in ROUTES:
        if "{" in path and (method != "GET" or "responses" in path):
            url = route(base, path, created["id"])
            token = {"token": created["token"]}
            assert await web.with_key(None).status(method, url, params=token) == 401


async def request_ids_holding_secrets(client: Client, base: str, key: str) -> None:
    """An `X-Request-Id` that holds the request's key, its read token or a session id is
    neither logged nor echoed: relay makes its own."""
    created = await client.create(base, QUICK)
    session_id, token = created["id"], created["token"]
    cases = [
        (f"{base}/v1/models", {"Authorization": f"Bearer {key}"}, {}, key),
        (f"{base}/v1/messages", {"x-api-key": key}, {}, f"id-{key}"),
        (f"{base}/v1/sessions/{session_id}/events", {}, {"token": token}, token),
        (f"{base}/v1/sessions/{session_id}", {}, {}, f"trace:{session_id}"),
    ]
    nobody = client.with_key(None)
    for url, headers, params, request_id in cases:
        sent = {**headers, "X-Request-Id": request_id}
        _, answer, _ = await nobody.call("GET", url, headers=sent, params=params)
        assert answer["X-Request-Id"].startswith("req_"), (url, answer["X-Request-Id"])


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
    for client in settings.clients:
        lines += [
            "[[clients]]",
            f'name = "{client.name}"',
            f"api_key_env = {json.dumps(client.key_variables)}",
            f"api_key_sha256 = {json.dumps(client.key_digests)}",
        ]
    path.write_text("\n".join(lines) + "\n")
    assert main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert "api_key_env" in captured.out
    assert all(client.name in captured.out for client in settings.clients)
    sweep.see(Sink.CHECK_CONFIG, "relay check-config", captured.out + captured.err)


async def exercise(setup: Setup, here: Instance, there: Instance) -> None:
    keys = setup.client_keys
    async with aiohttp.ClientSession() as http:
        client = Client(setup.sweep, http, None if keys is None else keys.web)
        await every_upstream_failure(client, here.url, setup.upstream_keys)
        await relays_own_refusals(client, here.url)
        await cancels_leases_and_bugs(client, here, there)
        await refused_tokens(client, there.url)
        key = setup.sweep.secret("a key", client_key()) if keys is None else keys.web
        await malformed_requests(client, here.url, key)
        await request_ids_holding_secrets(client, here.url, key)
        if keys is not None:
            await refused_keys(client, here.url, keys)
            await another_clients_sessions(client, client.with_key(keys.mobile), there.url)


async def test_no_secret_reaches_any_sink(
    sweep_setup: Setup,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    setup = sweep_setup
    sweep, settings = setup.sweep, setup.settings
    # Two instances: on one memory store, or each with its own connections to Redis.
    shared = MemoryStore(settings.store) if settings.store.url == "memory://" else None
    here, there = await start(settings, shared), await start(settings, shared)
    try:
        await exercise(setup, here, there)
    finally:
        await there.close()
        await here.close()
    check_config_output(sweep, settings, tmp_path, capsys)
    for formatter in (TextFormatter(), JsonFormatter()):  # message, fields, traceback
        for record in caplog.records:
            sweep.see(Sink.LOGS, record.name, formatter.format(record))

    assert {name: codes for name, codes in sweep.error_codes.items()} == {
        name: {FAILURES[name.split("-")[0]]} for name in setup.upstream_keys
    }
    assert setup.elsewhere.requests == []  # no redirect was followed, with a key or without
    logged = "\n".join(text for sink, _, text in sweep.seen if sink is Sink.LOGS)
    for expected in ("lost its generator", "no generator answered", "provider stream raised"):
        assert expected in logged  # every path that logs a session was taken
    assert "refused a request from" in logged  # the malformed requests reached the handler
    assert "#" in logged and "/v1/sessions/#" in logged  # sessions are named by their tags
    assert " request_id=req_" in logged and " session=#" in logged  # lines carry the fields
    assert sweep.leaks() == []
