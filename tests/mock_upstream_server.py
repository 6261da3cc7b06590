"""The standalone mock upstream (`relay.mock_upstream`) as a test server, and its counters."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from relay.mock_upstream import create_mock_upstream_app


def mock_upstream_server() -> TestServer:
    """Not yet started. Handlers are cancelled when their client leaves, as under `serve`."""
    return TestServer(create_mock_upstream_app(), host="127.0.0.1", handler_cancellation=True)


async def mock_stats(server: TestServer) -> dict[str, Any]:
    """What the mock upstream counted: requests, completed, client_disconnects, active, …"""
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.make_url("/_mock/stats")) as response,
    ):
        stats: dict[str, Any] = await response.json()
        return stats
