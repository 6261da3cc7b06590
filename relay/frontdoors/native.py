"""The native API: `/v1/sessions` — create, follow (SSE), snapshot, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from aiohttp import web

from relay.errors import ApiError
from relay.events import CancelledData, EventType
from relay.frontdoors.anthropic_messages import messages_renderer
from relay.frontdoors.http import json_response, read_json
from relay.frontdoors.openai_chat import chat_renderer
from relay.services import SERVICES, Services
from relay.session import SessionRecord, rfc3339, snapshot, token_matches
from relay.subscribers.formats import WireRenderer
from relay.subscribers.resume import parse_resume_id
from relay.vocabulary import GenerationRequest, ToolChoice
from relay.wire import chat_request
from relay.wire.decoding import TokenLimit
from relay.writer import end_from_outside

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# How long a cancel waits for another instance's generator to write `cancelled`.
CANCEL_WAIT_S = 1.0


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


def events_path(session_id: str) -> str:
    return f"/v1/sessions/{session_id}/events"


@routes.post("/v1/sessions")
async def create_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    services.refuse_when_draining()
    body = await read_json(request, CreateSessionBody, services.settings.server.max_body_bytes)
    route = services.router.resolve(body.model)
    created = await services.runner.create(body.model, route, body.generation_request(route.model))
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


@routes.get("/v1/sessions/{session_id}")
async def get_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    record = await find_session(services, request.match_info["session_id"])
    events = await services.read_all(record.id)
    return json_response(snapshot(record, events))


@routes.get("/v1/sessions/{session_id}/events")
async def session_events(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    record = await find_session(services, request.match_info["session_id"])
    check_read_token(request, record)
    # No event id exceeds the cap, so a larger resume id means the same as the cap.
    after = min(resume_point(request), services.settings.store.max_events_per_session)
    if record.status.is_final and after >= record.last_event_id:
        return web.Response(status=204)
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
    renderer.prime(await services.read_all(record.id, upto=after))
    return renderer


@routes.delete("/v1/sessions/{session_id}")
async def cancel_session(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    record = await find_session(services, request.match_info["session_id"])
    await cancel(services, record)
    return json_response({"id": record.id, "status": "cancelling"}, status=202)


async def cancel(services: Services, record: SessionRecord) -> None:
    """Cancel the session's generation (reason `client`) wherever it runs; idempotent.

    Here: at once. Elsewhere: every instance hears the request and the generating one
    cancels, writing held text and then `cancelled`; if none has within
    `CANCEL_WAIT_S` (its generator is gone), the log is ended from here.
    """
    if record.status.is_final or services.runner.cancel(record.id, "client"):
        return
    await services.store.publish_cancel(record.id)
    if not await ended_within(services, record, CANCEL_WAIT_S):
        await cancel_elsewhere(services, record)


async def ended_within(services: Services, record: SessionRecord, seconds: float) -> bool:
    """Wait up to `seconds` for the session's terminal event."""
    after = record.last_event_id
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                events = await services.store.wait(record.id, after, 1000, seconds)
                if events and events[-1].is_terminal:
                    return True
                after = events[-1].id if events else after
    return False


async def cancel_elsewhere(services: Services, record: SessionRecord) -> None:
    """The generation runs on another instance (or none): end the log from here."""
    await end_from_outside(
        services.store,
        record,
        (EventType.CANCELLED, CancelledData("client")),
        retry_s=services.settings.generation.store_retry_s,
        max_events=services.settings.store.max_events_per_session,
    )


async def find_session(services: Services, session_id: str) -> SessionRecord:
    record = await services.store.get(session_id)
    if record is None:
        raise ApiError(
            404, "session_not_found", f"session {session_id!r} does not exist or has expired"
        )
    return record


def check_read_token(request: web.Request, record: SessionRecord) -> None:
    token = request.query.get("token")
    if token is not None and not token_matches(token, record.token_sha256):
        raise ApiError(403, "invalid_token", "token does not grant access to this session")


def resume_point(request: web.Request) -> int:
    try:
        return parse_resume_id(
            request.headers.get("Last-Event-ID"), request.query.get("last_event_id")
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_last_event_id", str(exc)) from exc
