"""The native API: `/v1/sessions` — create, follow (SSE), snapshot, cancel.

`POST /v1/sessions` with `{"producer": "external"}` creates a session that an agent
backend appends to instead (relay/frontdoors/producer.py): no model is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from relay import metrics
from relay.clients import Client
from relay.errors import ApiError
from relay.events import SessionStatus
from relay.frontdoors.auth import caller_of, check_owner_origin, client_of
from relay.frontdoors.http import decode_json, decode_request, json_response, read_body
from relay.services import SERVICES, Services
from relay.session import SessionRecord, rfc3339
from relay.subscribers import slices
from relay.subscribers.formats import WireRenderer, chat_renderer, messages_renderer
from relay.subscribers.resume import parse_resume_id
from relay.vocabulary import GenerationRequest, ToolChoice
from relay.wire import chat_request
from relay.wire.decoding import TokenLimit

routes = web.RouteTableDef()


class CreateSessionBody(msgspec.Struct, forbid_unknown_fields=True):
    """Messages and tools are Chat Completions' (`relay.wire.chat_request`)."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: Annotated[list[chat_request.ChatMessage], msgspec.Meta(min_length=1)]
    max_tokens: TokenLimit | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    stop: str | list[str] | None = None
    tools: list[chat_request.FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    metadata: dict[str, Any] | None = None

    def generation_request(self, upstream_model: str) -> GenerationRequest:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        tools = [msgspec.to_builtins(tool) for tool in self.tools or []]
        return GenerationRequest(
            model=upstream_model,
            messages=[chat_request.relay_message(message) for message in self.messages],
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            stop=stop,
            tools=tools or None,
            tool_choice=self.tool_choice,
        )


class CreateExternalBody(msgspec.Struct, forbid_unknown_fields=True):
    """A session an external producer appends to: `model` and `messages` are optional
    (relay calls no model; they are validated, and `model` is what the snapshot shows)."""

    producer: Literal["external"]
    producer_idle_timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    model: str = ""
    messages: list[chat_request.ChatMessage] | None = None
    metadata: dict[str, Any] | None = None


class _ProducerField(msgspec.Struct):
    producer: Any = None


def names_producer(raw: bytes) -> bool:
    """Whether a create body asks for an external producer (`"producer"` is set)."""
    if b'"producer"' not in raw:  # most bodies: no second parse
        return False
    try:
        return msgspec.json.decode(raw, type=_ProducerField).producer is not None
    except (msgspec.DecodeError, RecursionError):  # the usual decoding says what is wrong
        return False


def _generation_request(raw: bytes, body: CreateSessionBody) -> GenerationRequest:
    return body.generation_request(body.model)


def events_path(session_id: str) -> str:
    return f"/v1/sessions/{session_id}/events"


@routes.post("/v1/sessions")
async def create_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    client = client_of(request)
    raw = await read_body(request, services.settings.server.max_body_bytes)
    if names_producer(raw):
        return await create_external_session(services, raw, client)
    body, generation = await decode_request(raw, CreateSessionBody, _generation_request)
    created = await services.sessions.create(body.model, generation, client)
    record = created.record
    payload = {
        "id": record.id,
        "status": record.status.value,
        "model": record.model,
        "events_url": events_path(record.id),
        "token": created.token,
        "created_at": rfc3339(record.created_at),
    }
    return json_response(payload, status=201, headers={"Location": f"/v1/sessions/{record.id}"})


async def create_external_session(services: Services, raw: bytes, client: Client) -> web.Response:
    body = decode_json(raw, CreateExternalBody)
    created = await services.sessions.create_external(
        body.model, body.producer_idle_timeout_s, client
    )
    record = created.record
    payload = {
        "id": record.id,
        "status": record.status.value,
        "model": record.model,
        "events_url": events_path(record.id),
        "token": created.token,
        "producer_token": created.producer_token,
        "producer_idle_timeout_s": record.producer_idle_timeout_s,
        "created_at": rfc3339(record.created_at),
    }
    return json_response(payload, status=201, headers={"Location": f"/v1/sessions/{record.id}"})


async def readable_session(services: Services, request: web.Request) -> SessionRecord:
    """The session the snapshot or the events endpoint shows: by the owner's key or by
    its read token, on a page that its owner lists, if it comes from another site."""
    caller = caller_of(request, read_token=True)
    record = await services.sessions.find(request.match_info["session_id"], caller=caller)
    check_owner_origin(request, caller, record.client)
    return record


@routes.get("/v1/sessions/{session_id}")
async def get_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    record = await readable_session(services, request)
    return json_response(await services.sessions.snapshot(record))


@routes.get("/v1/sessions/{session_id}/events")
async def session_events(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    try:
        record = await readable_session(services, request)
    except ApiError as exc:
        if exc.status == 404 and is_resume(request):
            metrics.resumed("not_found")
        raise
    # No event id exceeds the cap, so a larger resume id means the same as the cap.
    after = min(resume_point(request), services.settings.store.max_events_per_session)
    if record.status.is_final and after >= record.last_event_id:
        count_resume(after, "ended_204")
        return web.Response(status=204)
    count_resume(after, "replayed" if after < record.last_event_id else "caught_up")
    wire_format = request.query.get("format", "native")
    renderer = await resume_renderer(services, record, wire_format, after, request.query)
    return await services.stream(request, record.id, after, encode=renderer)


WIRE_FORMATS = ("native", "openai", "anthropic")


async def resume_renderer(
    services: Services,
    record: SessionRecord,
    wire_format: str,
    after: int,
    query: Mapping[str, str],
) -> WireRenderer | None:
    """For `?format=openai|anthropic`: a renderer primed with the events the client has."""
    renderer: WireRenderer
    if wire_format == "native":
        return None
    if wire_format == "openai":
        include_usage = query.get("include_usage", "").lower() in ("1", "true", "yes")
        renderer = chat_renderer(record, include_usage=include_usage)
    elif wire_format == "anthropic":
        renderer = messages_renderer(record)
    else:
        allowed = ", ".join(WIRE_FORMATS)
        raise ApiError(
            400, "invalid_format", f"format must be one of {allowed}, got {wire_format!r}"
        )
    await slices.prime(renderer, await services.read_all(record.id, upto=after))
    return renderer


@routes.delete("/v1/sessions/{session_id}")
async def cancel_session(request: web.Request) -> web.Response:
    """202 with the status once the cancel is through: the session's final one, or
    `cancelling` while its generation is still writing its last events."""
    sessions = request.app[SERVICES].sessions
    record = await sessions.find(request.match_info["session_id"], caller=caller_of(request))
    status = await sessions.cancel(record)
    shown = "cancelling" if status is SessionStatus.RUNNING else status.value
    return json_response({"id": record.id, "status": shown}, status=202)


def is_resume(request: web.Request) -> bool:
    """The client resumes: it names a last event it got (an id above 0)."""
    try:
        return resume_point(request) > 0
    except ApiError:  # a bad id: answered as such, once the session is found
        return False


def count_resume(after: int, outcome: str) -> None:
    """A resume (from an event id above 0) by its outcome: `replayed` (events it lacked
    were there), `caught_up` (it had them all; it goes on live), `ended_204`."""
    if after > 0:
        metrics.resumed(outcome)


def resume_point(request: web.Request) -> int:
    try:
        return parse_resume_id(
            request.headers.get("Last-Event-ID"), request.query.get("last_event_id")
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_last_event_id", str(exc)) from exc
