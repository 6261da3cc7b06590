"""Signals from a session's users to its producer: `POST /v1/sessions/{id}/signals`
(the owner's key or the session's read token) and `GET /v1/sessions/{id}/signals` (the
producer's SSE stream of them, producer token only). The steps are relay.external's.

The stream replays the signals after `Last-Event-ID` (or `?last_event_id=`), then sends
each as it comes, as `id: N`, `event: signal`, `data: <the signal's data, as sent>`, and
ends when the session ends. With `?state=true` it starts with the session's state
(`event: session`, no `id:`): whether it is still open and the seq to append with next,
for a producer that reconnects after an instance was lost, or takes over from another.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from relay.frontdoors.auth import caller_of, check_owner_origin
from relay.frontdoors.http import decode_json, json_response, read_body
from relay.frontdoors.native import resume_point
from relay.frontdoors.producer import producing_session
from relay.services import SERVICES
from relay.subscribers.sse import ResponseConnection, SseSubscription

routes = web.RouteTableDef()


class SignalBody(msgspec.Struct, forbid_unknown_fields=True):
    # Whatever the producer and its users agree on; relay only bounds its size.
    data: dict[str, Any]


@routes.post("/v1/sessions/{session_id}/signals")
async def send_signal(request: web.Request) -> web.Response:
    """201 with the signal's id in the session's signal log."""
    services = request.app[SERVICES]
    caller = caller_of(request, read_token=True)
    record = await services.sessions.find(request.match_info["session_id"], caller=caller)
    check_owner_origin(request, caller, record.client)
    raw = await read_body(request, services.settings.server.max_body_bytes)
    body = decode_json(raw, SignalBody)
    signal_id = await services.sessions.external.signal(record, body.data)
    return json_response({"id": signal_id, "session": record.id}, status=201)


@routes.get("/v1/sessions/{session_id}/signals")
async def stream_signals(request: web.Request) -> web.StreamResponse:
    """The session's signals after the resume id, then live, until the session ends."""
    services = request.app[SERVICES]
    record = await producing_session(request)
    after = min(resume_point(request), services.settings.store.max_signals_per_session)
    state = request.query.get("state", "").lower() in ("1", "true", "yes")
    subscription = SseSubscription(
        record.id,
        services.sessions.external.signal_frames(record, after, state=state),
        retry_ms=services.settings.server.retry_ms,
        connection=ResponseConnection(request.transport),
        send_timeout_s=services.settings.limits.send_timeout_s,
    )
    return await subscription.respond(request)
