"""`POST /v1/chat/completions`: the OpenAI Chat Completions front door.

Point an OpenAI SDK's `base_url` at relay and every answer becomes a resumable session:
the response carries `X-Relay-Session-Id`, each SSE message `id: N`, and
`GET /v1/sessions/{id}/events?format=openai` with `Last-Event-ID` continues the same
stream where it broke. Any upstream kind can answer (an OpenAI client can stream a
Claude model). Errors, before a stream starts, are in OpenAI's shape
(`{"error": {"message", "type", "param", "code"}}`), relay's code as `code`.
"""

from __future__ import annotations

from aiohttp import web

from relay.frontdoors import wire_streams
from relay.frontdoors.auth import client_of
from relay.frontdoors.http import (
    decode_request,
    json_response,
    read_body,
    with_openai_errors,
)
from relay.services import SERVICES, Services
from relay.session import SessionRecord
from relay.subscribers.formats import chat_renderer
from relay.vocabulary import openai_finish_reason
from relay.wire import chat_request
from relay.wire import openai_chat as wire

routes = web.RouteTableDef()


@routes.post("/v1/chat/completions")
@with_openai_errors
async def chat_completions(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    client = client_of(request)
    raw = await read_body(request, services.settings.server.max_body_bytes)
    body, generation = await decode_request(
        raw, chat_request.ChatCompletionRequest, chat_request.generation_request
    )
    record = await wire_streams.start_session(services, body.model, generation, client)
    if body.stream:
        renderer = chat_renderer(record, include_usage=body.include_usage)
        return await wire_streams.stream_answer(
            request, services, record.id, renderer, wire.error_event_body
        )
    return await whole_completion(services, record)


async def whole_completion(services: Services, record: SessionRecord) -> web.Response:
    transcript = await wire_streams.whole_answer(services, record.id)
    failed = wire_streams.failure_response(transcript, record.id, wire.error_event_body)
    if failed is not None:
        return failed
    headers = {wire_streams.SESSION_HEADER: record.id}
    completion = wire.completion(
        chat_renderer(record, include_usage=False).completion_id,
        int(record.created_at),
        record.model,
        text=transcript.text,
        reasoning=transcript.reasoning or None,
        tool_calls=transcript.tool_calls,
        finish_reason=openai_finish_reason(transcript.finish_reason or "stop"),
        prompt_tokens=transcript.input_tokens,
        completion_tokens=transcript.output_tokens,
    )
    return json_response(completion, headers=headers)
