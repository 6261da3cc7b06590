"""Generated request bodies through the real app (memory store): bodies drawn from the typed
structs are accepted by every front door, and broken ones (a field deleted, replaced by
any JSON value or added, the bytes cut or garbled) are a 4xx in the door's own error
shape, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frontdoors.conftest import FAST_MOCK, Relay
from tests.wire.bodies import front_door_bodies, mutated

pytestmark = pytest.mark.parametrize("store_url", ["memory"], indirect=True)

BODIES = front_door_bodies(FAST_MOCK)
PATHS = {
    "native": "/v1/sessions",
    "chat": "/v1/chat/completions",
    "messages": "/v1/messages",
    "responses": "/v1/responses",
}
ACCEPTED = {"native": 201, "chat": 200, "messages": 200, "responses": 200}
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def post(relay: Relay, door: str, data: bytes) -> tuple[int, str, bytes]:
    headers = {"Content-Type": "application/json"}
    async with relay.http.post(relay.url(PATHS[door]), data=data, headers=headers) as response:
        return response.status, response.content_type, await response.read()


def error_message(door: str, payload: Any) -> str:
    """The error's message, once its shape is the door's."""
    if door == "messages":
        assert payload["type"] == "error" and set(payload["error"]) == {"type", "message"}
        return str(payload["error"]["message"])
    expected = {"code", "message"} if door == "native" else {"message", "type", "param", "code"}
    assert set(payload) == {"error"} and set(payload["error"]) == expected, payload
    return str(payload["error"]["message"])


@pytest.mark.parametrize("door", PATHS)
@PROPERTY
@given(data=st.data())
async def test_generated_bodies_are_accepted(
    relay_server: Relay, door: str, data: st.DataObject
) -> None:
    body = data.draw(BODIES[door])
    status, _, answer = await post(relay_server, door, json.dumps(body).encode())
    assert status == ACCEPTED[door], answer[:500]


@pytest.mark.parametrize("door", PATHS)
@PROPERTY
@given(data=st.data())
async def test_broken_bodies_are_refused_with_a_4xx_in_the_doors_shape(
    relay_server: Relay, door: str, data: st.DataObject
) -> None:
    status, content_type, answer = await post(relay_server, door, data.draw(mutated(BODIES[door])))
    assert status < 500, answer[:500]
    if status >= 400:
        assert content_type == "application/json" and b"Traceback" not in answer
        assert error_message(door, json.loads(answer))
