"""CORS over HTTP, on both stores: preflights answered for the origins some client lists,
real requests checked against their own client (or, for a read token, the session's
owner), errors readable by allowed pages, relay's own pages and requests without
`Origin` untouched, and an anonymous relay closed to other sites unless
`[server] cors_origins` lists them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frontdoors.conftest import FAST_MOCK, MESSAGES, Relay, StartRelay
from tests.frontdoors.test_clients import (
    ROUTES,
    WEB_KEY,
    Answer,
    bearer,
    call,
    create,
    response_id,
    sha256,
)

WEB_ORIGIN = "https://chat.example.com"
ADMIN_ORIGIN = "http://localhost:3000"
ELSEWHERE = "https://evil.example.net"
ADMIN_KEY = "rk_admin_Wq4Rt7Yu1Io3Pa6Sd9Fg"
CLIENTS = [
    {"name": "web", "api_key_sha256": sha256(WEB_KEY), "origins": [WEB_ORIGIN]},
    {"name": "admin", "api_key_sha256": sha256(ADMIN_KEY), "origins": [ADMIN_ORIGIN]},
]
SDK_HEADERS = [
    "authorization",
    "content-type",
    "last-event-id",
    "x-api-key",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "x-stainless-lang",
    "x-stainless-package-version",
    "x-stainless-os",
    "x-stainless-arch",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-retry-count",
    "x-stainless-timeout",
]
EXPOSED = ["X-Relay-Session-Id", "Location", "Retry-After", "X-Relay-Instance", "X-Request-Id"]


@pytest.fixture
async def relay(start_relay: StartRelay) -> Relay:
    return await start_relay(clients=CLIENTS)


def listed(header: str | None) -> list[str]:
    return [name.strip().lower() for name in (header or "").split(",") if name.strip()]


def assert_allowed(answer: Answer, origin: str) -> None:
    """The answer is readable by a page on `origin`, and by no other."""
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert "origin" in listed(answer.headers.get("Vary"))
    exposed = listed(answer.headers.get("Access-Control-Expose-Headers"))
    assert exposed == [name.lower() for name in EXPOSED]
    assert "Access-Control-Allow-Credentials" not in answer.headers


def assert_no_cors(answer: Answer) -> None:
    assert not [name for name in answer.headers if name.lower().startswith("access-control-")]
    assert "origin" in listed(answer.headers.get("Vary"))


def assert_origin_refused(answer: Answer, shape: str = "relay") -> None:
    assert answer.status == 403, answer.text
    body = answer.json()
    if shape == "relay":
        assert body["error"]["code"] == "origin_not_allowed"
    elif shape == "openai":
        assert (body["error"]["code"], body["error"]["type"]) == (
            "origin_not_allowed",
            "permission_error",
        )
    else:
        assert (body["type"], body["error"]["type"]) == ("error", "permission_error")
    assert "may not" in answer.text


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }


def own_origin(relay: Relay) -> str:
    return relay.url("/").rstrip("/")


# --- preflights ---------------------------------------------------------------------------


async def test_a_preflight_from_an_origin_a_client_lists_is_answered(relay: Relay) -> None:
    for origin in (WEB_ORIGIN, ADMIN_ORIGIN):
        answer = await call(relay, "OPTIONS", "/v1/sessions", preflight(origin))
        assert answer.status == 204, answer.text
        assert_allowed(answer, origin)
        assert answer.headers["Access-Control-Allow-Methods"] == "POST"
        assert set(SDK_HEADERS) <= set(listed(answer.headers["Access-Control-Allow-Headers"]))
        assert answer.headers["Access-Control-Max-Age"] == "7200"
        assert answer.text == ""


async def test_a_preflight_names_the_methods_of_its_route(relay: Relay) -> None:
    session_path = f"/v1/sessions/{(await create(relay, WEB_KEY))['id']}"
    answer = await call(relay, "OPTIONS", session_path, preflight(WEB_ORIGIN, "DELETE"))
    assert answer.status == 204
    assert listed(answer.headers["Access-Control-Allow-Methods"]) == ["delete", "get", "head"]
    events = await call(relay, "OPTIONS", session_path + "/events", preflight(WEB_ORIGIN, "GET"))
    # POST: an external producer's batches (relay/frontdoors/producer.py)
    assert listed(events.headers["Access-Control-Allow-Methods"]) == ["get", "head", "post"]


async def test_a_preflight_from_an_origin_no_client_lists_is_403_without_cors_headers(
    relay: Relay,
) -> None:
    answer = await call(relay, "OPTIONS", "/v1/chat/completions", preflight(ELSEWHERE))
    assert_origin_refused(answer)
    assert_no_cors(answer)
    assert ELSEWHERE in answer.json()["error"]["message"]


async def test_a_preflight_to_a_path_relay_does_not_have_is_its_404(relay: Relay) -> None:
    answer = await call(relay, "OPTIONS", "/v1/nothing", preflight(WEB_ORIGIN))
    assert answer.status == 404
    assert answer.json()["error"]["code"] == "not_found"


async def test_an_options_request_that_is_not_a_preflight_is_still_405(relay: Relay) -> None:
    answer = await call(relay, "OPTIONS", "/v1/sessions", {"Origin": WEB_ORIGIN})
    assert answer.status == 405
    assert answer.headers["Allow"] == "POST"


# --- real requests ------------------------------------------------------------------------


async def test_a_request_from_its_clients_origin_can_read_the_answer(relay: Relay) -> None:
    body = {"model": FAST_MOCK, "messages": MESSAGES}
    headers = {"Origin": WEB_ORIGIN, **bearer(WEB_KEY)}
    created = await call(relay, "POST", "/v1/sessions", headers, body)
    assert created.status == 201, created.text
    assert_allowed(created, WEB_ORIGIN)
    chat = await call(relay, "POST", "/v1/chat/completions", headers, body)
    assert chat.status == 200, chat.text
    assert_allowed(chat, WEB_ORIGIN)
    assert chat.headers["X-Relay-Session-Id"].startswith("s_")
    events = await call(relay, "GET", f"/v1/sessions/{created.json()['id']}/events", headers)
    assert events.status == 200 and "event: done" in events.text
    assert_allowed(events, WEB_ORIGIN)


@pytest.mark.parametrize(("method", "path", "body", "shape"), ROUTES)
async def test_a_request_from_another_clients_origin_is_403_in_its_front_doors_shape(
    relay: Relay, method: str, path: str, body: Any, shape: str
) -> None:
    session_id = (await create(relay, WEB_KEY))["id"]
    path = path.format(sid=session_id, rid=response_id(session_id))
    headers = {"Origin": ADMIN_ORIGIN, **bearer(WEB_KEY)}
    answer = await call(relay, method, path, headers, body)
    assert_origin_refused(answer, shape)
    # A page of another client may read why, as it may read any error.
    assert_allowed(answer, ADMIN_ORIGIN)
    assert "client 'web'" in answer.text


async def test_a_request_from_an_origin_no_client_lists_is_403_without_cors_headers(
    relay: Relay,
) -> None:
    body = {"model": FAST_MOCK, "max_tokens": 10, "messages": MESSAGES}
    headers = {"Origin": ELSEWHERE, "x-api-key": WEB_KEY}
    answer = await call(relay, "POST", "/v1/messages", headers, body)
    assert_origin_refused(answer, "anthropic")
    assert_no_cors(answer)


async def test_the_anthropic_sdks_browser_headers_pass(relay: Relay) -> None:
    body = {"model": FAST_MOCK, "max_tokens": 10, "messages": MESSAGES}
    headers = {
        "Origin": WEB_ORIGIN,
        "x-api-key": WEB_KEY,
        "anthropic-version": "2023-06-01",
        "anthropic-dangerous-direct-browser-access": "true",
        "X-Stainless-Retry-Count": "0",
    }
    answer = await call(relay, "POST", "/v1/messages", headers, body)
    assert answer.status == 200, answer.text
    assert_allowed(answer, WEB_ORIGIN)


# --- read tokens: the events endpoint and the snapshot, cross-origin -----------------------


async def test_a_read_token_opens_the_events_cross_origin_for_its_owners_origins(
    relay: Relay,
) -> None:
    created = await create(relay, WEB_KEY)
    params = f"?token={created['token']}"
    events = await call(relay, "GET", created["events_url"] + params, {"Origin": WEB_ORIGIN})
    assert events.status == 200, events.text
    assert "event: done" in events.text
    assert_allowed(events, WEB_ORIGIN)
    snapshot_path = f"/v1/sessions/{created['id']}{params}"
    snapshot = await call(relay, "GET", snapshot_path, {"Origin": WEB_ORIGIN})
    assert snapshot.status == 200 and snapshot.json()["status"] == "completed"
    assert_allowed(snapshot, WEB_ORIGIN)


async def test_a_leaked_read_token_is_refused_on_another_site(relay: Relay) -> None:
    created = await create(relay, WEB_KEY)
    path = created["events_url"] + f"?token={created['token']}"
    elsewhere = await call(relay, "GET", path, {"Origin": ELSEWHERE})
    assert_origin_refused(elsewhere)
    assert_no_cors(elsewhere)
    # On another client's site: refused, and the owner is not named.
    admin = await call(relay, "GET", path, {"Origin": ADMIN_ORIGIN})
    assert_origin_refused(admin)
    assert "web" not in admin.json()["error"]["message"]
    snapshot_path = f"/v1/sessions/{created['id']}?token={created['token']}"
    assert_origin_refused(await call(relay, "GET", snapshot_path, {"Origin": ELSEWHERE}))


async def test_a_wrong_token_from_an_allowed_origin_is_a_readable_401(relay: Relay) -> None:
    created = await create(relay, WEB_KEY)
    path = created["events_url"] + "?token=forged"
    answer = await call(relay, "GET", path, {"Origin": WEB_ORIGIN})
    assert answer.status == 401
    assert answer.json()["error"]["code"] == "invalid_token"
    assert_allowed(answer, WEB_ORIGIN)


# --- errors are readable by allowed pages ---------------------------------------------------


async def test_errors_to_an_allowed_origin_carry_the_cors_headers(relay: Relay) -> None:
    origin = {"Origin": WEB_ORIGIN}
    body = {"model": FAST_MOCK, "messages": MESSAGES}
    missing = await call(relay, "POST", "/v1/sessions", origin, body)
    invalid = await call(relay, "POST", "/v1/sessions", {**origin, **bearer("wrong-key")}, body)
    unknown = await call(relay, "GET", "/v1/sessions/s_nope", {**origin, **bearer(WEB_KEY)})
    no_route = await call(relay, "GET", "/v1/nothing", origin)
    bad = await call(relay, "POST", "/v1/sessions", {**origin, **bearer(WEB_KEY)}, {"model": 1})
    answers = [missing, invalid, unknown, no_route, bad]
    assert [answer.status for answer in answers] == [401, 401, 404, 404, 400]
    for answer in answers:
        assert_allowed(answer, WEB_ORIGIN)


# --- relay's own pages, and requests without Origin ----------------------------------------


async def test_relays_own_origin_is_not_cross_origin(relay: Relay) -> None:
    body = {"model": FAST_MOCK, "messages": MESSAGES}
    headers = {"Origin": own_origin(relay), **bearer(WEB_KEY)}
    created = await call(relay, "POST", "/v1/sessions", headers, body)
    assert created.status == 201, created.text
    assert "Access-Control-Allow-Origin" not in created.headers
    token_path = created.json()["events_url"] + f"?token={created.json()['token']}"
    events = await call(relay, "GET", token_path, {"Origin": own_origin(relay)})
    assert events.status == 200 and "event: done" in events.text


async def test_requests_without_origin_are_unaffected(relay: Relay) -> None:
    created = await create(relay, WEB_KEY)
    events = await call(relay, "GET", created["events_url"] + f"?token={created['token']}")
    assert events.status == 200 and "event: done" in events.text
    assert "Access-Control-Allow-Origin" not in events.headers


async def test_public_routes_answer_any_origin_but_only_listed_ones_may_read(
    relay: Relay,
) -> None:
    elsewhere = await call(relay, "GET", "/healthz", {"Origin": ELSEWHERE})
    assert elsewhere.status == 200
    assert_no_cors(elsewhere)
    allowed = await call(relay, "GET", "/openapi.json", {"Origin": WEB_ORIGIN})
    assert allowed.status == 200
    assert_allowed(allowed, WEB_ORIGIN)


# --- anonymous relays ---------------------------------------------------------------------


async def test_an_anonymous_relay_refuses_other_sites_by_default(start_relay: StartRelay) -> None:
    relay = await start_relay()
    body = {"model": FAST_MOCK, "messages": MESSAGES}
    refused = await call(relay, "POST", "/v1/sessions", {"Origin": ADMIN_ORIGIN}, body)
    assert_origin_refused(refused)
    assert "server] cors_origins" in refused.json()["error"]["message"]
    assert_no_cors(refused)
    assert_no_cors(await call(relay, "OPTIONS", "/v1/sessions", preflight(ADMIN_ORIGIN)))
    # The demo page, same-origin, works as before.
    own = await call(relay, "POST", "/v1/sessions", {"Origin": own_origin(relay)}, body)
    assert own.status == 201, own.text


async def test_an_anonymous_relay_serves_the_pages_cors_origins_lists(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(server={"cors_origins": [ADMIN_ORIGIN + "/"]})
    assert (await call(relay, "OPTIONS", "/v1/sessions", preflight(ADMIN_ORIGIN))).status == 204
    body = {"model": FAST_MOCK, "messages": MESSAGES}
    created = await call(relay, "POST", "/v1/sessions", {"Origin": ADMIN_ORIGIN}, body)
    assert created.status == 201, created.text
    assert_allowed(created, ADMIN_ORIGIN)
    path = created.json()["events_url"] + f"?token={created.json()['token']}"
    events = await call(relay, "GET", path, {"Origin": ADMIN_ORIGIN})
    assert events.status == 200 and "event: done" in events.text
    assert_allowed(events, ADMIN_ORIGIN)
    assert_origin_refused(await call(relay, "GET", path, {"Origin": ELSEWHERE}))
