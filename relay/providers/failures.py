"""Upstream failures as `UpstreamError`s, shared by the HTTP providers.

The upstream boundary (`sse_client`) and the providers' stream readers describe what went
wrong with these helpers and raise it as `UpstreamFailed`, so every upstream answers the
same way: an HTTP status becomes a code (`upstream_bad_request`, `upstream_auth`,
`upstream_rate_limited`, …) with the upstream's own message, 429 and 5xx are retryable
and carry their `Retry-After`, a redirect is `upstream_redirect` (not followed), and
transport errors (refused, reset, timed out, an event that cannot be read) are retryable.

Messages are kept whole here; `scrubbed` makes them fit for clients and logs, in that
order: the API key redacted, then the message cut to `MAX_MESSAGE_CHARS`. Pure: no I/O.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import math
import time
from collections.abc import Mapping

import msgspec

from relay.errors import UpstreamError

MAX_MESSAGE_CHARS = 1000
REDACTED = "[redacted]"
# Any run of this many characters of the key is redacted, not only the whole key: an
# upstream that cut its own message, or echoed part of the key, leaks at most 7 in a row
# (OpenAI's own messages show the key's last 4).
SECRET_PIECE_CHARS = 8

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_STATUS_CODES = {
    400: "upstream_bad_request",
    401: "upstream_auth",
    403: "upstream_forbidden",
    404: "upstream_not_found",
    408: "upstream_timeout",
    413: "upstream_request_too_large",
    422: "upstream_bad_request",
    429: "upstream_rate_limited",
}

# Error types that upstreams put inside a stream (Anthropic's `error` event, an
# OpenAI-compatible `{"error": …}` chunk) and are the caller's fault, so not retryable.
_CALLER_ERROR_TYPES = {
    "invalid_request_error": "upstream_bad_request",
    "authentication_error": "upstream_auth",
    "permission_error": "upstream_forbidden",
    "not_found_error": "upstream_not_found",
    "request_too_large": "upstream_request_too_large",
}


class Failure(msgspec.Struct, frozen=True):
    """What one failed upstream request tells the retry loop."""

    error: UpstreamError
    retry_after_s: float | None = None  # what the upstream asked us to wait, if it did


class UpstreamFailed(Exception):
    """A `Failure` on its way from the upstream boundary to the retry loop."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.error.code)  # not the message: it may quote a secret
        self.failure = failure


def failure_of(exc: Exception) -> Failure | None:
    """The `Translate` of the HTTP providers: only `UpstreamFailed` is an upstream's."""
    return exc.failure if isinstance(exc, UpstreamFailed) else None


class ConnectionFault(enum.StrEnum):
    """Which part of an exchange a connection failure broke, as its message names it."""

    CONNECT = "ConnectError"  # no connection: refused, unresolvable, TLS handshake, proxy
    READ = "ReadError"  # the connection broke while the request or its answer was under way


def is_retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def status_failure(status: int, body: object, headers: Mapping[str, str]) -> Failure:
    """An HTTP error answer: its code, the upstream's message, and its Retry-After."""
    code = _STATUS_CODES.get(status) or (
        "upstream_unavailable" if status >= 500 else "upstream_rejected"
    )
    message = upstream_message(body) or f"the upstream answered HTTP {status}"
    retryable = is_retryable_status(status)
    error = UpstreamError(code, message, retryable=retryable, status=status)
    return Failure(error, parse_retry_after(headers) if retryable else None)


def redirect_failure(status: int) -> Failure:
    """A redirect, which relay does not follow: an API that answers a POST with one is
    misconfigured (`http://` for `https://`, a moved host or path), and following it
    would carry the key to wherever it points (aiohttp drops `Authorization` on the way
    to another origin, not Anthropic's `x-api-key`)."""
    message = (
        f"the upstream answered a redirect (HTTP {status}) to another location; "
        "relay does not follow redirects: fix the upstream's base_url"
    )
    return Failure(UpstreamError("upstream_redirect", message, retryable=False, status=status))


def stream_error_failure(error_type: str | None, message: str | None) -> Failure:
    """An error the upstream reported inside a stream it had answered with 200."""
    text = (message or "").strip() or "the upstream reported an error in the stream"
    code = _CALLER_ERROR_TYPES.get(error_type or "")
    if code is not None:
        return Failure(UpstreamError(code, text, retryable=False))
    if error_type == "overloaded_error":
        return Failure(UpstreamError("upstream_overloaded", text, retryable=True))
    if error_type == "rate_limit_error":
        return Failure(UpstreamError("upstream_rate_limited", text, retryable=True))
    return Failure(UpstreamError("upstream_error", text, retryable=True))


