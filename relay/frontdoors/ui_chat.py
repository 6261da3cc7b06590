"""The Vercel AI SDK front door: the UI message stream protocol (v1) that `useChat`'s
`DefaultChatTransport` speaks, under `[ui_chat] prefix` (default `/v1/ui/chat`).

- `POST {prefix}` takes the transport's body (`relay.wire.ui_chat_request`), starts a
  session and streams its message as UI message chunks
  (`relay.subscribers.ui_message_format`); the chat's id now names that session, on
  every instance (the store's chat streams);
- `GET {prefix}/{chatId}/stream` (the transport's `reconnectToStream`) streams the
  chat's message again from its first chunk, then live, wherever it is generated; `204`
  when the chat has no message streaming (none, or its session has ended), which the
  transport reads as "nothing to resume";
- `POST {prefix}/{chatId}/stop` cancels the chat's session, as `DELETE /v1/sessions/{id}`
  does (`stop()` of `useChat` only closes the browser's connection: an app calls this).

Keys, quotas and CORS are every route's (`Authorization: Bearer <key>`: the transport's
`headers` option). A chat is its client's: another client's chat of the same id is
another chat. Errors before a stream are relay's JSON (`{"error": {"code", "message"}}`,
naming the field), which the transport raises as the `Error`'s message.
"""

from __future__ import annotations

import functools

from aiohttp import web

from relay.errors import ApiError
from relay.events import SessionStatus
from relay.frontdoors import wire_streams
from relay.frontdoors.auth import client_of
from relay.frontdoors.http import decode_request, error_body, json_response, read_body
from relay.services import SERVICES, Services
from relay.session import SessionRecord
from relay.store import ChatStream
from relay.subscribers.ui_message_format import UIMessageRenderer
from relay.wire import ui_chat_request as wire
from relay.wire import ui_message_stream


def routes(prefix: str) -> list[web.RouteDef]:
    """The front door's routes under `prefix` (`[ui_chat] prefix`)."""
    return [
        web.post(prefix, send_messages),
        web.get(prefix + "/{chat_id}/stream", reconnect_to_stream),
        web.post(prefix + "/{chat_id}/stop", stop_chat),
    ]


def relay_error_body(status: int, error: dict[str, object]) -> dict[str, object]:
    """An upstream's refusal before any output, in relay's shape."""
    body: dict[str, object] = {**error_body(str(error.get("code")), str(error.get("message")))}
    return body


async def send_messages(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    client = client_of(request)
    raw = await read_body(request, services.settings.server.max_body_bytes)
    translate = functools.partial(
        wire.generation_request, default_model=services.settings.ui_chat.default_model
    )
    body, generation = await decode_request(raw, wire.UIChatRequest, translate)
    record = await wire_streams.start_session(services, generation.model, generation, client)
    stream = ChatStream(record.id, wire.response_message_id(body, record.id))
    await services.sessions.stream_chat(client, body.id, stream)
    renderer = UIMessageRenderer(record.id, stream.message_id, record.model)
    return await wire_streams.stream_answer(
        request, services, record.id, renderer, relay_error_body, ui_message_stream.HEADERS
    )


async def reconnect_to_stream(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    found = await chat_stream(request, services)
    if found is None or found[0].status.is_final:
        return web.Response(status=204)
    record, stream = found
    renderer = UIMessageRenderer(record.id, stream.message_id, record.model)
    headers = {wire_streams.SESSION_HEADER: record.id, **ui_message_stream.HEADERS}
    return await services.stream(request, record.id, 0, encode=renderer, headers=headers)


async def stop_chat(request: web.Request) -> web.Response:
    """202 with the session's status once the cancel is through (as `DELETE
    /v1/sessions/{id}` answers); 404 for a chat that has no session."""
    services = request.app[SERVICES]
    found = await chat_stream(request, services)
    if found is None:
        chat_id = request.match_info["chat_id"]
        message = f"chat {chat_id!r} has no session: it never streamed, or it has expired"
        raise ApiError(404, "chat_not_found", message)
    record, _ = found
    status = await services.sessions.cancel(record)
    shown = "cancelling" if status is SessionStatus.RUNNING else status.value
    answer = {"chat_id": request.match_info["chat_id"], "session_id": record.id, "status": shown}
    return json_response(answer, status=202)


async def chat_stream(
    request: web.Request, services: Services
) -> tuple[SessionRecord, ChatStream] | None:
    client = client_of(request)
    chat_id = request.match_info["chat_id"]
    if len(chat_id) > wire.CHAT_ID_MAX_LENGTH:
        message = f"chatId: at most {wire.CHAT_ID_MAX_LENGTH} characters, got {len(chat_id)}"
        raise ApiError(400, "invalid_request", message)
    return await services.sessions.chat_stream(client, chat_id)
