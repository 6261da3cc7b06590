"""schemathesis generates requests from the document a live `relay serve` serves at
`/openapi.json` (on the memory store, and on a real redis-server), sends them to every
operation, valid and invalid, and checks each answer: never a 5xx, and status, content
type, headers and body as the document says. The document is thereby proven against
relay, and relay against hostile input.

Generated models are replaced by a quick mock model (the document allows any model
name; most would be unknown, and a slow one would keep a `stream: false` request
waiting), so every session ends at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

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
REQUEST_TIMEOUT_S = 10.0
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CONFIG = schemathesis.Config.from_dict(
    {
        # Valid and invalid requests. The coverage phase (boundary values of every
        # field, deterministic) would take a minute per store; generated examples do.
        "generation": {"mode": "all", "database": "none"},
        "phases": {"coverage": {"enabled": False}},
    }
)


# The document relay serves; `live_relay` proves it is the one at /openapi.json.
# (schemathesis' lazy `from_fixture` loader, which would fetch it from the live relay,
# does not run on pytest 9: it sets `Function._nodeid`, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_dict(spec.build(), config=CONFIG)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["memory", "redis"])
async def live_relay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The base URL of a `relay serve` process on the parametrised store, which serves
    the very document the tests are generated from."""
    store_url = "memory://"
    if request.param == "redis":
        store_url = request.getfixturevalue("redis_server").url
    tmp_path = tmp_path_factory.mktemp(f"fuzzed-{request.param}")
    config = tmp_path / "relay.toml"
    config.write_text(f'[server]\ndrain_timeout_s = 0\n[store]\nurl = "{store_url}"\n')
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with relay_process(config, port, tmp_path / "relay.log"):
        async with aiohttp.ClientSession() as http, http.get(base + "/openapi.json") as served:
            assert await served.json() == spec.build()  # schemathesis edits its copy
        yield base


def with_quick_model(case: schemathesis.Case) -> None:
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = QUICK_MODEL


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_relay_answers_as_its_openapi_document_says(
    live_relay: str, case: schemathesis.Case
) -> None:
    with_quick_model(case)
    case.call_and_validate(base_url=live_relay, checks=CHECKS, timeout=REQUEST_TIMEOUT_S)


STATEFUL = settings(
    max_examples=20,
    stateful_step_count=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_sessions_followed_through_the_links_answer_as_documented(live_relay: str) -> None:
    """Sequences of calls along the document's links: a created session (or response) is
    then snapshotted, followed, cancelled, retrieved, which random ids never reach."""

    class Lifecycles(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: schemathesis.Case) -> None:
            with_quick_model(case)

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"base_url": live_relay, "timeout": REQUEST_TIMEOUT_S}

        def validate_response(  # type: ignore[override]
            self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: object
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Lifecycles.run(settings=STATEFUL)
