"""Logging setup: plain text or one JSON object per line, through `logging`; and the
access log, one line per request, that never carries a read token, a key sent in the
query or a session id."""

from __future__ import annotations

import logging
import re
import sys
import time
from urllib.parse import unquote, unquote_plus

import msgspec
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from relay.config import LogSettings
from relay.vocabulary import SESSION_ID_PREFIX, session_tag

REDACTED = "***"
# Query parameters whose value is hidden: read tokens, and keys sent where relay reads
# none (`?api_key=`, `?key=`: a frontend's mistake, but still a client's key).
_SECRET_PARAMETER_WORDS = ("token", "key")

# A path segment that is a session's id, `s_…`, or a wire id made from its random part:
# `resp_…`, `msg_…`, `chatcmpl-…`. Ids are capabilities: logs name them by their tag.
_SESSION_ID_SEGMENT = re.compile(r"[a-z]+[_-]([A-Za-z0-9_-]{22})")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry).decode()


def configure_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.value.upper())


class AccessLog(AbstractAccessLogger):
    """`127.0.0.1 "GET /v1/sessions/#3f9a…/events?token=*** HTTP/1.1" 200 1234 0.051234s`:
    client, request line (session ids tagged, secrets in the query redacted), status,
    bytes sent (headers included), seconds."""

    def log(self, request: BaseRequest, response: StreamResponse, elapsed_s: float) -> None:
        version = request.version
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.6fs',
            request.remote or "-",
            request.method,
            redact_secrets(request.raw_path),
            version.major,
            version.minor,
            response.status,
            response.body_length,
            elapsed_s,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def redact_secrets(target: str) -> str:
    """A request target (or path) as logs may hold it: every path segment that is a
    session id replaced by the session's tag, and the value of every query parameter
    whose name contains `token` or `key` (any case, percent-decoded: `token`,
    `access_token`, `api_key`, …) replaced by `***`; the rest is left as it was sent."""
    path, mark, query = target.partition("?")
    path = "/".join(_tag_session_id(segment) for segment in path.split("/"))
    if not _names_a_secret(query) and "%" not in query:
        return path + mark + query
    return path + mark + "&".join(_redact_parameter(part) for part in query.split("&"))


def _tag_session_id(segment: str) -> str:
    """Decoded first: `s%5F…` reaches the same session as `s_…`."""
    match = _SESSION_ID_SEGMENT.fullmatch(unquote(segment))
    return session_tag(SESSION_ID_PREFIX + match[1]) if match else segment


def _redact_parameter(parameter: str) -> str:
    name, equals, _ = parameter.partition("=")
    if equals and _names_a_secret(unquote_plus(name)):
        return f"{name}={REDACTED}"
    return parameter


def _names_a_secret(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _SECRET_PARAMETER_WORDS)
