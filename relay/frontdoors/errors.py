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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
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