def timeout_failure() -> Failure:
    return Failure(UpstreamError("upstream_timeout", "the upstream timed out", retryable=True))


def connection_failure(fault: ConnectionFault) -> Failure:
    """The connection failed: refused, reset, closed mid-answer, or a broken TLS session.

    The message names only the kind of failure: the exception's text can name the
    upstream's address, which is not the API clients' business. It stays in the chain.
    """
    message = f"the connection to the upstream failed ({fault})"
    return Failure(UpstreamError("upstream_connection_error", message, retryable=True))


def bad_response_failure(exc: msgspec.DecodeError) -> Failure:
    """An event that is not JSON, or not in the shape the upstream's API documents."""
    if isinstance(exc, msgspec.ValidationError):  # its text names the path of the field
        message = f"the upstream sent an event relay cannot read: {exc}"
    else:
        message = "the upstream sent an event that is not valid JSON"
    return Failure(UpstreamError("upstream_bad_response", message, retryable=True))


def incomplete_stream() -> UpstreamError:
    """The stream ended without saying why the model stopped: a truncation, never a finish."""
    message = "the upstream ended the stream before the answer was complete"
    return UpstreamError("upstream_incomplete", message, retryable=True)


def first_token_timeout(timeout_s: float) -> UpstreamError:
    message = f"the upstream sent nothing within first_token_timeout_s={timeout_s:g}"
    return UpstreamError("upstream_timeout", message, retryable=True)


def upstream_message(body: object) -> str | None:
    """The message in an error body: `{"error": {"message"}}`, `{"message"}`, `{"error":
    "…"}`, `{"detail": "…"}` (FastAPI servers) or plain text."""
    if isinstance(body, str):
        return body.strip() or None
    if not isinstance(body, Mapping):
        return None
    for candidate in (body.get("error"), body):
        if isinstance(candidate, str) and candidate:
            return candidate.strip()
        if isinstance(candidate, Mapping):
            for key in ("message", "detail"):
                if isinstance(candidate.get(key), str) and candidate[key]:
                    return str(candidate[key]).strip()
    return None


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` (seconds or an HTTP date)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    milliseconds = _number(lowered.get("retry-after-ms"))
    if milliseconds is not None:
        return max(0.0, milliseconds / 1000)
    value = lowered.get("retry-after")
    if not value:
        return None
    seconds = _number(value)
    if seconds is None:
        seconds = _seconds_until(value, now)
    return None if seconds is None else max(0.0, seconds)


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _seconds_until(http_date: str, now: float | None) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # `-0000`: UTC, by RFC 5322
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp() - (time.time() if now is None else now)


def scrubbed(error: UpstreamError, secret: str | None) -> UpstreamError:
    """`error` as clients and logs may see it: `error` itself, or a copy whose message
    has `secret` redacted (some proxies echo the key they rejected) and is then cut to
    `MAX_MESSAGE_CHARS`. Redacting first: a cut through the key would leave a piece that
    no longer matches it. The copy must not be chained to the exception it came from,
    which may quote the same answer."""
    message = _clip(without_secret(error.message, secret) if secret else error.message)
    if message == error.message:
        return error
    return UpstreamError(error.code, message, retryable=error.retryable, status=error.status)


def without_secret(text: str, secret: str) -> str:
    """`text` with each run that is a piece of `secret` at least `SECRET_PIECE_CHARS`
    long (all of a shorter secret) replaced by `REDACTED`."""
    width = min(SECRET_PIECE_CHARS, len(secret))
    pieces = {secret[start : start + width] for start in range(len(secret) - width + 1)}
    if not any(piece in text for piece in pieces):  # the usual case, at C speed
        return text
    hidden = [False] * len(text)
    for start in range(len(text) - width + 1):
        if text[start : start + width] in pieces:
            hidden[start : start + width] = [True] * width
    return "".join(_shown_chars(text, hidden))


def _shown_chars(text: str, hidden: list[bool]) -> list[str]:
    """The characters that are not hidden, and one `REDACTED` per hidden run."""
    shown = []
    for index, char in enumerate(text):
        if not hidden[index]:
            shown.append(char)
        elif index == 0 or not hidden[index - 1]:
            shown.append(REDACTED)
    return shown


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"
