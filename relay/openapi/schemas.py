"""JSON Schemas of relay's bodies, for the OpenAPI document. Pure code, no I/O.

Request bodies come from the structs that decode them (`msgspec.json.schema_components`),
so the schema cannot drift from what relay accepts. The one part msgspec cannot see is a
*block family* (`relay.wire.decoding.Block`: a list of objects told apart by a tag, that
relay's `block_hook` decodes), so `family_schema` writes those here, in one place, from
the same member tables the decoder uses: any of the members' schemas, plus, for an open
family, "an object of any other type"; a family with a default tag (a Responses message,
an Anthropic client tool) takes its default member without the tag.

Answers the handlers write as dicts are described by the structs below (`Answer…`),
mirrors of what `relay.wire` and the front doors build; an answer a handler writes as a
struct of its own is that struct (`AnswerBatch`, from relay.wire.producer_request). The
schemathesis test checks every answer against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from relay.events import (
    CancelledData,
    DoneData,
    ErrorData,
    EventType,
    SessionStatus,
    StatusData,
    TextData,
    ToolCallData,
    Usage,
)
from relay.wire.decoding import Block, family_members
from relay.wire.producer_request import AnswerBatch as AnswerBatch  # described with the rest

REF = "#/components/schemas/{name}"

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": REF.format(name=name)}


# --- request bodies and block families ---------------------------------------------------


def components(types: Sequence[type[Any]]) -> tuple[dict[type[Any], Schema], dict[str, Schema]]:
    """A `$ref` schema for each of `types`, and every component they need."""
    families = _FamiliesSeen()
    every: list[type[Any]] = list(types)
    while True:  # members of a family may hold others (a tool result holds blocks)
        schemas, found = msgspec.json.schema_components(
            every, schema_hook=families, ref_template=REF
        )
        described = [*types, *families.members()]
        if len(described) == len(every):
            break
        every = described
    refs = dict(zip(every, schemas, strict=True))
    for family in families.seen:
        found[family_name(family)] = family_schema(family, refs, found)
    names = {name: short_name(name) for name in found}
    refs = {kind: _renamed(refs[kind], names) for kind in types}
    return refs, {names[name]: _renamed(schema, names) for name, schema in found.items()}


class _FamiliesSeen:
    """msgspec's `schema_hook`: a block family is a reference to its schema (written by
    `family_schema`), and is remembered, so that its members are described too."""

    def __init__(self) -> None:
        self.seen: list[type[Block]] = []

    def __call__(self, kind: type[Any]) -> Schema:
        if not (isinstance(kind, type) and issubclass(kind, Block)):
            raise NotImplementedError(f"no JSON Schema for {kind!r}")
        if kind not in self.seen:
            self.seen.append(kind)
        return ref(family_name(kind))

    def members(self) -> list[type[Any]]:
        return [member for family in self.seen for member in family_members(family)[0].values()]


def family_name(family: type[Block]) -> str:
    """`chat_request.ChatPart`: families of different formats share short names."""
    return f"{family.__module__.rsplit('.', 1)[-1]}.{family.__name__}"


def short_name(name: str) -> str:
    """msgspec names a struct whose name another shares by its import path
    (`relay.wire.chat_request.UserMessage`); its module's name tells them apart."""
    return ".".join(name.split(".")[-2:])


_REF_PREFIX = REF.format(name="")


def _renamed(node: Any, names: dict[str, str]) -> Any:
    """`node` with every reference (`$ref`, a discriminator's mapping) renamed."""
    if isinstance(node, dict):
        return {key: _renamed(value, names) for key, value in node.items()}
    if isinstance(node, list):
        return [_renamed(value, names) for value in node]
    if isinstance(node, str) and node.startswith(_REF_PREFIX):
        return _REF_PREFIX + names[node.removeprefix(_REF_PREFIX)]
    return node


def family_schema(
    family: type[Block], refs: dict[type[Any], Schema], found: dict[str, Schema]
) -> Schema:
    """What `block_hook` accepts for `family` (see the module docstring)."""
    members, unmodelled = family_members(family)
    variants = [refs[member] for member in members.values()]
    if family.default_tag is not None:
        _tag_optional(found, refs[members[family.default_tag]], family.tag_field)
    if unmodelled is not None:
        variants.append(other_block(family.tag_field, list(members)))
    schema: Schema = {"title": family.__name__, "anyOf": variants}
    if family.__doc__:
        schema["description"] = family.__doc__.strip()
    return schema


def _tag_optional(found: dict[str, Schema], member_ref: Schema, tag_field: str) -> None:
    member = found[member_ref["$ref"].rsplit("/", 1)[-1]]
    member["required"] = [name for name in member.get("required", []) if name != tag_field]


def other_block(tag_field: str, known: list[str]) -> Schema:
    """An object of a type relay does not model, passed on as it came."""
    return {
        "type": "object",
        "description": "a block of another type, passed on as it came",
        "properties": {tag_field: {"type": "string", "not": {"enum": known}}},
        "required": [tag_field],
    }


# --- answers the handlers build as dicts -------------------------------------------------


class AnswerCreatedSession(msgspec.Struct):
    """A session that now exists; its generation runs in the background."""

    id: str
    status: SessionStatus
    model: str
    events_url: str
    token: str
    created_at: str
    # For `{"producer": "external"}` only: what its producer appends with.
    producer_token: str | None = None
    producer_idle_timeout_s: float | None = None


