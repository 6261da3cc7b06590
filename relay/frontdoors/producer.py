"""The producer API for agent backends: `POST /v1/sessions/{id}/events` (a numbered batch
of events) and `POST /v1/sessions/{id}/keepalive`, on a session created with
`{"producer": "external"}` (relay/frontdoors/native.py). The steps are relay.external's.

Both take `Authorization: Bearer <producer token>`. A token that is not the session's
producer token is a 401 whether the session exists or not; a client key instead is
asked about the session as everywhere (relay.sessions.Sessions.find): another client's
session is a 404, its own a 401 naming the token it needs.
"""

from __future__ import annotations

from aiohttp import web

from relay.clients import CHALLENGE, Caller
from relay.errors import ApiError
from relay.external import BatchAccepted, SeqConflict
from relay.frontdoors.auth import client_of, presented_key
from relay.frontdoors.http import InvalidRequest, decode_json, json_response, read_body
from relay.off_loop import LARGE_BODY_BYTES, off_loop
from relay.services import SERVICES
from relay.session import SessionRecord
from relay.vocabulary import PRODUCER_TOKEN_PREFIX
from relay.wire.decoding import InvalidBody
from relay.wire.producer_request import AnswerBatch, EventsBody, Items

routes = web.RouteTableDef()

PRODUCER_TOKEN_REQUIRED = (
    "this endpoint takes the session's producer token (Authorization: Bearer pt_…), the"
    " one its creation answered"
)


@routes.post("/v1/sessions/{session_id}/events")
async def append_events(request: web.Request) -> web.Response:
    """201 with the ids of an appended batch; 200 with those of a retried one."""
    services = request.app[SERVICES]
    record = await producing_session(request)
    raw = await read_body(request, services.settings.server.max_body_bytes)
    seq, items = await off_loop(lambda: decoded_batch(raw), large=len(raw) >= LARGE_BODY_BYTES)
    try:
        accepted = await services.sessions.external.append(record, seq, items)
    except SeqConflict as exc:
        error = {"code": exc.code, "message": exc.message, "expected_seq": exc.expected_seq}
        return json_response({"error": error}, status=exc.status)
    return json_response(batch_answer(record, accepted), status=201 if accepted.appended else 200)


def decoded_batch(raw: bytes) -> tuple[int, Items]:
    """The batch's seq and its events as the log's (400 naming the field at fault)."""
    body = decode_json(raw, EventsBody)
    try:
        return body.seq, body.items()
    except InvalidBody as exc:
        raise InvalidRequest(exc) from exc


def batch_answer(record: SessionRecord, accepted: BatchAccepted) -> AnswerBatch:
    return AnswerBatch(record.id, accepted.seq, accepted.ids, accepted.appended)


@routes.post("/v1/sessions/{session_id}/keepalive")
async def keep_alive(request: web.Request) -> web.Response:
    """200 once the session's idle timeout starts again; 409 once it has ended."""
    external = request.app[SERVICES].sessions.external
    record = await producing_session(request)
    await external.keepalive(record)
    timeout_s = record.producer_idle_timeout_s
    return json_response(
        {"id": record.id, "status": record.status.value, "idle_timeout_s": timeout_s}
    )


async def producing_session(request: web.Request) -> SessionRecord:
    """The session the request's producer token may append to (see the module docstring)."""
    sessions = request.app[SERVICES].sessions
    session_id = request.match_info["session_id"]
    token = presented_key(request)
    if token is not None and token.startswith(PRODUCER_TOKEN_PREFIX):
        return await sessions.external.find(session_id, token)
    await sessions.find(session_id, caller=Caller(client_of(request)))
    raise ApiError(401, "producer_token_required", PRODUCER_TOKEN_REQUIRED, headers=CHALLENGE)
