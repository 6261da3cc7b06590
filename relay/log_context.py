"""What every log line says about where it comes from: the request's id, the session (by
its tag), the client and the upstream, carried in a contextvar.

Each request gets one `LogContext` (`relay.logs.request_context`, the outermost
middleware, begins it), which `note()` fills in as its fields become known: the client
once the request is authenticated, the session where it is created or found, the
upstream where its route is chosen. Every line logged while the request is handled
reads it, and so does every line of the generation it started: asyncio tasks copy the
context they are created in, and the runner creates a generation's tasks while it
handles the request, so they share the request's `LogContext`. A task that serves every
reader of a session (its live feed) is no one request's: it starts in a context of its
own, naming only the session (`session_context`).

A streaming response also counts here what it sent (`StreamTally`), for the request's
access-log line. No id ever enters a context: sessions are noted by their tag.
"""

from __future__ import annotations

import contextvars
import re
import secrets

import msgspec

from relay.vocabulary import READ_TOKEN_PREFIX, SESSION_ID_PREFIX, session_tag

REQUEST_ID_PREFIX = "req_"
MAX_REQUEST_ID_CHARS = 128
# What an `X-Request-Id` sent by a client may be, to be logged as sent.
_SANE_REQUEST_ID = re.compile(rf"[A-Za-z0-9._:+/=-]{{1,{MAX_REQUEST_ID_CHARS}}}")
# A read token, a session id or a wire id made from one (`resp_…`, `msg_…`, `chatcmpl-…`),
# anywhere in a request id: capabilities, which logs never hold.
_CAPABILITY = re.compile(
    rf"(?<![A-Za-z0-9]){READ_TOKEN_PREFIX}"
    rf"|(?<![A-Za-z0-9])(?:{SESSION_ID_PREFIX}|resp_|msg_|chatcmpl-)[A-Za-z0-9_-]{{22}}"
)


class Fields(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where a line comes from; None: not known (yet), and not logged."""

    request_id: str | None = None
    session: str | None = None  # the session's tag, never its id
    client: str | None = None
    upstream: str | None = None

    def known(self) -> list[tuple[str, str]]:
        """The known fields, as (name, value), in the order above."""
        values = (getattr(self, name) for name in self.__struct_fields__)
        return [(n, v) for n, v in zip(self.__struct_fields__, values, strict=True) if v]


class StreamTally:
    """What a streaming response sent: events (SSE frames, `: ping` comments aside) and
    bytes of its body."""

    __slots__ = ("bytes", "events")

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0

    def sent(self, events: int, size: int) -> None:
        self.events += events
        self.bytes += size


class LogContext:
    """One request's (and its generation's) fields, filled in as they become known."""

    __slots__ = ("fields", "stream")

    def __init__(self, fields: Fields) -> None:
        self.fields = fields
        self.stream: StreamTally | None = None  # set once the response streams


_current: contextvars.ContextVar[LogContext] = contextvars.ContextVar("relay_log_context")


def begin(request_id: str) -> LogContext:
    """The context of a request that starts now, in the current task and those it creates."""
    context = LogContext(Fields(request_id=request_id))
    _current.set(context)
    return context


def current_fields() -> Fields | None:
    """The fields of the current request or task; None outside any."""
    context = _current.get(None)
    return context.fields if context is not None else None


def note(
    *, session_id: str | None = None, client: str | None = None, upstream: str | None = None
) -> None:
    """Add what has become known to the current context (nothing outside a request). The
    session is noted by its tag; an empty client name (the anonymous client) is not noted."""
    context = _current.get(None)
    if context is None:
        return
    fields = context.fields
    context.fields = Fields(
        fields.request_id,
        session_tag(session_id) if session_id is not None else fields.session,
        client or fields.client,
        upstream or fields.upstream,
    )


def stream_tally() -> StreamTally | None:
    """Count what the current request's response streams, for its access-log line."""
    context = _current.get(None)
    if context is None:
        return None
    context.stream = context.stream or StreamTally()
    return context.stream


def session_context(session_id: str) -> contextvars.Context:
    """A context for a task that serves every reader of a session: its lines name the
    session, not the request that happened to start the task."""
    context = contextvars.Context()
    context.run(_current.set, LogContext(Fields(session=session_tag(session_id))))
    return context


def new_request_id() -> str:
    return REQUEST_ID_PREFIX + secrets.token_hex(8)


def sane_request_id(sent: str) -> bool:
    """A request id that may be logged as a client sent it: 1 to MAX_REQUEST_ID_CHARS
    letters, digits and `._:+/=-`, holding no read token or session id."""
    return _SANE_REQUEST_ID.fullmatch(sent) is not None and _CAPABILITY.search(sent) is None
