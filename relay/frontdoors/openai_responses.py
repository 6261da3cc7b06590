"""`/v1/responses`: the OpenAI Responses API front door.

Point an OpenAI SDK's `base_url` at relay and `client.responses` works against any
upstream model: create (streamed, whole, or `background`), retrieve (the Response
object as of now, or its event stream again with `stream=true&starting_after=N`) and
cancel. A response is a session: its id is `resp_` + the session id without `s_`, and
every answer carries `X-Relay-Session-Id`. Stream events are numbered from the
session's first event (see `relay.subscribers.responses_format`), which is what makes
`starting_after` (or `Last-Event-ID`, the same number) resume exactly where a stream
broke. Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from relay.errors import ApiError
from relay.events import Event
from relay.frontdoors import wire_streams
from relay.frontdoors.auth import caller_of, client_of
from relay.frontdoors.http import (
    decode_request,
    json_response,
    read_body,
    with_openai_errors,
)
from relay.services import SERVICES, Services
from relay.session import SessionRecord
from relay.subscribers import slices
from relay.subscribers.responses_format import ResponsesEventRenderer
from relay.subscribers.resume import resume_id
from relay.wire import openai_chat, responses_request
from relay.wire import openai_responses as wire

routes = web.RouteTableDef()

# How long a cancel waits for the `cancelled` event (a generation writes it within
# moments), so that the answer shows the final status; beyond it, the status as it is.
CANCEL_WAIT_S = 5.0

_TRUE = frozenset({"true", "1", "yes"})


def responses_renderer(
    record: SessionRecord, starting_after: int | None = None
) -> ResponsesEventRenderer:
    """Ids and `created_at` come from the record, so every rendering of it matches."""
    return ResponsesEventRenderer(
        record.id, int(record.created_at), record.model, starting_after=starting_after
    )


async def response_object(record: SessionRecord, events: list[Event]) -> dict[str, object]:
    """The Response object after `events` (rendered in slices: a log may be long)."""
    renderer = responses_renderer(record)
    await slices.prime(renderer, events)
    return renderer.response()


def session_headers(record: SessionRecord) -> dict[str, str]:
    return {wire_streams.SESSION_HEADER: record.id}


@routes.post("/v1/responses")
@with_openai_errors
async def create_response(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    client = client_of(request)
    raw = await read_body(request, services.settings.server.max_body_bytes)
    body, generation = await decode_request(
        raw, responses_request.ResponsesRequest, responses_request.generation_request
    )
    record = await wire_streams.start_session(services, body.model, generation, client)
    if body.stream:
        return await stream_response(request, services, record, background=bool(body.background))
    if body.background:
        events = await services.read_all(record.id)
        return json_response(await response_object(record, events), headers=session_headers(record))
    return await whole_response(services, record)


async def stream_response(
    request: web.Request, services: Services, record: SessionRecord, *, background: bool
) -> web.StreamResponse:
    """In the foreground, an upstream's refusal is an HTTP error, as calling OpenAI would
    be; a background stream waits for nothing: `response.created` comes at once."""
    renderer = responses_renderer(record)
    if not background:
        return await wire_streams.stream_answer(
            request, services, record.id, renderer, openai_chat.error_event_body
        )
    headers = session_headers(record)
    return await services.stream(request, record.id, 0, encode=renderer, headers=headers)


async def whole_response(services: Services, record: SessionRecord) -> web.Response:
    """The Response object once it has ended; an HTTP error if it failed or was cancelled,
    as the other front doors answer."""
    events = await log_until_end(services, record.id)
    failed = wire_streams.failure_response(
        await slices.fold_transcript(events), record.id, openai_chat.error_event_body
    )
    if failed is not None:
        return failed
    return json_response(await response_object(record, events), headers=session_headers(record))


async def log_until_end(services: Services, session_id: str) -> list[Event]:
    events: list[Event] = []
    async for batch in services.follow(session_id):
        events += batch
    return events


@routes.get("/v1/responses/{response_id}")
@with_openai_errors
async def retrieve_response(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    record = await find_response(request, services)
    if request.query.get("stream", "").lower() in _TRUE:
        return await stream_again(request, services, record)
    events = await services.read_all(record.id)
    return json_response(await response_object(record, events), headers=session_headers(record))


async def stream_again(
    request: web.Request, services: Services, record: SessionRecord
) -> web.StreamResponse:
    """The response's stream events after `starting_after` (or `Last-Event-ID`), then live.

    The log is rendered from its first event so that the numbering matches what the
    client saw. A client that already has the last event of an ended response gets a
    stream with nothing in it, not a 204: the OpenAI SDKs expect an event stream (the
    Node SDK throws on a response without a body). The terminal event is not repeated:
    the client asked for what follows it, and it has it.
    """
    renderer = responses_renderer(record, starting_after=starting_after(request))
    return await services.stream(
        request, record.id, 0, encode=renderer, headers=session_headers(record)
    )


def starting_after(request: web.Request) -> int | None:
    """The last sequence number the client has: `Last-Event-ID` wins over `starting_after`
    (as on the native API); empty values count as absent; None means from the start."""
    sources = (
        ("Last-Event-ID header", request.headers.get("Last-Event-ID")),
        ("starting_after", request.query.get("starting_after")),
    )
    try:
        return resume_id(sources)
    except ValueError as exc:
        raise ApiError(400, "invalid_starting_after", str(exc)) from exc


@routes.post("/v1/responses/{response_id}/cancel")
@with_openai_errors
async def cancel_response(request: web.Request) -> web.Response:
    """Cancel as `DELETE /v1/sessions/{id}` does; the Response object once it has ended
    (or, should that take over `CANCEL_WAIT_S`, as it is then)."""
    services = request.app[SERVICES]
    record = await find_response(request, services)
    await services.sessions.cancel(record)
    try:
        async with asyncio.timeout(CANCEL_WAIT_S):
            events = await log_until_end(services, record.id)
    except TimeoutError:
        events = await services.read_all(record.id)
    return json_response(await response_object(record, events), headers=session_headers(record))


async def find_response(request: web.Request, services: Services) -> SessionRecord:
    """The response the path names, if it is the caller's: else 404, as for an unknown id."""
    response_id = request.match_info["response_id"]
    message = f"response {response_id!r} does not exist or has expired"
    not_found = ApiError(404, "response_not_found", message)
    session_id = wire.session_id(response_id)
    return await services.sessions.find(session_id, not_found, caller=caller_of(request))
