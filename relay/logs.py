"""Logging: plain text for people or one JSON object per line for machines, every line
with the fields of its request (`relay.log_context`: request id, session tag, client,
upstream); the access log, one line per request (a stream's when it ends, with the
events and bytes it sent), which never carries a read token, a key sent in the query or
a session id; and the request ids themselves, taken from `X-Request-Id` when the client
sent a sane one that holds none of its credentials, else made, and echoed in the answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Callable
from urllib.parse import unquote, unquote_plus

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler
from aiohttp.web import BaseRequest, StreamResponse

from relay import log_context
from relay.config import LogSettings
from relay.log_context import Fields, LogContext
from relay.vocabulary import SESSION_ID_PREFIX, session_tag

REDACTED = "***"
REQUEST_ID_HEADER = "X-Request-Id"
# Query parameters whose value is hidden: read tokens, and keys sent where relay reads
# none (`?api_key=`, `?key=`: a frontend's mistake, but still a client's key).
_SECRET_PARAMETER_WORDS = ("token", "key")

# A path segment that is a session's id, `s_…`, or a wire id made from its random part:
# `resp_…`, `msg_…`, `chatcmpl-…`. Ids are capabilities: logs name them by their tag.
_SESSION_ID_SEGMENT = re.compile(r"[a-z]+[_-]([A-Za-z0-9_-]{22})")

LOG_CONTEXT = web.RequestKey("log_context", LogContext)
# The answer once it started, for the access line of a handler cancelled after that.
PREPARED = web.RequestKey("prepared_answer", StreamResponse)
ACCESS_LOGGER = logging.getLogger("aiohttp.access")  # where aiohttp writes its access lines
# The attribute of a log record holding its `Fields` (set by `ContextFilter`, or by the
# access log), and the one holding an access line's own fields.
FIELDS_ATTRIBUTE = "relay_fields"
ACCESS_ATTRIBUTE = "relay_access"


class Access(msgspec.Struct, frozen=True, omit_defaults=True):
    """An access line's own fields. `events` only for a stream; `bytes` of the body."""

    remote: str
    method: str
    path: str  # as logged: session ids tagged, secrets in the query redacted
    status: int
    duration_s: float
    bytes: int
    events: int | None = None


class JsonLine(msgspec.Struct, omit_defaults=True):
    """One JSON log line: a line's fields that are not known are left out."""

    time: str
    level: str
    logger: str
    message: str
    request_id: str | None = None
    session: str | None = None
    client: str | None = None
    upstream: str | None = None
    remote: str | None = None
    method: str | None = None
    path: str | None = None
    status: int | None = None
    duration_s: float | None = None
    bytes: int | None = None
    events: int | None = None
    exception: str | None = None


class ContextFilter(logging.Filter):
    """Puts the current request's fields on each record as it is logged (a filter of the
    handler, so that a record formatted later still says where it was logged from)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, FIELDS_ATTRIBUTE):
            setattr(record, FIELDS_ATTRIBUTE, log_context.current_fields())
        return True


def fields_of(record: logging.LogRecord) -> Fields | None:
    fields = getattr(record, FIELDS_ATTRIBUTE, None)
    return fields if isinstance(fields, Fields) else None


class SecondStamp:
    """The time of a record as text, the part down to the second made once per second:
    a line on a request's path would otherwise convert and format the date each time."""

    def __init__(self, converter: Callable[[float | None], time.struct_time], layout: str) -> None:
        self._converter, self._layout = converter, layout
        self._second, self._text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, time.strftime(self._layout, self._converter(second))
        return self._text


class TextFormatter(logging.Formatter):
    """`2026-… INFO relay.runner: session #3f9a… created … request_id=req_… session=#3f9a…`:
    the message, then the request's known fields as `key=value` (a traceback after)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._stamp = SecondStamp(self.converter, self.default_time_format)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._stamp(record.created)},{int(record.msecs):03d}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        pairs = fields.known() if fields is not None else []
        return super().formatMessage(record) + "".join(f" {k}={_quoted(v)}" for k, v in pairs)


_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _quoted(value: str) -> str:
    """A value as `key=value` can hold it: quoted (JSON) when it has a space, `"` or `=`."""
    if _NEEDS_QUOTES.search(value):
        return msgspec.json.encode(value).decode()
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request's known fields,
    an access line's fields, and `exception` (the traceback) when there is one."""

    def __init__(self) -> None:
        super().__init__()
        self._stamp = SecondStamp(time.gmtime, "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = JsonLine(
            time=f"{self._stamp(record.created)}.{int(record.msecs):03d}Z",
            level=record.levelname.lower(),
            logger=record.name,
            message=record.getMessage(),
            exception=self.formatException(record.exc_info) if record.exc_info else None,
        )
        for part in (fields_of(record), getattr(record, ACCESS_ATTRIBUTE, None)):
            if isinstance(part, Fields | Access):
                line = msgspec.structs.replace(line, **msgspec.structs.asdict(part))
        return msgspec.json.encode(line).decode()


