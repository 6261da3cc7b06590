"""HTTP plumbing every front door shares: JSON bodies in, JSON and errors out.

Bodies must be JSON (`application/json`, with parameters, or any `+json` type: else
415), at most `max_body_bytes` (else 413), and decode into the handler's struct; a
decoding error names the field, the value's problem and what is allowed (400). A body
whose chunked encoding or length breaks while it is read is a 400 too, never a 500.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from relay.errors import ApiError

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encode(body), status=status, content_type="application/json", headers=headers
    )


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response(error_body(code, message), status=status)


def is_json_content_type(content_type: str) -> bool:
    """`application/json` or `application/<anything>+json`; parameters were stripped."""
    kind, _, subtype = content_type.lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def read_json(request: web.Request, body_type: type[T], max_bytes: int) -> T:
    if not is_json_content_type(request.content_type):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {request.content_type!r}",
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    body = await _read_limited(request, max_bytes)
    return decode_json(body, body_type)


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
        return msgspec.json.decode(body, type=body_type)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_request", field_message(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise ApiError(400, "invalid_json", "the request body nests too deeply") from None


_PATH = re.compile(r" - at `\$\.?([^`]*)`")


def field_message(message: str) -> str:
    """msgspec's `Expected int, got str - at $.max_tokens` as `max_tokens: expected …`."""
    match = _PATH.search(message)
    field = (match.group(1) if match else "") or "request body"
    detail = _PATH.sub("", message)
    return f"{field}: {detail[0].lower()}{detail[1:]}"
