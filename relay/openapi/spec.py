"""The OpenAPI 3.1 document of relay's HTTP API. Pure code, no I/O.

It describes every route `create_app` serves (except the optional demo page), with the
error shape each part answers in: relay's on the native API and health, OpenAI's on Chat
Completions and Responses, Anthropic's on Messages. Request bodies are the structs the
front doors decode (`relay.openapi.schemas`); tests/openapi/ checks that the paths match
the router and that answers match the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay import __version__
from relay.config import UIChatSettings
from relay.frontdoors.native import WIRE_FORMATS, CreateExternalBody, CreateSessionBody
from relay.frontdoors.signals import SignalBody
from relay.frontdoors.wire_streams import SESSION_HEADER
from relay.openapi import schemas
from relay.openapi.schemas import Schema, ref
from relay.session import Snapshot
from relay.wire.chat_request import ChatCompletionRequest
from relay.wire.messages_request import MessagesRequest
from relay.wire.producer_request import EventsBody
from relay.wire.responses_request import ResponsesRequest
from relay.wire.ui_chat_request import UIChatRequest

Refs = dict[type[Any], Schema]
Operations = dict[str, Schema]

# A quick mock model, so that the examples (and a fuzzer using them) end at once.
EXAMPLE_MODEL = "mock:tokens=5,tps=0,ttft_ms=0"
EXAMPLE_MESSAGES = [{"role": "user", "content": "Hello"}]
SESSION_ID = r"^s_[A-Za-z0-9_-]{22}$"
RESPONSE_ID = r"^resp_[A-Za-z0-9_-]{22}$"
RESUME_ID = r"^ *[0-9]* *$"

BODIES: tuple[type[Any], ...] = (
    CreateSessionBody,
    CreateExternalBody,
    EventsBody,
    SignalBody,
    ChatCompletionRequest,
    MessagesRequest,
    ResponsesRequest,
    UIChatRequest,
)
ANSWERS: tuple[type[Any], ...] = (
    Snapshot,
    schemas.AnswerCreatedSession,
    schemas.AnswerCancel,
    schemas.AnswerChatStop,
    schemas.AnswerBatch,
    schemas.AnswerKeepalive,
    schemas.AnswerSignal,
    schemas.SeqConflictBody,
    schemas.AnswerHealth,
    schemas.AnswerReadiness,
    schemas.AnswerModelList,
    schemas.AnswerChatCompletion,
    schemas.AnswerMessage,
    schemas.AnswerResponse,
    schemas.RelayErrorBody,
    schemas.OpenAIErrorBody,
    schemas.AnthropicErrorBody,
    *schemas.EVENT_DATA.values(),
)

TAGS = [
    {
        "name": "sessions",
        "description": "The native API: start a generation, follow its "
        "events over SSE (resumable with Last-Event-ID), snapshot it, cancel it.",
    },
    {
        "name": "openai",
        "description": "OpenAI's Chat Completions and Responses APIs; "
        "every answer is a resumable session.",
    },
    {
        "name": "anthropic",
        "description": "Anthropic's Messages API; every answer is a resumable session.",
    },
    {
        "name": "vercel",
        "description": "The Vercel AI SDK's UI message stream protocol (v1), what `useChat`'s "
        "`DefaultChatTransport` speaks, under `[ui_chat] prefix` (described at its default, "
        "`/v1/ui/chat`); every answer is a resumable session.",
    },
    {"name": "operations", "description": "Health probes and this description."},
]

DESCRIPTION = (
    "A streaming relay for LLM responses: generations run in the background and are "
    "written to a durable per-session event log that clients read over Server-Sent "
    "Events and resume with `Last-Event-ID`. See docs/api.md for the events, the error "
    "codes and the resume rules. Browsers on other sites may call relay when their origin "
    "is listed (CORS): per client in `[[clients]] origins`, or in `[server] cors_origins` "
    "without clients; preflights (`OPTIONS`) are answered for those origins."
)


SECURITY_SCHEMES = {
    "clientKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "a `[[clients]]` API key, as `Authorization: Bearer <key>`",
    },
    "anthropicKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "a `[[clients]]` API key, as the Anthropic SDK sends it (`/v1/messages`)",
    },
    "producerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "the producer token an external producer's session was created with "
        "(`pt_…`), as `Authorization: Bearer <token>`",
    },
    "readToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "the read token a session's creation returned (events and snapshot)",
    },
}


def build() -> Schema:
    """The whole document."""
    refs, found = schemas.components([*BODIES, *ANSWERS])
    found["SessionEvent"] = schemas.session_event(refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "relay", "version": __version__, "description": DESCRIPTION},
        "tags": TAGS,
        "paths": native_paths(refs)
        | openai_paths(refs)
        | anthropic_paths(refs)
        | ui_chat_paths(refs)
        | ops_paths(refs),
        "components": {"schemas": found, "securitySchemes": SECURITY_SCHEMES},
        # A key is needed only when `[[clients]]` are configured: no key is also allowed.
        "security": [{}, {"clientKey": []}],
    }


# --- building blocks ----------------------------------------------------------------------


def operation(
    operation_id: str,
    tag: str,
    summary: str,
    answers: Mapping[str, Schema],
    **more: Any,
) -> Schema:
    """An operation; `more` adds `description`, `parameters`, `requestBody`. Every
    operation answers 421 to a `Host` that `[server] allowed_hosts` does not list."""
    answered = dict(answers) | {"421": answer(HOST_NOT_ALLOWED, relay_error())}
    ordered = {status: answered[status] for status in sorted(answered, key=_status_order)}
    return {"operationId": operation_id, "tags": [tag], "summary": summary, **more} | {
        "responses": ordered
    }


def _status_order(status: str) -> int:
    """`400` < `401` < `4XX` < `500`: a range after the statuses it covers."""
    return int(status) if status.isdigit() else int(status[0]) * 100 + 99


# Who may call: by default anyone when no `[[clients]]` are configured, else a client key;
# the events endpoint and the snapshot also take a session's read token; probes are open.
OPEN: list[Schema] = []
READABLE: list[Schema] = [{}, {"clientKey": []}, {"readToken": []}]
PRODUCING: list[Schema] = [{"producerToken": []}]

HOST_NOT_ALLOWED = "the `Host` is not in `[server] allowed_hosts` (`host_not_allowed`)"


def json_body(schema: Schema, example: Mapping[str, Any]) -> Schema:
    content = {"schema": schema, "example": dict(example)}
    return {"required": True, "content": {"application/json": content}}


def answer(description: str, schema: Schema | None = None, **headers: Schema) -> Schema:
    """An answer with a JSON body (if `schema`) and the named headers."""
    content = None if schema is None else {"application/json": {"schema": schema}}
    return _answered(description, content, headers)


def stream_answer(description: str, event: Schema, **headers: Schema) -> Schema:
    """An answer whose body is an SSE stream of `event`s, with the named headers."""
    return _answered(description, {"text/event-stream": event_stream(event)}, headers)


def text_answer(description: str, media_type: str) -> Schema:
    """An answer whose body is a text of `media_type` (a page, Prometheus' format)."""
    return _answered(description, {media_type: {"schema": {"type": "string"}}}, {})


def _answered(description: str, content: Schema | None, headers: Mapping[str, Schema]) -> Schema:
    answered: Schema = {"description": description}
    if content is not None:
        answered["content"] = content
    if headers:
        answered["headers"] = dict(headers)
    return answered


def header(description: str) -> Schema:
    """A header every such answer carries."""
    return {"description": description, "required": True, "schema": {"type": "string"}}


def no_buffering() -> Schema:
    """`X-Accel-Buffering`, which every stream carries."""
    return header("`no`: proxies must not buffer the stream")


def event_stream(event: Schema) -> Schema:
    """An SSE body; `event` is the schema of each of its events (OpenAPI 3.1's reading)."""
    return {"schema": event}


def with_stream(answered: Schema, event: Schema) -> Schema:
    """`answered`, whose body is an SSE stream instead when the request asked for one."""
    answered["content"]["text/event-stream"] = event_stream(event)
    return answered


CHAT_EVENT = schemas.wire_event(
    "a `chat.completion.chunk` with `id: N`; last `[DONE]`", {"const": "message"}
)
MESSAGES_EVENT = schemas.wire_event(
    "`message_start`, content block events, `message_delta`, `message_stop`, with `id: N`",
    {"type": "string"},
)
RESPONSES_EVENT = schemas.wire_event(
    "`response.*` events; `id:` repeats their `sequence_number`", {"type": "string"}
)


UNAUTHENTICATED = (
    "with `[[clients]]`: no key (`missing_api_key`) or a key no client has "
    "(`invalid_api_key`); the answer carries `WWW-Authenticate: Bearer`"
)


ORIGIN_NOT_ALLOWED = (
    "a page on another site whose origin the client's `origins` (without `[[clients]]`: "
    "`[server] cors_origins`) do not list (`origin_not_allowed`)"
)


def errors(error: Schema, statuses: Mapping[int | str, str]) -> dict[str, Schema]:
    """Error answers in one shape; every such operation needs a client's key when
    `[[clients]]` are configured (401), refuses pages on origins its client does not
    list (403) and may answer 500 (a bug)."""
    forbidden = "; or ".join([*([statuses[403]] if 403 in statuses else []), ORIGIN_NOT_ALLOWED])
    answers = {"401": answer(UNAUTHENTICATED, error)}
    answers |= {str(status): answer(text, error) for status, text in statuses.items()}
    answers["403"] = answer(forbidden, error)
    answers["500"] = answer("relay failed (a bug); details are in relay's log", relay_error())
    return answers


def relay_error() -> Schema:
    return ref("RelayErrorBody")


def relay_errors(statuses: Mapping[int | str, str]) -> dict[str, Schema]:
    """`errors` in relay's own shape (the native API, the UI chat door, operations)."""
    return errors(relay_error(), statuses)


def unavailable() -> dict[str, Schema]:
    """The 503 of a provider-format door's other operations, in relay's shape."""
    return {"503": answer(UNAVAILABLE, relay_error())}


RATE_LIMITED = (
    "with `[[clients]]`: the client is over `max_concurrent_sessions`, "
    "`requests_per_minute` or `tokens_per_minute` (`rate_limited`); the message names the "
    "limit and the client"
)


def rate_limited(error: Schema, *, upstream_too: bool = False) -> dict[str, Schema]:
    """The 429 of an operation that starts a session (relay/quotas.py); a provider-format
    door also answers an upstream's own 429 before any output (`upstream_too`), which
    need not carry `Retry-After`."""
    retry_after = {
        "description": "whole seconds until the quota would admit the request"
        + (" (on relay's own `rate_limited`)" if upstream_too else ""),
        "required": not upstream_too,
        "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
    }
    text = RATE_LIMITED + (", or the upstream's own 429 before any output" if upstream_too else "")
    return {"429": answer(text, error, **{"Retry-After": retry_after})}


def path_id(name: str, pattern: str, description: str) -> Schema:
    schema = {"type": "string", "pattern": pattern}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def resume_query(name: str, description: str) -> Schema:
    """A resume id in the query (`last_event_id`, `starting_after`): digits."""
    return query(name, {"type": "string", "pattern": RESUME_ID}, description)


def token_query() -> Schema:
    return query("token", {"type": "string"}, "the session's read token (browsers)")


def last_event_id_header(description: str) -> Schema:
    schema = {"type": "string", "pattern": RESUME_ID}
    return {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema,
    }


BODY_ERRORS: dict[int | str, str] = {
    400: "the body is not JSON (`invalid_json`), a field is missing, wrong or unknown "
    "(`invalid_request`), no upstream serves the model (`unknown_model`, `invalid_model`), "
    "or the request is over `[limits]` (`too_many_messages`, `prompt_too_long`)",
    413: "the body exceeds `server.max_body_bytes` (`body_too_large`)",
    415: "the body is not `application/json` (`unsupported_media_type`)",
    408: "the body did not arrive within `limits.body_timeout_s` (`request_timeout`)",
    403: "with `[[clients]]`: the client's `models` do not include the model (`model_not_allowed`)",
}
UNAVAILABLE = "`store_unavailable`, `capacity` (the memory store is full) or `draining`"
TOO_MANY_SUBSCRIBERS = (
    f"{UNAVAILABLE}, or the session has `limits.max_subscribers_per_session` streams "
    "here (`too_many_subscribers`)"
)
UPSTREAM_REFUSED = "the upstream refused the request before any output (its status)"
SESSION_ERRORS: dict[int | str, str] = {
    404: "unknown or expired (`session_not_found`)",
    503: UNAVAILABLE,
}


# --- the native API -----------------------------------------------------------------------


def native_paths(refs: Refs) -> dict[str, Operations]:
    return {
        "/v1/sessions": {"post": create_session(refs)},
        "/v1/sessions/{session_id}": {"get": snapshot(refs), "delete": cancel_session(refs)},
        "/v1/sessions/{session_id}/events": {
            "get": session_events(),
            "post": append_events(refs),
        },
        "/v1/sessions/{session_id}/keepalive": {"post": keep_alive(refs)},
        "/v1/sessions/{session_id}/signals": {
            "get": signal_stream(),
            "post": send_signal(refs),
        },
        "/v1/ws": {"get": websocket()},
    }


def websocket() -> Schema:
    upgraded = {"description": "the socket is open: JSON text frames both ways (docs/api.md)"}
    return operation(
        "openWebSocket",
        "sessions",
        "Open a WebSocket for several sessions",
        {"101": upgraded} | relay_errors({426: "not a WebSocket upgrade (`Upgrade: websocket`)"}),
        description="Send `start`, `subscribe`, `unsubscribe`, `cancel`, `signal`, `ping` "
        "(and `auth` "
        "when no `Authorization` header came); events come as `event` messages. The "
        "messages, their errors and limits are in docs/api.md, WebSocket.",
    )


def session_id_parameter() -> Schema:
    return path_id("session_id", SESSION_ID, "the session's id, `s_` + 22 base64url characters")


def create_session(refs: Refs) -> Schema:
    created = answer(
        "the session exists; its generation runs in the background",
        refs[schemas.AnswerCreatedSession],
        Location=header("`/v1/sessions/{id}`"),
    )
    created["links"] = session_links()
    example = {"model": EXAMPLE_MODEL, "messages": EXAMPLE_MESSAGES}
    body = {"oneOf": [refs[CreateSessionBody], refs[CreateExternalBody]]}
    return operation(
        "createSession",
        "sessions",
        "Start a generation",
        {"201": created}
        | relay_errors(BODY_ERRORS | {503: UNAVAILABLE})
        | rate_limited(relay_error()),
        description="Messages and tools are Chat Completions'. Unknown top-level fields are "
        "refused; the answer returns as soon as the session exists. With "
        '`{"producer": "external"}` no model is called: the answer\'s `producer_token` '
        "appends the session's events (`POST /v1/sessions/{id}/events`).",
        requestBody=json_body(body, example),
    )


PRODUCER_ERRORS: dict[int | str, str] = {
    401: "no producer token, or not this session's (`invalid_token`), or a client key "
    "instead of it (`producer_token_required`)",
    404: "a client key of another client, or an unknown session (`session_not_found`)",
    409: "the session has ended (`session_ended`)",
    503: UNAVAILABLE,
}


def append_events(refs: Refs) -> Schema:
    accepted = answer("the batch is appended", refs[schemas.AnswerBatch])
    retried = answer(
        "a retry of the last accepted batch: nothing appended", refs[schemas.AnswerBatch]
    )
    statuses = BODY_ERRORS | PRODUCER_ERRORS
    statuses[409] += ", the batch is not the next (`seq_conflict`, with `expected_seq`), or "
    statuses[409] += "it would pass `store.max_events_per_session` (`event_limit`)"
    answers = relay_errors(statuses)
    answers["409"]["content"]["application/json"]["schema"] = {
        "anyOf": [relay_error(), refs[schemas.SeqConflictBody]]
    }
    example = {"seq": 1, "events": [{"type": "delta", "data": {"text": "Hello"}}]}
    return operation(
        "appendSessionEvents",
        "sessions",
        "Append an external producer's batch",
        {"200": retried, "201": accepted} | answers,
        description="Batches are numbered 1, 2, 3 …; the last one ends with a terminal event. "
        "`coalesce: true` merges each run of consecutive `delta` (or `reasoning`) events.",
        requestBody=json_body(refs[EventsBody], example),
        parameters=[session_id_parameter()],
        security=PRODUCING,
    )


def keep_alive(refs: Refs) -> Schema:
    return operation(
        "keepSessionAlive",
        "sessions",
        "Keep an external producer's session alive",
        {"200": answer("its idle timeout runs again from now", refs[schemas.AnswerKeepalive])}
        | relay_errors(PRODUCER_ERRORS),
        description="A producer silent (no batch, no keep-alive) for its "
        "`producer_idle_timeout_s` loses the session: relay ends it with `error` "
        "`producer_lost`.",
        parameters=[session_id_parameter()],
        security=PRODUCING,
    )


def send_signal(refs: Refs) -> Schema:
    statuses = BODY_ERRORS | {
        400: "the body is not JSON (`invalid_json`), `data` is missing or not an object "
        "(`invalid_request`), or its JSON is over `limits.max_signal_bytes` "
        "(`signal_too_large`)",
        401: "with `[[clients]]`: no key or a key no client has (`missing_api_key`, "
        "`invalid_api_key`); any store: `token` is not this session's read token "
        "(`invalid_token`)",
        **SESSION_ERRORS,
        409: "the session has ended (`session_ended`), relay generates it (`no_producer`), "
        "or it has `store.max_signals_per_session` signals (`signal_limit`)",
    }
    example = {"data": {"kind": "answer", "text": "The blue one"}}
    return operation(
        "sendSessionSignal",
        "sessions",
        "Send a signal to a session's producer",
        {"201": answer("the signal is in the session's signal log", refs[schemas.AnswerSignal])}
        | relay_errors(statuses),
        description="For sessions of an external producer, which reads them in order with "
        "`GET /v1/sessions/{id}/signals`. `data` is any JSON object; relay does not read it.",
        requestBody=json_body(refs[SignalBody], example),
        parameters=[
            session_id_parameter(),
            token_query(),
        ],
        security=READABLE,
    )


def signal_stream() -> Schema:
    signal = {
        "type": "object",
        "properties": {
            "event": {"const": "signal"},
            "data": schemas.json_data({"type": "object"}),
            "id": schemas.EVENT_ID,
        },
        "required": ["event", "data", "id"],
    }
    stream = stream_answer(
        "`retry: <ms>`, then the signals after the resume point, then live, "
        "until the session ends; `: ping` comments while idle",
        signal,
    )
    statuses = PRODUCER_ERRORS | {
        400: "a resume id that is not a non-negative integer (`invalid_last_event_id`)"
    }
    del statuses[409]
    return operation(
        "getSessionSignals",
        "sessions",
        "Read a session's signals (SSE, the producer)",
        {"200": stream} | relay_errors(statuses),
        description="Each signal is `id: N`, `event: signal`, `data:` its data as sent. A "
        'cancel of the session comes as `{"kind": "cancel"}`: end the session within '
        "`generation.producer_cancel_grace_s`, or relay appends `cancelled` itself.",
        parameters=[
            session_id_parameter(),
            last_event_id_header("resume after this signal id (wins over `last_event_id`)"),
            resume_query("last_event_id", "resume after this signal id"),
            query(
                "state",
                {"type": "string", "enum": ["1", "true", "yes", "0", "false", "no"]},
                "`true`: the stream starts with `event: session` (no `id:`), the session's "
                "state: `{state, last_seq, next_seq, last_event_id}`, for a producer that "
                "reconnects after an instance was lost, or takes over from another process",
            ),
        ],
        security=PRODUCING,
    )


def session_links() -> Schema:
    session = {"session_id": "$response.body#/id"}
    readable = session | {"token": "$response.body#/token"}
    return {
        "snapshot": {"operationId": "getSession", "parameters": session},
        "events": {"operationId": "getSessionEvents", "parameters": readable},
        "cancel": {"operationId": "cancelSession", "parameters": session},
    }


def snapshot(refs: Refs) -> Schema:
    return operation(
        "getSession",
        "sessions",
        "Snapshot a session",
        {"200": answer("the session as of now", refs[Snapshot])} | relay_errors(SESSION_ERRORS),
        description="`text` is all delta text so far, `usage` the latest usage, `error` the "
        "error event's data or null; times are RFC 3339 UTC.",
        security=READABLE,
        parameters=[session_id_parameter()],
    )


def cancel_session(refs: Refs) -> Schema:
    return operation(
        "cancelSession",
        "sessions",
        "Cancel a session",
        {"202": answer("cancelled, or the status it had ended with", refs[schemas.AnswerCancel])}
        | relay_errors(SESSION_ERRORS),
        description="Idempotent. Stops the generation wherever it runs and appends one "
        "`cancelled` event; on a session that already ended, changes nothing. A session of "
        'an external producer is sent the signal `{"kind": "cancel"}` and ends with its '
        "producer's terminal event, or after `generation.producer_cancel_grace_s` with "
        "`cancelled` (`cancelling` until then).",
        parameters=[session_id_parameter()],
    )


def session_events() -> Schema:
    stream = stream_answer(
        "`retry: <ms>`, then the events after the resume point, then live, "
        "until the terminal one; `: ping` comments while idle",
        session_stream_event(),
        **{"Cache-Control": header("`no-cache`"), "X-Accel-Buffering": no_buffering()},
    )
    statuses: dict[int | str, str] = {
        400: "a resume id that is not a non-negative integer (`invalid_last_event_id`), "
        "or an unknown `format` (`invalid_format`)",
        401: "with `[[clients]]`: no key, a key no client has (`missing_api_key`, "
        "`invalid_api_key`); any store: `token` is not this session's read token "
        "(`invalid_token`)",
        **SESSION_ERRORS,
        503: TOO_MANY_SUBSCRIBERS,
    }
    ended = answer("the client already has the terminal event: nothing more will come")
    return operation(
        "getSessionEvents",
        "sessions",
        "Follow a session (SSE)",
        {"200": stream, "204": ended} | relay_errors(statuses),
        description="The resume point is `Last-Event-ID`, else `?last_event_id=`, else the "
        "start; the header wins. Values are decimal digits; empty counts as absent.",
        parameters=events_parameters(),
        security=READABLE,
    )


def session_stream_event() -> Schema:
    """relay's events, or with `?format=` the provider format's."""
    return {"anyOf": [ref("SessionEvent"), CHAT_EVENT, MESSAGES_EVENT]}


def events_parameters() -> list[Schema]:
    formats = {"type": "string", "enum": list(WIRE_FORMATS), "default": "native"}
    return [
        session_id_parameter(),
        last_event_id_header("resume after this event id (wins over `last_event_id`)"),
        resume_query("last_event_id", "resume after this event id (for EventSource on a new page)"),
        query("format", formats, "the wire format of the stream"),
        query("include_usage", {"type": "boolean"}, "with `format=openai`: the usage chunk"),
        token_query(),
    ]


# --- the provider-format front doors --------------------------------------------------------


def openai_paths(refs: Refs) -> dict[str, Operations]:
    return {
        "/v1/chat/completions": {"post": chat_completions(refs)},
        "/v1/responses": {"post": create_response(refs)},
        "/v1/responses/{response_id}": {"get": retrieve_response(refs)},
        "/v1/responses/{response_id}/cancel": {"post": cancel_response(refs)},
        "/v1/models": {"get": list_models(refs)},
    }


def anthropic_paths(refs: Refs) -> dict[str, Operations]:
    return {"/v1/messages": {"post": messages(refs)}}


def generation_errors(error: Schema) -> dict[str, Schema]:
    """What a provider-format door answers when a generation cannot start or finish."""
    statuses = BODY_ERRORS | {
        "4XX": UPSTREAM_REFUSED,
        499: "(`stream: false`) the session was cancelled meanwhile",
        502: "(`stream: false`) the generation failed (`upstream_*`)",
    }
    answers = errors(error, statuses | {503: UNAVAILABLE})
    answers["500"] = answer(
        "relay failed (a bug, in relay's shape; details are in relay's log), or "
        "(`stream: false`) the session's log vanished from the store (`session_lost`, "
        "in this front door's shape)",
        {"anyOf": [relay_error(), error]},
    )
    return answers | rate_limited(error, upstream_too=True)


def session_answer(description: str, schema: Schema, stream: Schema) -> Schema:
    session = header("the session behind the answer, for `/v1/sessions/{id}/events`")
    return with_stream(answer(description, schema, **{SESSION_HEADER: session}), stream)


def chat_completions(refs: Refs) -> Schema:
    completed = session_answer(
        "the completion (`stream: false`) or its chunks (`stream: true`)",
        refs[schemas.AnswerChatCompletion],
        CHAT_EVENT,
    )
    return operation(
        "createChatCompletion",
        "openai",
        "Chat Completions",
        {"200": completed} | generation_errors(ref("OpenAIErrorBody")),
        description="`n` other than 1 is refused (`unsupported_parameter`); fields relay "
        "does not interpret reach an `openai` upstream as sent.",
        requestBody=json_body(
            refs[ChatCompletionRequest], {"model": EXAMPLE_MODEL, "messages": EXAMPLE_MESSAGES}
        ),
    )


def messages(refs: Refs) -> Schema:
    completed = session_answer(
        "the message (`stream: false`) or its events (`stream: true`)",
        refs[schemas.AnswerMessage],
        MESSAGES_EVENT,
    )
    example = {"model": EXAMPLE_MODEL, "max_tokens": 50, "messages": EXAMPLE_MESSAGES}
    return operation(
        "createMessage",
        "anthropic",
        "Anthropic Messages",
        {"200": completed} | generation_errors(ref("AnthropicErrorBody")),
        description="Converted once into relay's canonical (Chat) shape, so any upstream "
        "kind answers; block types relay does not model reach an `anthropic` upstream.",
        requestBody=json_body(refs[MessagesRequest], example),
        security=[{}, {"clientKey": []}, {"anthropicKey": []}],
    )


# --- the Vercel AI SDK front door (at the default `[ui_chat] prefix`) ----------------------

UI_CHAT_PREFIX = UIChatSettings().prefix
CHAT_ID = r"^[^/{}]{1,256}$"
CHAT_ID_TOO_LONG = "a chat id over 256 characters (`invalid_request`)"
UI_CHUNK_EVENT = schemas.wire_event(
    "a UI message chunk (`start`, `text-delta`, `finish`, …), the last one `[DONE]`; the "
    "last chunk of each of relay's events carries `id: N`",
    {"const": "message"},
)


def ui_chat_paths(refs: Refs) -> dict[str, Operations]:
    return {
        UI_CHAT_PREFIX: {"post": send_chat_messages(refs)},
        UI_CHAT_PREFIX + "/{chat_id}/stream": {"get": reconnect_to_chat_stream()},
        UI_CHAT_PREFIX + "/{chat_id}/stop": {"post": stop_chat(refs)},
    }


def ui_message_stream(description: str) -> Schema:
    session = header("the session behind the stream, for `/v1/sessions/{id}`")
    headers = {
        "x-vercel-ai-ui-message-stream": header("`v1`"),
        "X-Accel-Buffering": no_buffering(),
        SESSION_HEADER: session,
    }
    return stream_answer(description, UI_CHUNK_EVENT, **headers)


def chat_id_parameter() -> Schema:
    return path_id("chat_id", CHAT_ID, "the chat's `id` (useChat's), at most 256 characters")


def send_chat_messages(refs: Refs) -> Schema:
    statuses = BODY_ERRORS | {
        "4XX": UPSTREAM_REFUSED,
        503: UNAVAILABLE,
    }
    example = {
        "id": "chat-1",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Hi"}]}],
        "trigger": "submit-message",
        "model": EXAMPLE_MODEL,
    }
    return operation(
        "sendChatMessages",
        "vercel",
        "useChat: send messages (DefaultChatTransport.sendMessages)",
        {"200": ui_message_stream("the answer's UI message chunks, live")}
        | relay_errors(statuses)
        | rate_limited(relay_error(), upstream_too=True),
        description="The body is what `DefaultChatTransport` POSTs, with the transport's "
        "`body` fields (`model`, else `[ui_chat] default_model`); other fields of the app's "
        "are ignored. The chat's `id` names the answer's session from then on, on every "
        "instance.",
        requestBody=json_body(refs[UIChatRequest], example),
    )


def reconnect_to_chat_stream() -> Schema:
    statuses: dict[int | str, str] = {
        400: CHAT_ID_TOO_LONG,
        503: TOO_MANY_SUBSCRIBERS,
    }
    resumed = ui_message_stream("the chat's message from its first chunk, then live")
    idle = answer("the chat has no message streaming: none, or it has ended")
    return operation(
        "reconnectToChatStream",
        "vercel",
        "useChat: resume the chat's stream (DefaultChatTransport.reconnectToStream)",
        {"200": resumed, "204": idle} | relay_errors(statuses),
        parameters=[chat_id_parameter()],
    )


def stop_chat(refs: Refs) -> Schema:
    statuses: dict[int | str, str] = {
        400: CHAT_ID_TOO_LONG,
        404: "the chat has no session (`chat_not_found`)",
        503: UNAVAILABLE,
    }
    stopped = answer("cancelled, or the status it had ended with", refs[schemas.AnswerChatStop])
    return operation(
        "stopChat",
        "vercel",
        "Stop the chat's message (cancel its session)",
        {"202": stopped} | relay_errors(statuses),
        description="As `DELETE /v1/sessions/{id}` on the chat's latest session: idempotent; "
        "the streams of the message end with `abort`.",
        parameters=[chat_id_parameter()],
    )


def response_id_parameter() -> Schema:
    return path_id("response_id", RESPONSE_ID, "`resp_` + the session id without `s_`")


def create_response(refs: Refs) -> Schema:
    created = session_answer(
        "the Response object (whole, or at once with `background`) or its events",
        refs[schemas.AnswerResponse],
        RESPONSES_EVENT,
    )
    created["links"] = response_links()
    return operation(
        "createResponse",
        "openai",
        "Create a response (Responses API)",
        {"200": created} | generation_errors(ref("OpenAIErrorBody")),
        description="relay keeps no conversation state: `previous_response_id`, "
        "`conversation`, `prompt` and `item_reference` items are refused "
        "(`unsupported_parameter`); send the earlier turns in `input`.",
        requestBody=json_body(refs[ResponsesRequest], {"model": EXAMPLE_MODEL, "input": "Hi"}),
    )


def response_links() -> Schema:
    response = {"response_id": "$response.body#/id"}
    return {
        "retrieve": {"operationId": "getResponse", "parameters": response},
        "cancel": {"operationId": "cancelResponse", "parameters": response},
    }


def not_found_response() -> dict[int | str, str]:
    return {404: "unknown or expired (`response_not_found`)"}


def retrieve_response(refs: Refs) -> Schema:
    retrieved = session_answer(
        "the Response object as of now, or (`stream=true`) its events again",
        refs[schemas.AnswerResponse],
        RESPONSES_EVENT,
    )
    statuses = not_found_response() | {
        400: "`starting_after` is not digits (`invalid_starting_after`)"
    }
    return operation(
        "getResponse",
        "openai",
        "Retrieve a response, or stream it again",
        {"200": retrieved} | errors(ref("OpenAIErrorBody"), statuses) | unavailable(),
        parameters=[
            response_id_parameter(),
            query("stream", {"type": "boolean"}, "stream the events instead"),
            resume_query(
                "starting_after", "with `stream`: only the events after this sequence number"
            ),
            last_event_id_header("with `stream`: wins over `starting_after`"),
        ],
    )


def cancel_response(refs: Refs) -> Schema:
    cancelled = answer(
        "the Response object once it has ended (`cancelled`, or `completed` if it had finished)",
        refs[schemas.AnswerResponse],
        **{SESSION_HEADER: header("the session behind the response")},
    )
    return operation(
        "cancelResponse",
        "openai",
        "Cancel a response",
        {"200": cancelled} | errors(ref("OpenAIErrorBody"), not_found_response()) | unavailable(),
        parameters=[response_id_parameter()],
    )


def list_models(refs: Refs) -> Schema:
    return operation(
        "listModels",
        "openai",
        "List the models named literally in the upstreams",
        {"200": answer("OpenAI's model list", refs[schemas.AnswerModelList])} | relay_errors({}),
        description="Glob patterns cannot be listed; any model is also reachable as "
        "`UPSTREAM/MODEL`.",
    )


# --- operations ----------------------------------------------------------------------------


def ops_paths(refs: Refs) -> dict[str, Operations]:
    document = {"application/json": {"schema": {"type": "object"}}}
    return {
        "/healthz": {"get": healthz(refs)},
        "/readyz": {"get": readyz(refs)},
        "/openapi.json": {
            "get": operation(
                "getOpenApi",
                "operations",
                "This document",
                {"200": {"description": "OpenAPI 3.1", "content": document}},
                security=OPEN,
            )
        },
        "/metrics": {"get": metrics_page()},
        "/docs": {
            "get": operation(
                "getDocs",
                "operations",
                "This document as a web page",
                {"200": text_answer("a self-contained HTML page", "text/html")},
                security=OPEN,
            )
        },
    }


def metrics_page() -> Schema:
    return operation(
        "getMetrics",
        "operations",
        "Prometheus metrics (text format; docs/operations.md lists them). Served here only "
        "while `[server] metrics_port` is unset; then on that port alone",
        {"200": text_answer("every `relay_*` metric", "text/plain")},
        security=OPEN,
    )


def healthz(refs: Refs) -> Schema:
    alive = answer("the process runs; `instance` names it", refs[schemas.AnswerHealth])
    return operation("getHealth", "operations", "Liveness", {"200": alive}, security=OPEN)


def readyz(refs: Refs) -> Schema:
    readiness = refs[schemas.AnswerReadiness]
    return operation(
        "getReadiness",
        "operations",
        "Readiness",
        {
            "200": answer("the store answers and the instance is not draining", readiness),
            "503": answer("`draining` or `store_unavailable`", readiness),
        },
        security=OPEN,
    )
