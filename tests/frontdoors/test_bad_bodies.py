"""Bad request bodies over real HTTP, against every front door, on both stores.

Each field missing, of each wrong JSON type, out of range, and extra; nested fields;
empty and huge arrays; bodies over `max_body_bytes`; what is not JSON (malformed, invalid
UTF-8, 10,000 nested arrays). Every answer is a 4xx in the front door's own error shape
whose message starts with the path of the field at fault; none is a 5xx. Valid bodies,
extras for the provider formats (passed on) and huge arrays within the limit are accepted.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest

from relay.providers.base import Finish, Provider, ProviderItem, ToolCall, UsageReport
from relay.vocabulary import GenerationRequest
from tests.frontdoors.conftest import FAST_MOCK, Relay, StartRelay

USER = {"role": "user", "content": "hi"}
MISSING = object()
MAX_BODY_BYTES = 1024 * 1024  # the default
# One value of each JSON type; a field is sent each one it does not allow.
SAMPLES: dict[str, Any] = {
    "str": "x",
    "int": 5,
    "float": 1.5,
    "bool": True,
    "null": None,
    "array": [1],
    "object": {"a": 1},
}
NESTED = "[" * 10_000 + "]" * 10_000
DEEP = "@nested@"  # a value that `encode` writes as NESTED
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Field:
    path: Path
    allowed: frozenset[str]  # the JSON types of SAMPLES that are valid here
    required: bool = False
    out_of_range: tuple[Any, ...] = ()


def fields(*specs: tuple[Any, ...]) -> tuple[Field, ...]:
    return tuple(
        Field(
            spec[0] if isinstance(spec[0], tuple) else (spec[0],),
            frozenset(spec[1].split()),
            *spec[2:],
        )
        for spec in specs
    )


TOKENS = (0, -1, -(2**63), 2**63, 10**30)
MESSAGE_FIELDS = fields(
    ("model", "str", True, ("",)),
    ("messages", "", True, ([],)),
    (("messages", 0), ""),
    (("messages", 0, "role"), "", True),
    (("messages", 0, "content"), "str", True),
)
CHAT_MESSAGES = fields(
    ("max_tokens", "int null", False, TOKENS),
    ("temperature", "float null", False, (-1, 2.5, 1e30, -1e30)),
    ("stop", "str null"),
    ("tools", "null"),
    ("tool_choice", "null"),
)


@dataclass(frozen=True)
class Door:
    name: str
    path: str
    valid: dict[str, Any]
    shape: str  # "relay", "openai" or "anthropic"
    fields: tuple[Field, ...]
    nested: tuple[tuple[Path, Any, str], ...]  # (where, value, the path named)
    accepts_extras: bool = True
    ok: int = 200
    extra: dict[str, Any] = field(default_factory=lambda: {"top_k": 5, "vendor_option": [1]})


CHAT_NESTED: tuple[tuple[Path, Any, str], ...] = (
    (("messages", 0, "content"), [5], "messages[0].content[0]"),
    (("messages", 0, "content"), [{"type": "text"}], "messages[0].content[0].text"),
    (("messages", 0, "content"), [{"text": "x"}], "messages[0].content[0].type"),
    (
        ("messages", 0, "content"),
        [{"type": "image_url", "image_url": "x"}],
        "messages[0].content[0].image_url",
    ),
    (
        ("messages", 0),
        {"role": "assistant", "tool_calls": [{"id": "1"}]},
        "messages[0].tool_calls[0].function",
    ),
    (("messages", 0), {"role": "tool", "content": "x"}, "messages[0].tool_call_id"),
    (
        ("messages", 0),
        {"role": "system", "content": [{"type": "image_url"}]},
        "messages[0].content[0].type",
    ),
    (("tools",), [{"type": "function"}], "tools[0].function"),
    (("tools",), [{"type": "function", "function": {"name": 5}}], "tools[0].function.name"),
    (("tool_choice",), {"type": "function"}, "tool_choice.function"),
    (("tool_choice",), "sometimes", "tool_choice"),
)

NATIVE = Door(
    "native",
    "/v1/sessions",
    {"model": FAST_MOCK, "messages": [USER]},
    "relay",
    MESSAGE_FIELDS + CHAT_MESSAGES + fields(("metadata", "object null")),
    CHAT_NESTED + ((("metadata",), {"a": DEEP}, ""),),
    accepts_extras=False,
    ok=201,
)
CHAT = Door(
    "chat",
    "/v1/chat/completions",
    {"model": FAST_MOCK, "messages": [USER]},
    "openai",
    MESSAGE_FIELDS
    + CHAT_MESSAGES
    + fields(
        ("max_completion_tokens", "int null", False, TOKENS),
        (("stop",), "str null", False, (["a", "b", "c", "d", "e"],)),
        ("n", "null", False, (0, 2)),
        ("stream", "bool null"),
        ("stream_options", "object null"),
        ("parallel_tool_calls", "bool null"),
        ("response_format", "null"),
        ("seed", "int null", False, (2**63,)),
        ("top_p", "null", False, (-0.1, 1.5)),
        ("frequency_penalty", "float null", False, (3, -3)),
        ("top_logprobs", "int null", False, (21, -1)),
        ("logit_bias", "object null", False, ({"1": 101},)),
        ("user", "str null"),
        ("metadata", "null"),
    ),
    CHAT_NESTED
    + (
        (("response_format",), {"type": "xml"}, "response_format.type"),
        (("stream_options",), {"include_usage": "yes"}, "stream_options.include_usage"),
    ),
)
MESSAGES = Door(
    "messages",
    "/v1/messages",
    {"model": FAST_MOCK, "max_tokens": 50, "messages": [USER]},
    "anthropic",
    MESSAGE_FIELDS
    + fields(
        ("max_tokens", "int", True, TOKENS),
        ("system", "str null"),
        ("temperature", "null", False, (-1, 1.5, 1e30)),
        ("stop_sequences", "null"),
        ("tools", "null"),
        ("tool_choice", "null"),
        ("top_k", "int null", False, (-1,)),
        ("top_p", "null", False, (1.5,)),
        ("thinking", "null"),
        ("metadata", "object null"),
        ("stream", "bool null"),
    ),
    (
        (("messages", 0, "content"), [5], "messages[0].content[0]"),
        (("messages", 0, "content"), [{"text": "x"}], "messages[0].content[0].type"),
        (
            ("messages", 0, "content"),
            [{"type": "image", "source": "x"}],
            "messages[0].content[0].source",
        ),
        (
            ("messages", 0, "content"),
            [{"type": "image", "source": 5}],
            "messages[0].content[0].source",
        ),
        (
            ("messages", 0, "content"),
            [{"type": "image", "source": {"type": "base64", "data": "x"}}],
            "messages[0].content[0].source.media_type",
        ),
        (
            ("messages", 0, "content"),
            [{"type": "tool_result", "tool_use_id": "t", "content": 5}],
            "messages[0].content[0].content",
        ),
        (
            ("messages", 0, "content"),
            [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}],
            "messages[0].content[0].input",
        ),
        (("system",), [5], "system[0]"),
        (("tools",), [{"name": "f"}], "tools[0].input_schema"),
        (("tool_choice",), {"type": "tool"}, "tool_choice.name"),
        (("tool_choice",), {"type": "required"}, "tool_choice.type"),
        (("thinking",), {"budget_tokens": 1024}, "thinking.type"),
    ),
)
RESPONSES = Door(
    "responses",
    "/v1/responses",
    {"model": FAST_MOCK, "input": "hi"},
    "openai",
    fields(
        ("model", "str", True, ("",)),
        ("input", "str", True, ([],)),
        ("instructions", "str null"),
        ("max_output_tokens", "int null", False, TOKENS),
        ("temperature", "float null", False, (-1, 3, 1e30)),
        ("top_p", "null", False, (1.5,)),
        ("tools", "null"),
        ("tool_choice", "null"),
        ("parallel_tool_calls", "bool null"),
        ("previous_response_id", "null"),
        ("stream", "bool null"),
        ("background", "bool null"),
        ("text", "object null"),
    ),
    (
        (("input",), [5], "input[0]"),
        (("input",), [{"role": "user"}], "input[0].content"),
        (("input",), [{"content": "x"}], "input[0].role"),
        (("input",), [{"type": "function_call"}], "input[0].call_id"),
        (("input",), [{"type": "web_search_call"}], "input[0].type"),
        (("input",), [{"type": "item_reference", "id": "msg_1"}], "input[0]"),
        (
            ("input",),
            [{"role": "user", "content": [{"type": "input_video"}]}],
            "input[0].content[0].type",
        ),
        (("tools",), [{"type": "web_search"}], "tools[0].type"),
        (("tool_choice",), {"type": "mcp"}, "tool_choice.type"),
        (("previous_response_id",), "resp_1", "previous_response_id"),
        (("conversation",), "conv_1", "conversation"),
        (("text",), {"format": {"type": "yaml"}}, "text.format.type"),
    ),
)
DOORS = [NATIVE, CHAT, MESSAGES, RESPONSES]


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    status: int
    named: str | None = None  # the path the message starts with ("" for any message)


def set_at(body: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    parent: Any = changed
    for key in path[:-1]:
        parent = parent[key]
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return changed


def named(path: Path) -> str:
    return "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path).lstrip(".")


def encode(body: Any) -> bytes:
    return json.dumps(body).replace(json.dumps(DEEP), NESTED).encode()


def field_cases(door: Door) -> Iterator[Case]:
    for spec in door.fields:
        where = named(spec.path)
        if spec.required:
            yield Case(
                f"{where} missing", encode(set_at(door.valid, spec.path, MISSING)), 400, where
            )
        for kind, value in SAMPLES.items():
            if kind not in spec.allowed:
                body = encode(set_at(door.valid, spec.path, value))
                yield Case(f"{where} {kind}", body, 400, where)
        for value in spec.out_of_range:
            body = encode(set_at(door.valid, spec.path, value))
            yield Case(f"{where}={value!r:.20}", body, 400, where)
    for path, value, where in door.nested:
        yield Case(
            f"{named(path)}={value!r:.40}", encode(set_at(door.valid, path, value)), 400, where
        )


def body_cases(door: Door) -> Iterator[Case]:
    valid = encode(door.valid)
    extra = encode({**door.valid, **door.extra})
    yield Case("valid", valid, door.ok)
    if door.accepts_extras:
        yield Case("extra fields are passed on", extra, door.ok)
    else:
        yield Case("extra field", extra, 400, next(iter(door.extra)))
    yield Case("malformed", valid[:-3], 400, "")
    yield Case("empty", b"", 400, "")
    yield Case("not an object", b"[1, 2]", 400, "request body")
    yield Case("a string", b'"hi"', 400, "request body")
    yield Case("invalid UTF-8", valid.replace(b'"hi"', b'"\xff\xfe"', 1), 400, "")
    yield Case("NaN", valid[:-1] + b', "temperature": NaN}', 400, "")
    yield Case("too large a number", valid[:-1] + b', "temperature": 1e400}', 400, "temperature")
    yield Case("10,000 nested arrays", encode({**door.valid, "deep": DEEP}), 400, "")
    yield Case(
        "over max_body_bytes", valid[:-1] + b', "pad": "' + b"x" * MAX_BODY_BYTES + b'"}', 413, ""
    )
    yield Case("huge array within the limit", huge(door, 20_000), door.ok)
    yield Case("huge array over the limit", huge(door, 60_000), 413, "")


def huge(door: Door, count: int) -> bytes:
    if door is RESPONSES:
        return encode({**door.valid, "input": [USER] * count})
    return encode({**door.valid, "messages": [USER] * count})


def error_of(door: Door, payload: Any) -> tuple[str, str | None, str | None]:
    """The message, code and param of an error body, after checking its shape."""
    if door.shape == "anthropic":
        assert set(payload) == {"type", "error"} and payload["type"] == "error", payload
        assert set(payload["error"]) == {"type", "message"}, payload
        assert payload["error"]["type"] in ("invalid_request_error", "request_too_large")
        return str(payload["error"]["message"]), None, None
    error = payload["error"]
    assert set(payload) == {"error"}, payload
    if door.shape == "openai":
        assert set(error) == {"message", "type", "param", "code"}, payload
        assert error["type"] == "invalid_request_error", payload
        return str(error["message"]), error["code"], error["param"]
    assert set(error) == {"code", "message"}, payload
    return str(error["message"]), error["code"], None


async def answer(relay: Relay, door: Door, case: Case) -> str | None:
    """What is wrong with the answer to `case`, or None."""
    headers = {"Content-Type": "application/json"}
    async with relay.http.post(relay.url(door.path), data=case.body, headers=headers) as response:
        text = await response.text()
        if response.status != case.status:
            return f"status {response.status}, wanted {case.status}: {text[:300]}"
        if case.named is None:
            return None
        if response.content_type != "application/json" or "Traceback" in text:
            return f"not a JSON error: {text[:300]}"
        message, code, param = error_of(door, json.loads(text))
        if not message.startswith(case.named):
            return f"message does not start with {case.named!r}: {message!r}"
        field_error = code in ("invalid_request", "unsupported_parameter")
        if door.shape == "openai" and field_error and not str(param).startswith(case.named):
            return f"param {param!r} is not {case.named!r}"
        return None


async def answers(relay: Relay, door: Door, cases: Iterator[Case]) -> list[str]:
    return [
        f"{case.name}: {problem}" for case in cases if (problem := await answer(relay, door, case))
    ]


@pytest.mark.parametrize("door", DOORS, ids=[door.name for door in DOORS])
async def test_every_field_wrong_is_a_4xx_naming_its_path(relay_server: Relay, door: Door) -> None:
    failures = await answers(relay_server, door, field_cases(door))
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("door", DOORS, ids=[door.name for door in DOORS])
async def test_bodies_that_are_not_valid_json_objects_are_4xx(
    relay_server: Relay, door: Door
) -> None:
    failures = await answers(relay_server, door, body_cases(door))
    assert not failures, "\n".join(failures)


def test_the_table_covers_every_kind_of_mistake() -> None:
    for door in DOORS:
        cases = list(field_cases(door)) + list(body_cases(door))
        assert len(cases) > 60, door.name
        assert {case.status for case in cases} >= {400, 413, door.ok}


# --- the error shapes, as the official SDKs read them ---------------------------------


async def test_the_openai_sdk_reads_code_param_and_type_from_chat(relay_server: Relay) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await relay_server.openai_sdk().chat.completions.create(
            model=FAST_MOCK,
            messages=[{"content": "hi"}],  # type: ignore[list-item]
        )
    error = refused.value
    assert (error.code, error.param, error.type) == (
        "invalid_request",
        "messages[0].role",
        "invalid_request_error",
    )
    assert isinstance(error.body, dict) and error.body["message"] == (
        "messages[0].role: required;"
        " allowed: 'system', 'developer', 'user', 'assistant', 'tool', 'function'"
    )


async def test_the_openai_sdk_reads_an_unsupported_n(relay_server: Relay) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await relay_server.openai_sdk().chat.completions.create(
            model=FAST_MOCK,
            messages=[USER],
            n=3,  # type: ignore[list-item]
        )
    assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "n")


async def test_the_openai_sdk_reads_an_unknown_model(relay_server: Relay) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await relay_server.openai_sdk().chat.completions.create(
            model="gpt-nothing",
            messages=[USER],  # type: ignore[list-item]
        )
    assert (refused.value.code, refused.value.param) == ("unknown_model", "model")


async def test_the_anthropic_sdk_reads_anthropics_error_shape(relay_server: Relay) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        await relay_server.anthropic_sdk().messages.create(
            model=FAST_MOCK,
            max_tokens=0,
            messages=[USER],  # type: ignore[list-item]
        )
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: expected `int` >= 1"},
    }


# --- a whole Anthropic answer whose tool call was cut by max_tokens -------------------


class CutToolCall(Provider):
    """Stops inside a tool call's arguments, as an upstream out of tokens does."""

    def check_model(self, model: str) -> None:
        return None

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[ProviderItem, None]:
        yield ToolCall(0, "toolu_1", "search", '{"query": "rivers of Fra')
        yield UsageReport(3, 50)
        yield Finish("length")


async def test_a_cut_tool_call_is_a_tool_use_with_what_its_input_holds(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(with_providers={"mock": CutToolCall()})
    message = await relay.anthropic_sdk().messages.create(
        model="mock",
        max_tokens=50,
        messages=[USER],  # type: ignore[list-item]
    )
    assert message.stop_reason == "max_tokens"
    [block] = message.content
    assert block.type == "tool_use" and block.input == {"query": "rivers of Fra"}