class AnswerKeepalive(msgspec.Struct):
    """The session's idle timeout runs again from now."""

    id: str
    status: SessionStatus
    idle_timeout_s: float


class AnswerSignal(msgspec.Struct):
    """A signal in the session's signal log, for its producer: its id there (1, 2, 3 …)."""

    id: int
    session: str


class AnswerCancel(msgspec.Struct):
    """`cancelling` while the generation still writes its last events, else the status
    the session has."""

    id: str
    status: Literal["cancelling", "completed", "failed", "cancelled"]


class AnswerChatStop(msgspec.Struct):
    """`POST {ui_chat.prefix}/{chatId}/stop`: the chat's session and its status, as
    `AnswerCancel` has it."""

    chat_id: str
    session_id: str
    status: Literal["cancelling", "completed", "failed", "cancelled"]


class AnswerHealth(msgspec.Struct):
    status: Literal["ok"]
    instance: str


class AnswerReadiness(msgspec.Struct):
    status: Literal["ready", "draining", "store_unavailable"]
    message: str | None = None


class ModelObject(msgspec.Struct):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class AnswerModelList(msgspec.Struct):
    object: Literal["list"]
    data: list[ModelObject]


class CompletionFunction(msgspec.Struct):
    name: str
    arguments: str


class CompletionToolCall(msgspec.Struct):
    id: str
    type: Literal["function"]
    function: CompletionFunction


class CompletionMessage(msgspec.Struct):
    role: Literal["assistant"]
    content: str | None
    refusal: None
    reasoning_content: str | None = None
    tool_calls: list[CompletionToolCall] | None = None


class CompletionChoice(msgspec.Struct):
    index: int
    message: CompletionMessage
    logprobs: None
    finish_reason: str


class CompletionUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AnswerChatCompletion(msgspec.Struct):
    """A whole (`stream: false`) Chat Completions answer."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage


class MessageUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int


class AnswerMessage(msgspec.Struct):
    """A whole (`stream: false`) Anthropic Messages answer; `content` holds `thinking`,
    `text` and `tool_use` blocks."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    stop_sequence: str | None
    usage: MessageUsage


class AnswerResponse(msgspec.Struct):
    """The Responses API's Response object as relay keeps it: request settings are not
    echoed (`instructions`, `temperature`, `max_output_tokens` are null)."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["queued", "in_progress", "completed", "incomplete", "failed", "cancelled"]
    error: dict[str, Any] | None
    incomplete_details: dict[str, Any] | None
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None


# --- server-sent events -------------------------------------------------------------------
# Each schema describes one event of a stream, as an EventSource (or schemathesis) reads
# it: `event` (`message` when the frame has no `event:` line), `data`, `id`.

EVENT_DATA: dict[EventType, type[Any]] = {
    EventType.STATUS: StatusData,
    EventType.DELTA: TextData,
    EventType.REASONING: TextData,
    EventType.TOOL_CALL: ToolCallData,
    EventType.USAGE: Usage,
    EventType.DONE: DoneData,
    EventType.ERROR: ErrorData,
    EventType.CANCELLED: CancelledData,
}
EVENT_ID = {"type": "string", "pattern": "^[0-9]+$"}


def session_event(refs: dict[type[Any], Schema]) -> Schema:
    """An event of `/v1/sessions/{id}/events`: its type, and its data as JSON."""
    variants = [
        _sse_event({"const": kind.value}, json_data(refs[data]))
        for kind, data in EVENT_DATA.items()
    ]
    return {"title": "SessionEvent", "description": "One event of a session's log; "
            "`data` is one line of JSON.", "oneOf": variants}  # fmt: skip


def wire_event(description: str, event: Schema) -> Schema:
    """An event of a provider-format stream; `data` is JSON (or Chat's `[DONE]`)."""
    return {"description": description} | _sse_event(event, {"type": "string"})


def json_data(schema: Schema) -> Schema:
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def _sse_event(event: Schema, data: Schema) -> Schema:
    properties = {"event": event, "data": data, "id": EVENT_ID}
    return {"type": "object", "properties": properties, "required": ["event", "data"]}


# --- error bodies -------------------------------------------------------------------------


class RelayErrorDetail(msgspec.Struct):
    code: str
    message: str


class RelayErrorBody(msgspec.Struct):
    """relay's error shape (native API, health, unknown routes): `code` is one of the
    codes in docs/api.md, `message` names the offending field or value."""

    error: RelayErrorDetail


class SeqConflictDetail(msgspec.Struct):
    code: Literal["seq_conflict"]
    message: str
    expected_seq: int


class SeqConflictBody(msgspec.Struct):
    """A batch that is not the next one: `expected_seq` is."""

    error: SeqConflictDetail


class OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(msgspec.Struct):
    """OpenAI's error shape (Chat Completions, Responses): `code` is relay's code,
    `param` the path of the bad field."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(msgspec.Struct):
    type: str
    message: str


class AnthropicErrorBody(msgspec.Struct):
    """Anthropic's error shape (Messages); the message starts with the bad field's path."""

    type: Literal["error"]
    error: AnthropicErrorDetail
