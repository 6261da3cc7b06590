"""schemathesis generates requests from the document a live `relay serve` serves at
`/openapi.json` (on the memory store, and on a real redis-server), sends them to every
operation, valid and invalid, and checks each answer: never a 5xx, and status, content
type, headers and body as the document says. The document is thereby proven against
relay, and relay against hostile input.

Twice: against a relay without clients (anonymous), and against one with two
`[[clients]]`, where schemathesis sends the fuzzer client's key (`Authorization: Bearer`,
and `x-api-key` where the document names it) and every request is sent again without a
key, with a key no client has and with the other client's: the 401s, the 403s of a
model the fuzzer may not use and the 404s of another client's sessions are checked
against the document too, and no operation that needs a key answers 2xx without one.

Generated models are replaced by a quick mock model (the document allows any model
name; most would be unknown, and a slow one would keep a `stream: false` request
waiting), so every session ends at once; with clients, some by `mock`, which the
fuzzer client may not use.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from relay.openapi import spec
from tests.redis_server import free_port
from tests.relay_process import relay_process

QUICK_MODEL = "mock:tokens=5,tps=0,ttft_ms=0"
MAX_EXAMPLES = 50
KEYED_EXAMPLES = 15  # each is sent four times
REQUEST_TIMEOUT_S = 10.0
UI_CHAT_STREAM = spec.UI_CHAT_PREFIX + "/{chat_id}/stream"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
GENERATION = {
    # Valid and invalid requests. The coverage phase (boundary values of every
    # field, deterministic) would take a minute per store; generated examples do.
    "generation": {"mode": "all", "database": "none"},
    "phases": {"coverage": {"enabled": False}},
}

FUZZER_KEY = "rk_fuzzer_Qm4Xt8Lw2Zr6Vb1N"
OTHER_KEY = "rk_other_Hs7Pd3Ke9Yc5Jf2G"


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


CLIENTS = f"""
[[clients]]
name = "fuzzer"
api_key_sha256 = "{sha256(FUZZER_KEY)}"
models = ["mock:*"]

