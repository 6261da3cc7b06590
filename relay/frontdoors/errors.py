"""The error middleware: every failure leaves as `{"error": {"code", "message"}}`.

aiohttp's own HTTP errors (unknown route, wrong method, body too large) are mapped
to the same shape; anything unexpected is logged here with its traceback and
answered as a plain 500, so no stack trace ever reaches a client.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from relay.errors import ApiError, StoreFull, StoreUnavailable, UnknownModel
from relay.frontdoors.http import error_response

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except UnknownModel as exc:
        return error_response(400, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except StoreFull as exc:
        return error_response(503, "capacity", str(exc))
    except StoreUnavailable:
        return error_response(503, "store_unavailable", "the event store is unreachable; retry")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
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
