"""Requests aiohttp's HTTP parser refuses, answered in relay's JSON error shape.

A malformed request line, a bad header, a broken chunked body or a header over the size
limit never reaches the app, its routes or its middleware: aiohttp's connection handler
(`web.RequestHandler.handle_error`) answers it, as `text/plain` quoting the offending
bytes back. `JsonErrorRequestHandler` answers `{"error": {"code", "message"}}` instead,
with a message that says what was wrong and never quotes what was sent. aiohttp has no
setting for this (aio-libs/aiohttp#3287), so `relay serve` creates its connections with
this handler (`relay.cli`); an app served another way keeps aiohttp's answer.

The message comes from the exception's class, from the few messages aiohttp writes
without request bytes in them, or from llhttp's (the C parser's) fixed reason; never
from the rest of aiohttp's text, which quotes the request.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

from relay.errors import ApiError
from relay.frontdoors.http import error_response
from relay.logs import REQUEST_ID_HEADER, begin_request

log = logging.getLogger(__name__)

HEADERS_TOO_LARGE = 431

# aiohttp's own messages that quote nothing sent (the same in its C and Python parsers).
_TOO_MANY_HEADERS = "Too many headers received"
_FIXED_MESSAGES = {
    "Received HTTPS traffic on an HTTP port": (
        "this port speaks plain HTTP, and this looks like HTTPS (TLS)"
    ),
    "Missing 'Host' header in request.": "the request has no Host header",
    "Transfer-Encoding can't be present with Content-Length": (
        "Transfer-Encoding and Content-Length cannot both be sent"
    ),
    "Request has invalid `Transfer-Encoding`": "the Transfer-Encoding is not valid",
    "Bad line ending, expected CRLF": "lines must end with CRLF",
}
# Only headers aiohttp allows once are named, so the name is one of its own.
_DUPLICATE_HEADER = re.compile(r"Duplicate '([A-Za-z-]{1,40})' header found\.")
# llhttp's reason, before the `:\n\n  b'<bytes>'\n  ^` that quotes the request.
_LLHTTP_REASON = re.compile(r"([A-Za-z][\w '`-]{0,80}):\n\n")


class JsonErrorRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, with relay's error shape for what it answers itself."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        request_id = begin_request(request)  # the parser's refusals have one too
        if isinstance(exc, HttpProcessingError):
            refusal = parse_refusal(exc, max_headers=self.max_headers)
            log.info("refused a request from %s: %s", request.remote, refusal.message)
        else:  # raised past the error middleware: aiohttp logs it with its traceback
            super().handle_error(request, status, exc, message)
            refusal = ApiError(status, "internal_error", "relay failed to handle this request")
        response = error_response(refusal.status, refusal.code, refusal.message)
        response.headers[REQUEST_ID_HEADER] = request_id
        response.force_close()  # the connection's framing cannot be trusted any more
        return response


def parse_refusal(exc: HttpProcessingError, *, max_headers: int) -> ApiError:
    """What to answer for a request the parser refused: status, code and a message that
    names the problem without quoting the request."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        size = f"{limit} bytes" if limit else "the size limit"
        return ApiError(
            HEADERS_TOO_LARGE,
            "headers_too_large",
            f"the request line or a header field is longer than {size}",
        )
    if exc.message == _TOO_MANY_HEADERS:
        return ApiError(
            HEADERS_TOO_LARGE,
            "headers_too_large",
            f"the request has more than {max_headers} header fields",
        )
    status = exc.code if 400 <= exc.code < 500 else 400
    return ApiError(status, "bad_request", f"malformed HTTP request: {_problem(exc)}")


def _problem(exc: HttpProcessingError) -> str:
    """What was wrong, as the end of a sentence."""
    if exc.message in _FIXED_MESSAGES:
        return _FIXED_MESSAGES[exc.message]
    if duplicate := _DUPLICATE_HEADER.fullmatch(exc.message):
        return f"the {duplicate.group(1)} header may appear only once"
    reason = _llhttp_reason(exc.message)
    if isinstance(exc, BadHttpMethod):  # before BadStatusLine, its base class
        return "the request line does not start with a valid method"
    if isinstance(exc, BadStatusLine):
        detail = f" ({reason})" if reason else ""
        return f"the request line is not `METHOD /path HTTP/1.1`{detail}"
    if isinstance(exc, InvalidURLError):
        return "the request target is not a valid URL"
    return reason or _problem_of_class(exc)


def _problem_of_class(exc: HttpProcessingError) -> str:
    if isinstance(exc, TransferEncodingError):
        return "the chunked body is not valid"
    if isinstance(exc, ContentLengthError):
        return "the body is shorter than its Content-Length"
    if isinstance(exc, InvalidHeader):
        return "a header field is not valid"
    return "not valid HTTP/1.1"


def _llhttp_reason(message: str) -> str:
    """The C parser's fixed description of the fault (`Invalid character in chunk size`),
    as the end of a sentence; empty when the message is not in that parser's layout."""
    found = _LLHTTP_REASON.search(message)
    if not found:
        return ""
    reason = found.group(1)
    first_word = reason.split(" ", 1)[0]
    return reason if "-" in first_word else reason[0].lower() + reason[1:]