def configure_logging(settings: LogSettings) -> None:
    # What no line of relay's holds is not looked up for each record (the logging
    # HOWTO's "Optimization"): the caller's file and line, the thread, the process.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.value.upper())


class AccessLog(AbstractAccessLogger):
    """`127.0.0.1 "GET /v1/sessions/#3f9a…/events?token=*** HTTP/1.1" 200 1234 0.051234s
    events=12`: client, request line (session ids tagged, secrets in the query redacted),
    status, bytes of the body, seconds, and for a stream the events it sent; then the
    request's fields. Logged once the answer is sent: a stream's when it ends."""

    def log(self, request: BaseRequest, response: StreamResponse, elapsed_s: float) -> None:
        context = request.get(LOG_CONTEXT)
        access = _access(request, response, elapsed_s, context)
        version = request.version
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.6fs%s',
            access.remote, access.method, access.path, version.major, version.minor,
            access.status, access.bytes, elapsed_s,
            "" if access.events is None else f" events={access.events}",
            extra={FIELDS_ATTRIBUTE: context.fields if context else None, ACCESS_ATTRIBUTE: access},
        )  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def _access(
    request: BaseRequest, response: StreamResponse, elapsed_s: float, context: LogContext | None
) -> Access:
    stream = context.stream if context is not None else None
    if stream is not None:
        size, events = stream.bytes, stream.events
    else:
        size, events = response.content_length or 0, None
    return Access(
        remote=request.remote or "-",
        method=request.method,
        path=redact_secrets(request.raw_path),
        status=response.status,
        duration_s=round(elapsed_s, 6),
        bytes=size,
        events=events,
    )


def begin_request(request: BaseRequest) -> str:
    """Begin the request's log context in the current task; the request's id."""
    request_id = request_id_of(request)
    request[LOG_CONTEXT] = log_context.begin(request_id)
    return request_id


def request_id_of(request: BaseRequest) -> str:
    """The `X-Request-Id` the client sent when it is sane (`log_context.sane_request_id`)
    and holds none of the request's credentials (its key, a query token), else a new one."""
    sent = request.headers.get(REQUEST_ID_HEADER)
    if sent is None or not log_context.sane_request_id(sent):
        return log_context.new_request_id()
    if any(secret in sent for secret in _credentials(request) if secret):
        return log_context.new_request_id()
    return sent


def _credentials(request: BaseRequest) -> list[str]:
    """What the request may carry as a credential: its `Authorization` (each word after
    the scheme), `x-api-key`, and the values of query parameters named like a secret."""
    authorization = request.headers.get("Authorization", "").split()[1:]
    sent = [*authorization, request.headers.get("x-api-key", "")]
    query = request.rel_url.query
    return sent + [value for name, value in query.items() if _names_a_secret(name)]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> StreamResponse:
    """The outermost middleware: every request's log context, before anything logs.

    A handler cancelled once its answer started (a stream that shutdown ended) gets its
    access line here: aiohttp writes none for a cancelled handler."""
    begin_request(request)
    started = asyncio.get_running_loop().time()
    try:
        return await handler(request)
    except asyncio.CancelledError:
        if (answer := request.get(PREPARED)) is not None:
            elapsed_s = asyncio.get_running_loop().time() - started
            AccessLog(ACCESS_LOGGER, "").log(request, answer, elapsed_s)
        raise
    finally:
        # The answer refers to its request: kept, the pair would be a reference cycle
        # that only a full collection frees, and each would take its connection's
        # objects along (a pause that grows with the connections, docs/performance.md).
        request.pop(PREPARED, None)


def answer_prepared(request: web.Request, response: StreamResponse) -> None:
    """As it is prepared (`on_response_prepare`): every answer, a stream's too, names its
    request's id; the answer is kept for the access line of a handler cancelled after it
    started."""
    request[PREPARED] = response
    context = request.get(LOG_CONTEXT)
    if context is not None and context.fields.request_id is not None:
        response.headers[REQUEST_ID_HEADER] = context.fields.request_id


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
