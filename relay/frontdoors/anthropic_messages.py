"""`POST /v1/messages`: the Anthropic Messages front door.

Point an Anthropic SDK's `base_url` at relay: streams are sessions (header
`X-Relay-Session-Id`, `id: N` on the SSE messages) that
`GET /v1/sessions/{id}/events?format=anthropic` resumes in the same format. Any
upstream kind can answer (an Anthropic client can stream an OpenAI model): the request
is converted once into relay's canonical (Chat) shape, tool history and images included.
Errors, before a stream starts, are in Anthropic's shape
(`{"type": "error", "error": {"type", "message"}}`).
"""

from __future__ import annotations

from aiohttp import web

from relay.frontdoors import wire_streams
from relay.frontdoors.auth import client_of
from relay.frontdoors.http import (
    decode_request,
    json_response,
    read_body,
    with_anthropic_errors,
)
from relay.services import SERVICES, Services
from relay.session import SessionRecord
from relay.subscribers.formats import messages_renderer
from relay.subscribers.transcript import Transcript
from relay.vocabulary import anthropic_stop_reason
from relay.wire import anthropic_messages as wire
from relay.wire import anthropic_to_chat, messages_request

routes = web.RouteTableDef()


def anthropic_error(status: int, data: dict[str, object]) -> dict[str, object]:
    return wire.error_body(wire.error_type_for_status(status), str(data.get("message", "")))


@routes.post("/v1/messages")
@with_anthropic_errors
async def messages(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    client = client_of(request, x_api_key=True)
    raw = await read_body(request, services.settings.server.max_body_bytes)
    body, generation = await decode_request(
        raw, messages_request.MessagesRequest, anthropic_to_chat.generation_request
    )
    record = await wire_streams.start_session(services, body.model, generation, client)
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
    """A tool call as a block; arguments cut by `max_tokens` give what they hold."""
    input = wire.tool_input(str(call["arguments"]))
    return wire.tool_use_block(str(call["id"]), str(call["name"]), input)
