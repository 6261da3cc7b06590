"""`POST /v1/messages`: the Anthropic Messages front door.

Point an Anthropic SDK's `base_url` at relay: streams are sessions (header
`X-Relay-Session-Id`, `id: N` on the SSE messages) that
`GET /v1/sessions/{id}/events?format=anthropic` resumes in the same format. Any
upstream kind can answer (an Anthropic client can stream an OpenAI model): the request
is converted once into relay's canonical (Chat) shape, tool history and images included.
"""

from __future__ import annotations

import json

from aiohttp import web

from relay.frontdoors import wire_streams
from relay.frontdoors.http import json_response, read_json
from relay.services import SERVICES, Services
from relay.session import SessionRecord
from relay.subscribers.formats import messages_renderer
from relay.subscribers.transcript import Transcript
from relay.vocabulary import GenerationRequest, anthropic_stop_reason
from relay.wire import anthropic_messages as wire
from relay.wire.anthropic_to_chat import chat_tools

routes = web.RouteTableDef()


def generation_request(body: wire.MessagesRequest) -> GenerationRequest:
    """The request in relay's canonical (Chat) shape, which every provider takes."""
    return GenerationRequest(
        model=body.model,
        messages=wire.to_relay_messages(body),
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        stop=body.stop_sequences,
        tools=chat_tools(body.tools),
    )


def anthropic_error(status: int, data: dict[str, object]) -> dict[str, object]:
    return wire.error_body(wire.error_type_for_status(status), str(data.get("message", "")))


@routes.post("/v1/messages")
async def messages(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    body = await read_json(request, wire.MessagesRequest, services.settings.server.max_body_bytes)
    record = await wire_streams.start_session(services, body.model, generation_request(body))
    if body.stream:
        renderer = messages_renderer(record)
        return await wire_streams.stream_answer(
            request, services, record.id, renderer, anthropic_error
        )
    return await whole_message(services, record)


async def whole_message(services: Services, record: SessionRecord) -> web.Response:
    transcript = await wire_streams.whole_answer(services, record.id)
    failed = wire_streams.failure_response(transcript, record.id, anthropic_error)
    if failed is not None:
        return failed
    headers = {wire_streams.SESSION_HEADER: record.id}
    message = wire.message(
        messages_renderer(record).message_id,
        record.model,
        content_blocks(transcript),
        anthropic_stop_reason(transcript.finish_reason or "stop"),
        transcript.input_tokens,
        transcript.output_tokens,
    )
    return json_response(message, headers=headers)


def content_blocks(transcript: Transcript) -> list[dict[str, object]]:
    blocks: list[dict[str, object]] = []
    if transcript.reasoning:
        blocks.append({"type": "thinking", "thinking": transcript.reasoning, "signature": ""})
    if transcript.text:
        blocks.append({"type": "text", "text": transcript.text})
    for call in transcript.tool_calls:
        blocks.append(tool_use_block(call))
    return blocks


def tool_use_block(call: dict[str, object]) -> dict[str, object]:
    arguments = str(call["arguments"]) or "{}"
    return {
        "type": "tool_use",
        "id": call["id"],
        "name": call["name"],
        "input": json.loads(arguments),
    }
