"""schemathesis reads `/openapi.json` from a live `relay serve` (on the memory store, and
on a real redis-server), sends what it generates from it to every operation, valid and
invalid, and checks each answer: never a 5xx, and status, content type, headers and
body as the document says. The document is thereby proven against relay, and relay
against hostile input.

Generated models are replaced by a quick mock model (the document allows any model
name; most would be unknown, and a slow one would keep a `stream: false` request
waiting), so every session ends at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.redis_server import free_port
from tests.relay_process import relay_process

QUICK_MODEL = "mock:tokens=5,tps=0,ttft_ms=0"
MAX_EXAMPLES = 25
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
        # Valid and invalid requests; no stateful phase (links are followed below).
        "generation": {"mode": "all", "database": "none"},
        "phases": {"stateful": {"enabled": False}},
    }
)


@pytest.fixture(params=["memory", "redis"])
async def live_relay(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """The base URL of a `relay serve` process on the parametrised store."""
    store_url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    config = tmp_path / "relay.toml"
    config.write_text(f'[server]\ndrain_timeout_s = 0\n[store]\nurl = "{store_url}"\n')
    port = free_port()
    async with relay_process(config, port, tmp_path / "relay.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def api_schema(live_relay: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(live_relay + "/openapi.json", config=CONFIG)


schema = schemathesis.pytest.from_fixture("api_schema")


def with_quick_model(case: schemathesis.Case) -> None:
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = QUICK_MODEL


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_relay_answers_as_its_openapi_document_says(case: schemathesis.Case) -> None:
    with_quick_model(case)
    case.call_and_validate(checks=CHECKS, timeout=REQUEST_TIMEOUT_S)