[[clients]]
name = "other"
api_key_sha256 = "{sha256(OTHER_KEY)}"
models = ["mock:*"]
"""
# The requests sent again without the fuzzer's key: none, one no client has, another
# client's (whose answers about the fuzzer's sessions are those for unknown ids). Neither
# client may use `mock`, which would take over a second to answer `stream: false`.
OTHER_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer rk_no_client_has_this"},
    {"Authorization": f"Bearer {OTHER_KEY}"},
]
CREDENTIALS = {"authorization", "x-api-key"}  # the headers that carry a key


# The document relay serves; `live_relay` proves it is the one at /openapi.json.
# (schemathesis' lazy `from_fixture` loader, which would fetch it from the live relay,
# does not run on pytest 9: it sets `Function._nodeid`, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_dict(
    spec.build(), config=schemathesis.Config.from_dict(GENERATION)
)
keyed_schema = schemathesis.openapi.from_dict(
    spec.build(),
    config=schemathesis.Config.from_dict(
        GENERATION
        | {
            "auth": {
                "openapi": {
                    "clientKey": {"bearer": FUZZER_KEY},
                    "anthropicKey": {"api_key": FUZZER_KEY},
                }
            }
        }
    ),
)


async def serve(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, more_config: str
) -> AsyncIterator[str]:
    """The base URL of a `relay serve` process on the parametrised store, which serves
    the very document the tests are generated from."""
    store_url = "memory://"
    if request.param == "redis":
        store_url = request.getfixturevalue("redis_server").url
    tmp_path = tmp_path_factory.mktemp(f"fuzzed-{request.param}")
    config = tmp_path / "relay.toml"
    config.write_text(f'[server]\ndrain_timeout_s = 0\n[store]\nurl = "{store_url}"\n{more_config}')
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with relay_process(config, port, tmp_path / "relay.log"):
        async with aiohttp.ClientSession() as http, http.get(base + "/openapi.json") as served:
            assert await served.json() == spec.build()  # schemathesis edits its copy
        yield base


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["memory", "redis"])
async def live_relay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """Without clients: anyone may call."""
    async for base in serve(request, tmp_path_factory, ""):
        yield base


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["memory", "redis"])
async def keyed_relay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """With the two `CLIENTS`: a key is needed."""
    async for base in serve(request, tmp_path_factory, CLIENTS):
        yield base


def with_quick_model(case: schemathesis.Case) -> None:
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = QUICK_MODEL
    with_quick_producer(case)


def with_quick_producer(case: schemathesis.Case) -> None:
    """An external session the fuzzer creates has no producer: let it end (`producer_lost`)
    within a second or two, so that following its events or signals along the links ends
    too, instead of waiting out the default idle timeout."""
    if isinstance(case.body, dict) and case.body.get("producer") == "external":
        case.body["producer_idle_timeout_s"] = 1


def with_quick_or_refused_model(case: schemathesis.Case) -> None:
    """A quick model the fuzzer client may use, or (one case in three) `mock`, which it
    may not: a 403 `model_not_allowed`."""
    if isinstance(case.body, dict) and isinstance(model := case.body.get("model"), str):
        case.body["model"] = "mock" if len(model) % 3 == 0 else QUICK_MODEL
    with_quick_producer(case)


def with_credentials(case: schemathesis.Case, credentials: dict[str, str]) -> None:
    """The case with `credentials` instead of whatever key it carried."""
    headers = case.headers or {}
    kept = {name: value for name, value in headers.items() if name.lower() not in CREDENTIALS}
    case.headers = kept | credentials


def needs_a_key(case: schemathesis.Case) -> bool:
    """Whether the operation is one the document says needs a key (or a read token) when
    clients are configured: every one but the open probes and pages."""
    security = case.operation.definition.raw.get("security")  # None: the document's
    return security != []


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_relay_answers_as_its_openapi_document_says(
    live_relay: str, case: schemathesis.Case
) -> None:
    with_quick_model(case)
    case.call_and_validate(base_url=live_relay, checks=CHECKS, timeout=REQUEST_TIMEOUT_S)


@keyed_schema.parametrize()
@settings(max_examples=KEYED_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_relay_with_clients_answers_as_its_openapi_document_says(
    keyed_relay: str, case: schemathesis.Case
) -> None:
    with_quick_or_refused_model(case)
    case.call_and_validate(base_url=keyed_relay, checks=CHECKS, timeout=REQUEST_TIMEOUT_S)
    for credentials in OTHER_CREDENTIALS:
        with_credentials(case, credentials)
        response = case.call_and_validate(
            base_url=keyed_relay, checks=CHECKS, timeout=REQUEST_TIMEOUT_S
        )
        if needs_a_key(case) and credentials.get("Authorization") != f"Bearer {OTHER_KEY}":
            assert not 200 <= response.status_code < 300, (credentials, response.text)


STATEFUL = settings(
    max_examples=20,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
KEYED_STATEFUL = settings(STATEFUL, max_examples=8)


def lifecycles(
    fuzzed: schemathesis.BaseSchema,
    base: str,
    before_call: Callable[[schemathesis.Case], None],
    after_call: Callable[[schemathesis.Case], None] = lambda case: None,
) -> Any:
    """The state machine of calls along the document's links, against `base`."""

    class Lifecycles(fuzzed.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: schemathesis.Case) -> None:
            before_call(case)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"base_url": base, "timeout": REQUEST_TIMEOUT_S}

        def validate_response(  # type: ignore[override]
            self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: object
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)
            after_call(case)

    return Lifecycles


def test_sessions_followed_through_the_links_answer_as_documented(live_relay: str) -> None:
    """Sequences of calls along the document's links: a created session (or response) is
    then snapshotted, followed, cancelled, retrieved, which random ids never reach."""
    lifecycles(schema, live_relay, with_quick_model).run(settings=STATEFUL)


def test_with_clients_a_session_is_its_clients_along_the_links(keyed_relay: str) -> None:
    """The same sequences with the fuzzer's key; every call that names one of its
    sessions is sent again with the other client's key, and must be the 404 (as
    documented) that an unknown id gets (the 204 of an unknown chat, for a chat's
    stream)."""

    def as_the_other_client(case: schemathesis.Case) -> None:
        if not case.path_parameters:
            return
        with_credentials(case, {"Authorization": f"Bearer {OTHER_KEY}"})
        case.query = {k: v for k, v in (case.query or {}).items() if k != "token"}
        response = case.call_and_validate(
            base_url=keyed_relay, checks=CHECKS, timeout=REQUEST_TIMEOUT_S
        )
        # A chat of another client's is nothing the caller streams: 204, as an unknown one.
        unknown = (204, 400) if case.path == UI_CHAT_STREAM else (400, 404)
        assert response.status_code in unknown, response.text

    lifecycles(keyed_schema, keyed_relay, with_quick_or_refused_model, as_the_other_client).run(
        settings=KEYED_STATEFUL
    )
