"""What the provider-format front doors share: start a session, then answer it in a
wire format, streamed (SSE through a `WireRenderer`) or whole (after the terminal event).

An upstream that refuses the request (a 4xx) before anything was generated gets the
client an HTTP error with the upstream's status, as calling the provider directly
would; once output has started, failures arrive in the stream instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

from aiohttp import web

from relay.clients import Client
from relay.events import Event, EventType
from relay.frontdoors.http import json_response
from relay.services import Services
from relay.session import SessionRecord
from relay.subscribers import slices
from relay.subscribers.follow import SESSION_LOST
from relay.subscribers.formats import WireRenderer
from relay.subscribers.transcript import Transcript
from relay.vocabulary import GenerationRequest

SESSION_HEADER = "X-Relay-Session-Id"

ErrorBody = Callable[[int, dict[str, object]], dict[str, object]]


async def start_session(
    services: Services, model: str, request: GenerationRequest, client: Client
) -> SessionRecord:
    created = await services.sessions.create(model, request, client)
    return created.record


async def until_first_output(services: Services, session_id: str) -> list[Event]:
    """The session's log from its start up to the read that brought the first event that
    is not a `status`, waiting for it (`session_lost` if the log vanished meanwhile).

    The follow is closed here, not left to the garbage collector: a generator it finds
    unclosed is closed by a task that the event loop schedules through its thread-safe
    wake-up, a system call and a loop turn on every streamed request's first token."""
    read: list[Event] = []
    async with contextlib.aclosing(services.follow(session_id)) as batches:
        async for events in batches:
            read += events
            if any(event.type is not EventType.STATUS for event in events):
                break
    return read


def first_output(events: list[Event]) -> Event | None:
    return next((event for event in events if event.type is not EventType.STATUS), None)


def refusal_status(event: Event | None) -> int | None:
    """The HTTP status to answer when the upstream refused before any output, else None."""
    if event is None or event.type is not EventType.ERROR:
        return None
    status = event.decoded_data().get("upstream_status")
    return status if isinstance(status, int) and 400 <= status < 500 else None


async def stream_answer(
    request: web.Request,
    services: Services,
    session_id: str,
    renderer: WireRenderer,
    error_body: ErrorBody,
    stream_headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """`stream_headers` are the stream's own (a format's), beside the session's."""
    headers = {SESSION_HEADER: session_id}
    head = await until_first_output(services, session_id)
    first = first_output(head)
    status = refusal_status(first)
    if status is not None and first is not None:
        return json_response(error_body(status, first.decoded_data()), status, headers)
    # What was read goes out first: the first token does not wait for a second read.
    return await services.stream(
        request,
        session_id,
        0,
        encode=renderer,
        headers={**headers, **(stream_headers or {})},
        read_ahead=head,
    )


async def whole_answer(services: Services, session_id: str) -> Transcript:
    """Wait for the terminal event; the session folded into one answer (in slices: a
    long log takes a while, the other clients are served meanwhile)."""
    events: list[Event] = []
    async for chunk in services.follow(session_id):
        events += chunk
    return await slices.fold_transcript(events)


def failure_response(
    transcript: Transcript, session_id: str, error_body: ErrorBody
) -> web.Response | None:
    """The error answer of a whole answer that did not complete, else None.

    Its status: the upstream's when it gave one, 502 otherwise, 500 when the session's
    log vanished from the store (`session_lost`: relay's failure, not the upstream's),
    and 499 (client closed request) when the session was cancelled.
    """
    if transcript.error is None and not transcript.cancelled:
        return None
    error = transcript.error or {"message": "the generation was cancelled"}
    status = error.get("upstream_status")
    if transcript.cancelled:
        status = 499
    elif error.get("code") == SESSION_LOST.code:
        status = 500
    elif not isinstance(status, int) or status < 400:  # a redirect is not the client's
        status = 502
    return json_response(error_body(status, error), status, {SESSION_HEADER: session_id})
