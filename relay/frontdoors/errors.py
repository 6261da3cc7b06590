"""The error middleware: every failure leaves as `{"error": {"code", "message"}}`.

aiohttp's own HTTP errors (unknown route, wrong method, body too large) are mapped
to the same shape; anything unexpected is logged here with its traceback and
answered as a plain 500, so no stack trace ever reaches a client.

A started response is a different world: once its status line has gone out, no other
can be written (it would land inside the body, where a client reads it as a broken
chunk). Streams end themselves with an in-band error (`relay.subscribers.sse`); an
exception that still comes here after that goes on to aiohttp, which logs it with its
traceback and, seeing output already sent, closes the connection: the client sees the
stream cut, never a second response.

A client that went away is not an error either: a `ConnectionError` with the
connection closed (aiohttp's "Connection lost", a reset, a broken pipe, met while
reading the body or writing the answer) is answered with a 499 that nobody reads, and a
debug line. Raised on to aiohttp, it would be logged with its traceback and, before any
output, answered as a 500 in the access log. A `ConnectionError` while the connection
is still open is relay's own failure, handled as any other.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from relay.errors import ApiError, StoreFull, StoreUnavailable, UnknownModel
from relay.frontdoors.http import client_error, error_response
from relay.logs import redact_secrets

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class ResponseStarted(Exception):
    """An exception raised after its response started, as it goes on to aiohttp (its
    cause): never an HTTP exception, which aiohttp would write as a second response."""


# nginx's status for a request whose client closed the connection before the answer.
CLIENT_CLOSED_REQUEST = 499


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        if isinstance(exc, ConnectionError) and client_left(request):
            log.debug("%s %s: the client went away", request.method, redact_secrets(request.path))
            return web.Response(status=CLIENT_CLOSED_REQUEST)
        if response_started(request):
            path = redact_secrets(request.path)
            log.error("%s %s failed after its response started", request.method, path)
            raise ResponseStarted(f"{request.method} {path}") from exc
        if isinstance(exc, web.HTTPException) and exc.status < 400:
            raise
        return error_answer(request, exc)


def response_started(request: web.Request) -> bool:
    """Whether bytes of a response went out: the test aiohttp's own error handler makes."""
    return request.writer.output_size > 0


def client_left(request: web.Request) -> bool:
    """Whether the request's connection is closed or closing (the client left, or relay
    dropped it)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def error_answer(request: web.Request, exc: Exception) -> web.Response:
    """The JSON error answer to `exc`, raised before any response started."""
    if isinstance(exc, ApiError | UnknownModel | StoreFull | StoreUnavailable):
        error = client_error(exc)
        return error_response(error.status, error.code, error.message, error.headers)
    if isinstance(exc, web.HTTPException):
        return _http_error(request, exc)
    path = redact_secrets(request.path)
    log.error("unhandled error in %s %s", request.method, path, exc_info=exc)
    return error_response(500, "internal_error", "relay failed to handle this request")


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = HTTP_CODES.get(exc.status, "http_error")
    if exc.status == 404:
        message = f"no route for {request.path}"
    elif exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        message = f"method {request.method} is not allowed for {request.path}; allowed: {allowed}"
    else:
        message = exc.text or exc.reason
    response = error_response(exc.status, code, message)
    if exc.status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response
