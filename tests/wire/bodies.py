"""Hypothesis strategies for request bodies, built from relay's typed structs, and
mutations of them.

`valid_bodies(Struct, overrides)` draws JSON objects that decode into `Struct`: each
field of the type msgspec's `inspect` says (bounds, Literals, tagged unions, block
families with their unknown types). `overrides` pins what the types cannot say (the model,
fields relay refuses for want of server state). `mutated` breaks a valid body: a field
deleted, replaced by any JSON value, one added, the bytes cut or garbled.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec.inspect as mi
from hypothesis import strategies as st

from relay.frontdoors.native import CreateSessionBody
from relay.wire.chat_request import ChatCompletionRequest
from relay.wire.decoding import Block, family_members
from relay.wire.messages_request import MessagesRequest
from relay.wire.responses_request import (
    FunctionCallOutputItem,
    InputFile,
    InputImage,
    ItemReference,
    ResponsesRequest,
    Tool,
)

Overrides = Mapping[Any, st.SearchStrategy[Any]]  # a struct, or (struct, field name)

JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def valid_bodies(body_type: type[Any], overrides: Overrides) -> st.SearchStrategy[dict[str, Any]]:
    return _Builder(overrides).of(mi.type_info(body_type))


def front_door_bodies(model: str) -> dict[str, st.SearchStrategy[dict[str, Any]]]:
    """Valid bodies for each front door, naming `model`: what the types say, less what
    relay refuses for reasons the types do not hold (n > 1, server-side state, hosted
    tools, images by file id, files by URL, images in a function's output, an input of
    reasoning items only)."""
    text_parts = st.lists(st.fixed_dictionaries({"type": st.just("input_text"), "text": st.text()}))
    schemas = st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=2)
    return {
        "native": valid_bodies(CreateSessionBody, {(CreateSessionBody, "model"): st.just(model)}),
        "chat": valid_bodies(
            ChatCompletionRequest,
            {
                (ChatCompletionRequest, "model"): st.just(model),
                (ChatCompletionRequest, "n"): st.none() | st.just(1),
            },
        ),
        "messages": valid_bodies(MessagesRequest, {(MessagesRequest, "model"): st.just(model)}),
        "responses": valid_bodies(
            ResponsesRequest,
            {
                (ResponsesRequest, "model"): st.just(model),
                (ResponsesRequest, "previous_response_id"): st.none(),
                (ResponsesRequest, "conversation"): st.none(),
                (ResponsesRequest, "prompt"): st.none(),
                Tool: st.fixed_dictionaries(
                    {"type": st.just("function"), "name": st.text(min_size=1, max_size=8)},
                    optional={"description": st.text(max_size=8), "parameters": schemas},
                ),
                InputImage: st.fixed_dictionaries(
                    {"type": st.just("input_image"), "image_url": st.text(max_size=8)},
                    optional={"detail": st.sampled_from(["auto", "low", "high"])},
                ),
                (InputFile, "file_url"): st.none(),
                (FunctionCallOutputItem, "output"): st.text(max_size=8) | text_parts,
                ItemReference: st.nothing(),
            },
        ).filter(_has_a_message),
    }


def _has_a_message(body: dict[str, Any]) -> bool:
    """Not only reasoning items, which relay drops (and then refuses the empty request)."""
    items = body["input"]
    return isinstance(items, str) or any(item.get("type") != "reasoning" for item in items)


class _Builder:
    def __init__(self, overrides: Overrides) -> None:
        self.overrides = overrides
        self.families: dict[type[Block], st.SearchStrategy[Any]] = {}

    def of(self, info: mi.Type) -> st.SearchStrategy[Any]:
        if isinstance(info, mi.StructType):
            return self.struct(info)
        if isinstance(info, mi.UnionType):
            return st.one_of([self.of(member) for member in info.types])
        if isinstance(info, mi.ListType):
            most = 3 if info.max_length is None else min(info.max_length, 3)
            return st.lists(self.of(info.item_type), min_size=info.min_length or 0, max_size=most)
        if isinstance(info, mi.DictType):
            return st.dictionaries(st.text(max_size=4), self.of(info.value_type), max_size=2)
        if isinstance(info, mi.CustomType) and issubclass(info.cls, Block):
            return self.family(info.cls)
        return _scalar(info)

    def struct(self, info: mi.StructType) -> st.SearchStrategy[dict[str, Any]]:
        if info.cls in self.overrides:
            return self.overrides[info.cls]
        required, optional = {}, {}
        for field in info.fields:
            key = (info.cls, field.name)
            strategy = self.overrides[key] if key in self.overrides else self.of(field.type)
            (required if field.required else optional)[field.encode_name] = strategy
        if info.tag_field is not None:
            required[info.tag_field] = st.just(info.tag)
        return st.fixed_dictionaries(required, optional=optional)

    def family(self, family: type[Block]) -> st.SearchStrategy[Any]:
        if family not in self.families:
            self.families[family] = st.deferred(lambda: self._members(family))
        return self.families[family]

    def _members(self, family: type[Block]) -> st.SearchStrategy[Any]:
        members, unmodelled = family_members(family)
        strategies = [self.struct(_struct_info(member)) for member in members.values()]
        if unmodelled is not None:
            strategies.append(_unknown_block(family.tag_field, set(members)))
        return st.one_of(strategies)


def _struct_info(cls: type[Any]) -> mi.StructType:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info


def _unknown_block(tag_field: str, known: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    tags = st.text(min_size=1, max_size=10).filter(lambda tag: tag not in known)
    extra = st.dictionaries(
        st.text(max_size=4).filter(lambda key: key != tag_field), JSON_VALUES, max_size=2
    )
    return st.builds(lambda tag, fields: {**fields, tag_field: tag}, tags, extra)


def _scalar(info: mi.Type) -> st.SearchStrategy[Any]:
    if isinstance(info, mi.StrType):
        return st.text(min_size=info.min_length or 0, max_size=max(info.min_length or 0, 8))
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.IntType):
        low = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else -1000)
        high = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else 1000)
        return st.integers(low, high)
    if isinstance(info, mi.FloatType):
        low = info.ge if info.ge is not None else -1000.0
        high = info.le if info.le is not None else 1000.0
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.AnyType):
        return JSON_VALUES
    raise NotImplementedError(f"no strategy for {info}")


# --- mutations -------------------------------------------------------------------------


def paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside `value`, its own included."""
    yield path
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        yield from paths(item, (*path, key))


@st.composite
def mutated(draw: st.DrawFn, bodies: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """A valid body with one thing broken (it may happen to stay valid)."""
    body = copy.deepcopy(draw(bodies))
    where = draw(st.sampled_from(list(paths(body))))
    kind = draw(st.sampled_from(["delete", "replace", "add", "cut", "garble"]))
    if kind in ("cut", "garble"):
        data = json.dumps(body).encode()
        at = draw(st.integers(0, len(data) - 1))
        if kind == "cut":
            return data[:at]
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    changed = _mutated(body, where, kind, draw(JSON_VALUES), draw(st.text(max_size=6)))
    return json.dumps(changed).encode()


def _mutated(body: Any, where: tuple[Any, ...], kind: str, value: Any, name: str) -> Any:
    if not where:
        return value if kind == "replace" else body
    parent = body
    for key in where[:-1]:
        parent = parent[key]
    if kind == "delete":
        del parent[where[-1]]
    elif kind == "replace":
        parent[where[-1]] = value
    elif isinstance(parent, dict):
        parent[name] = value
    else:
        parent.insert(where[-1], value)
    return body
