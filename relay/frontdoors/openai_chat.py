"""`POST /v1/chat/completions`: the OpenAI Chat Completions front door.

Point an OpenAI SDK's `base_url` at relay and every answer becomes a resumable session:
the response carries `X-Relay-Session-Id`, each SSE message `id: N`, and
`GET /v1/sessions/{id}/events?format=openai` with `Last-Event-ID` continues the same
stream where it broke. Any upstream kind can answer (an OpenAI client can stream a
Claude model).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.frontdoors import wire_streams
from relay.frontdoors.http import json_response, read_json
from relay.services import SERVICES, Services
from relay.session import SessionRecord
from relay.subscribers.formats import chat_renderer
from relay.vocabulary import GenerationRequest, Message, openai_finish_reason
from relay.wire import openai_chat as wire

routes = web.RouteTableDef()

MESSAGE_FIELDS = frozenset(Message.__struct_fields__)


def generation_request(body: wire.ChatCompletionRequest) -> GenerationRequest:
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    return GenerationRequest(
        model=body.model,
        messages=[to_message(message) for message in body.messages],
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        stop=stop,
        tools=body.tools,
    )


def to_message(message: dict[str, Any]) -> Message:
    """Keep the fields relay forwards; providers' extra fields are dropped."""
    return Message(**{key: value for key, value in message.items() if key in MESSAGE_FIELDS})


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    body = await read_json(
        request, wire.ChatCompletionRequest, services.settings.server.max_body_bytes
    )
    record = await wire_streams.start_session(services, body.model, generation_request(body))
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        renderer = chat_renderer(record, include_usage=include_usage)
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
