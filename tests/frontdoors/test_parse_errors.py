"""What relay answers for each kind of request aiohttp's parsers refuse (no server).

The messages are built as aiohttp's C parser (llhttp layout: reason, then the quoted bytes)
and its Python parser build them; each quotes MARK, which the answer must never repeat.
The same refusals over a real socket: tests/test_serve_process.py.
"""

from __future__ import annotations

import asyncio
import json
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.test_utils import make_mocked_request

from relay.frontdoors.parse_errors import JsonErrorRequestHandler, parse_refusal

MARK = "Q7MARKQ7"


def llhttp(reason: str) -> str:
    """A message in the C parser's layout, quoting the request after the reason."""
    return f"{reason}:\n\n  b'{MARK}'\n     ^"


REFUSALS = [
    (BadHttpMethod(error=llhttp("Invalid method encountered")), 400,
     "malformed HTTP request: the request line does not start with a valid method"),
    (BadHttpMethod(f"G@T{MARK} / HTTP/1.1"), 400,
     "malformed HTTP request: the request line does not start with a valid method"),
    (BadHttpMethod("\x16\x03\x01" + MARK), 400,
     "malformed HTTP request: this port speaks plain HTTP, and this looks like HTTPS (TLS)"),
    (BadStatusLine(error="Bad status line:\n  " + llhttp("Invalid minor version")), 400,
     "malformed HTTP request: the request line is not `METHOD /path HTTP/1.1` "
     "(invalid minor version)"),
    (BadStatusLine(f"GET /{MARK} HTTP/9.x"), 400,
     "malformed HTTP request: the request line is not `METHOD /path HTTP/1.1`"),
    (InvalidURLError(f"http://[{MARK}"), 400,
     "malformed HTTP request: the request target is not a valid URL"),
    (BadHttpMessage(llhttp("Invalid header token")), 400,
     "malformed HTTP request: invalid header token"),
    (InvalidHeader(f"Bad {MARK}".encode()), 400,
     "malformed HTTP request: a header field is not valid"),
    (BadHttpMessage(llhttp("Invalid character in chunk size")), 400,
     "malformed HTTP request: invalid character in chunk size"),
    (TransferEncodingError(MARK), 400,
     "malformed HTTP request: the chunked body is not valid"),
    (BadHttpMessage(llhttp("Transfer-Encoding can't be present with Content-Length")), 400,
     "malformed HTTP request: Transfer-Encoding can't be present with Content-Length"),
    (BadHttpMessage("Transfer-Encoding can't be present with Content-Length"), 400,
     "malformed HTTP request: Transfer-Encoding and Content-Length cannot both be sent"),
    (BadHttpMessage("Missing 'Host' header in request."), 400,
     "malformed HTTP request: the request has no Host header"),
    (BadHttpMessage("Duplicate 'Content-Length' header found."), 400,
     "malformed HTTP request: the Content-Length header may appear only once"),
    (BadHttpMessage(f"Something new: {MARK}"), 400,
     "malformed HTTP request: not valid HTTP/1.1"),
    (LineTooLong(f"{MARK}...".encode(), 8190), 431,
     "the request line or a header field is longer than 8190 bytes"),
    (LineTooLong(f"{MARK}...".encode()), 431,
     "the request line or a header field is longer than the size limit"),
    (BadHttpMessage("Too many headers received"), 431,
     "the request has more than 128 header fields"),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "status", "message"), REFUSALS, ids=lambda v: repr(v)[:60])
def test_a_refusal_names_the_fault_without_quoting_the_request(
    exc: HttpProcessingError, status: int, message: str
) -> None:
    refusal = parse_refusal(exc, max_headers=128)
    assert (refusal.status, refusal.message) == (status, message)
    assert refusal.code == ("headers_too_large" if status == 431 else "bad_request")
    assert MARK not in refusal.message


async def test_an_error_raised_past_the_middleware_is_relays_json_500() -> None:
    """What aiohttp answers itself when a handler's exception escapes every middleware."""

    async def never_called(request: web.BaseRequest) -> web.StreamResponse:
        raise AssertionError("not called")

    server = web.Server(never_called)
    handler = JsonErrorRequestHandler(server, loop=asyncio.get_running_loop())
    request = make_mocked_request("GET", "/", writer=mock.Mock(output_size=0))
    response = handler.handle_error(request, 500, RuntimeError(f"boom {MARK}"))
    assert isinstance(response, web.Response) and response.body is not None
    assert (response.status, response.content_type) == (500, "application/json")
    assert json.loads(bytes(response.body)) == {
        "error": {"code": "internal_error", "message": "relay failed to handle this request"}
    }
