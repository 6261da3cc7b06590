"""The error middleware's last line of defence: it never writes a second response.

Streams end themselves in band once their headers are sent (see
test_started_response.py); should an exception still reach the middleware after a
response started, the connection is cut, and the failure logged with one traceback.
"""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.frontdoors.errors import error_middleware


class HandlerBug(Exception):
    pass


async def test_an_exception_after_a_response_started_cuts_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def half_written(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"half of it")
        raise HandlerBug("after the headers")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/half", half_written)
    received = b""
    async with (
        TestServer(app, host="127.0.0.1") as server,
        aiohttp.ClientSession() as http,
        http.get(server.make_url("/half")) as response,
    ):
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in response.content.iter_any():
                received += chunk
    # What got through before the cut is the handler's, never a second status line.
    assert received == b"half of it"
    logged = [
        (r.name, r.exc_info is not None) for r in caplog.records if r.levelno >= logging.ERROR
    ]
    assert ("relay.frontdoors.errors", False) in logged  # relay says which request failed
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # aiohttp logs it, with the cause's traceback
    cause = tracebacks[0].exc_info[1].__cause__ if tracebacks[0].exc_info else None
    assert isinstance(cause, HandlerBug)
