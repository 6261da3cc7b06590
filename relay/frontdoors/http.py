"""HTTP plumbing every front door shares: JSON bodies in, JSON and errors out.

Bodies must be JSON (`application/json`, with parameters, or any `+json` type: else
415), at most `max_body_bytes` (else 413), and decode into the handler's struct
(`relay.wire.decoding`); a decoding error names the field, the value's problem and what
is allowed (400 `invalid_request`, or `invalid_json` for what is not JSON). A body whose
chunked encoding or length breaks while it is read is a 400 too, never a 500. The
provider-format front doors answer errors in their format's shape (`with_openai_errors`,
`with_anthropic_errors`); the error middleware answers the rest in relay's.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from relay.config import LimitsSettings
from relay.errors import ApiError, StoreFull, StoreUnavailable, UnknownModel
from relay.off_loop import LARGE_BODY_BYTES, off_loop
from relay.services import SERVICES
from relay.vocabulary import GenerationRequest
from relay.wire import anthropic_messages, openai_chat
from relay.wire.decoding import InvalidBody, NotJson, decode

T = TypeVar("T")
R = TypeVar("R")

_encode = msgspec.json.Encoder().encode


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encode(body), status=status, content_type="application/json", headers=headers
    )


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response(error_body(code, message), status=status, headers=headers)


def is_json_content_type(content_type: str) -> bool:
    """`application/json` or `application/<anything>+json`; parameters were stripped."""
    kind, _, subtype = content_type.lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


class InvalidRequest(ApiError):
    """A request body relay refuses (400); `param` is the path of the field at fault."""

    def __init__(self, invalid: InvalidBody) -> None:
        super().__init__(400, invalid.code, str(invalid))
        self.param = invalid.path


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The body of a JSON request, at most `max_bytes` long."""
    if not is_json_content_type(request.content_type):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {request.content_type!r}",
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    timeout_s = _body_timeout_s(request)
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_limited(request, max_bytes)
    except TimeoutError as exc:  # a stalled body must not hold the handler
        message = f"the request body did not arrive within limits.body_timeout_s={timeout_s:g} s"
        raise ApiError(408, "request_timeout", message) from exc


def _body_timeout_s(request: web.Request) -> float:
    services = request.config_dict.get(SERVICES)
    limits = services.settings.limits if services is not None else LimitsSettings()
    return limits.body_timeout_s


async def _read_limited(request: web.Request, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
    except (HttpProcessingError, web.RequestPayloadError) as exc:  # their text quotes the body
        message = "malformed HTTP request: the body's chunked encoding or length is not valid"
        raise ApiError(400, "bad_request", message) from exc
    return b"".join(chunks)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the request body exceeds max_body_bytes={max_bytes}")


def decode_json(body: bytes, body_type: type[T]) -> T:
    if not body.strip():
        raise ApiError(400, "invalid_json", "the request body is empty; send a JSON object")
    try:
        return decode(body, body_type)
    except InvalidBody as exc:
        raise InvalidRequest(exc) from exc
    except NotJson as exc:
        raise ApiError(400, "invalid_json", str(exc)) from exc


Translate = Callable[[bytes, T], GenerationRequest]


async def decode_request(
    raw: bytes, body_type: type[T], translate: Translate[T]
) -> tuple[T, GenerationRequest]:
    """A body decoded (`decode_json`) and translated (`translated`); a large one in a
    worker thread, since that work grows with the body (`relay.off_loop`)."""

    def work() -> tuple[T, GenerationRequest]:
        body = decode_json(raw, body_type)
        return body, translated(translate, raw, body)

    return await off_loop(work, large=len(raw) >= LARGE_BODY_BYTES)


def translated(
    translate: Callable[[bytes, R], GenerationRequest], body: bytes, request: R
) -> GenerationRequest:
    """A wire format's translation of a decoded request; what relay cannot honour in it
    is a 400 naming the field."""
    try:
        return translate(body, request)
    except InvalidBody as exc:
        raise InvalidRequest(exc) from exc
    except NotJson as exc:
        raise ApiError(400, "invalid_json", str(exc)) from exc


# Errors in a provider's shape.


def client_error(exc: ApiError | UnknownModel | StoreFull | StoreUnavailable) -> ApiError:
    """What a client is answered for one of relay's errors: one translation, used by the
    error middleware (relay's shape) and by the provider-format front doors (theirs)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UnknownModel):
        return InvalidModel(exc)
    if isinstance(exc, StoreFull):
        return ApiError(503, "capacity", str(exc))
    return ApiError(503, "store_unavailable", "the event store is unreachable; retry")


class InvalidModel(ApiError):
    """No upstream serves the requested model (400); `param` is `model`."""

    param = "model"

    def __init__(self, unknown: UnknownModel) -> None:
        super().__init__(400, unknown.code, unknown.message)


ErrorShape = Callable[[int, str, str, str | None], dict[str, Any]]


def answering_errors(shape: ErrorShape) -> Callable[[Handler], Handler]:
    """A handler that answers relay's own errors in `shape(status, code, message, param)`."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except (ApiError, UnknownModel, StoreFull, StoreUnavailable) as exc:
                error = client_error(exc)
                param = error.param if isinstance(error, InvalidRequest | InvalidModel) else None
                body = shape(error.status, error.code, error.message, param)
                return json_response(body, error.status, error.headers)

        return handle

    return decorate


def openai_shape(status: int, code: str, message: str, param: str | None) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}}`, relay's code as `code`: what the
    OpenAI SDKs parse into `APIError.code`, `.param` and `.type`."""
    return openai_chat.error_body(message, openai_chat.error_type_for_status(status), code, param)


def anthropic_shape(status: int, code: str, message: str, param: str | None) -> dict[str, Any]:
    """`{"type": "error", "error": {"type", "message"}}`, as Anthropic answers."""
    return anthropic_messages.error_body(anthropic_messages.error_type_for_status(status), message)


with_openai_errors = answering_errors(openai_shape)
with_anthropic_errors = answering_errors(anthropic_shape)
