"""`[server] allowed_hosts` over HTTP: a request whose Host relay does not serve (what a
DNS-rebinding page sends) gets 421 `host_not_allowed` on every route, `/healthz` too;
and the Host rules themselves (pure)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from relay.config import ServerSettings
from relay.frontdoors.hosts import AllowedHosts, exposure, host_of
from tests.frontdoors.conftest import FAST_MOCK, MESSAGES, Relay, StartRelay

MEMORY_ONLY = pytest.mark.parametrize("store_url", ["memory"], indirect=True)
ROUTES = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/"),
    ("GET", "/v1/models"),
    ("POST", "/v1/sessions"),
    ("GET", "/v1/sessions/s_AAAAAAAAAAAAAAAAAAAAAA/events"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/responses"),
    ("GET", "/no/such/route"),
]


async def answer(relay: Relay, method: str, path: str, host: str) -> tuple[int, dict[str, str]]:
    body = {"model": FAST_MOCK, "messages": MESSAGES, "input": "hi"}
    async with relay.http.request(
        method, relay.url(path), headers={"Host": host}, json=body if method == "POST" else None
    ) as response:
        error = (await response.json()).get("error", {}) if response.status == 421 else {}
        return response.status, error


async def test_the_test_servers_own_host_is_served(relay_server: Relay) -> None:
    created = await relay_server.create()  # Host: 127.0.0.1:PORT, as the client sends it
    assert (await relay_server.wait_until_ended(created["id"]))["status"] == "completed"


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_another_host_gets_421_on_every_route(
    relay_server: Relay, method: str, path: str
) -> None:
    status, error = await answer(relay_server, method, path, "evil.example")
    assert status == 421
    assert error["code"] == "host_not_allowed"
    assert "'evil.example'" in error["message"] and "server.allowed_hosts" in error["message"]


@MEMORY_ONLY
@pytest.mark.parametrize(
    "host", ["localhost", "localhost:1234", "LOCALHOST.", "127.0.0.1", "[::1]:8080", "[::1]"]
)
async def test_the_loopback_names_are_served_with_any_port(relay_server: Relay, host: str) -> None:
    assert (await answer(relay_server, "GET", "/healthz", host))[0] == 200


@MEMORY_ONLY
@pytest.mark.parametrize(
    "host", ["127.0.0.1.evil.example", "localhost.evil.example", "evil.example:8080", "[::2]", ""]
)
async def test_names_like_the_loopback_names_are_not(relay_server: Relay, host: str) -> None:
    assert (await answer(relay_server, "GET", "/healthz", host))[0] == 421


@MEMORY_ONLY
async def test_configured_names_and_subdomains_replace_the_defaults(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(server={"allowed_hosts": ["relay.example.com", "*.corp.example"]})
    served = ["relay.example.com:443", "Relay.Example.Com", "a.corp.example", "b.a.corp.example"]
    refused = ["corp.example", "xcorp.example", "127.0.0.1", "localhost", "example.com"]
    for host in served + refused:
        status, _ = await answer(relay, "GET", "/healthz", host)
        assert status == (200 if host in served else 421), host


@MEMORY_ONLY
async def test_a_star_serves_any_host(start_relay: StartRelay) -> None:
    relay = await start_relay(server={"allowed_hosts": ["*"]})
    assert (await answer(relay, "GET", "/healthz", "evil.example"))[0] == 200


@MEMORY_ONLY
async def test_a_request_without_a_host_header_is_not_a_browsers_and_is_served(
    relay_server: Relay,
) -> None:
    server = relay_server.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert status_line.split()[1] == b"200"


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("relay.example.com:8080", "relay.example.com"),
        ("Relay.Example.COM.", "relay.example.com"),
        ("[::1]:8080", "[::1]"),
        ("[::1", ""),
        ("  localhost  ", "localhost"),
    ],
)
def test_the_host_of_a_header(header: str, host: str) -> None:
    assert host_of(header) == host


def test_allowed_hosts_match_names_subdomains_and_star() -> None:
    allowed = AllowedHosts(["a.example", "*.b.example", "[::1]", "10.0.0.5"])
    assert [allowed.allows(h) for h in ["a.example:1", "x.b.example", "[::1]:2", "10.0.0.5"]] == [
        True
    ] * 4
    assert not any(allowed.allows(h) for h in ["x.a.example", "b.example", "10.0.0.50", "[::2]"])
    assert AllowedHosts(["*"]).allows("anything:1")


def test_startup_says_when_relay_is_reachable_from_elsewhere_by_any_name() -> None:
    assert exposure(ServerSettings()) == (
        logging.INFO,
        "listening on loopback only; Host headers answered: localhost, 127.0.0.1, [::1]",
    )
    level, line = exposure(ServerSettings(host="0.0.0.0"))
    assert level == logging.WARNING
    assert "0.0.0.0, reachable from other machines" in line and "allowed_hosts" in line
    level, line = exposure(ServerSettings(host="", allowed_hosts=["relay.example.com"]))
    assert level == logging.INFO
    assert line.endswith(
        "every interface, reachable from other machines; Host headers answered: relay.example.com"
    )
