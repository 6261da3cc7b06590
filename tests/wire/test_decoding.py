"""Decoding request bodies: block families (open and closed, a default type) and errors
that name the path, the problem and what is allowed."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import pytest

from relay.wire.decoding import (
    Block,
    InvalidBody,
    NotJson,
    Unmodelled,
    as_dict,
    body_fields,
    decode,
    invalid_body,
    passthrough,
)


class Shape(Block):
    """An open family; a shape without a `type` is a circle."""

    default_tag = "circle"


class Circle(msgspec.Struct, Shape, tag="circle"):
    radius: float


class Group(msgspec.Struct, Shape, tag="group"):
    shapes: list[Shape]


class OtherShape(Unmodelled, Shape):
    pass


class Pet(Block):
    """A closed family, told apart by `kind`."""

    tag_field = "kind"


class Cat(msgspec.Struct, Pet, tag="cat", tag_field="kind"):
    lives: int = 9


class Dog(msgspec.Struct, Pet, tag="dog", tag_field="kind"):
    name: str


class Drawing(msgspec.Struct, forbid_unknown_fields=True):
    shapes: list[Shape]
    pets: list[Pet] = []
    mode: Literal["fast", "slow"] | None = None
    size: int | None = None


def refusal(body: bytes) -> str:
    with pytest.raises(InvalidBody) as refused:
        decode(body, Drawing)
    return str(refused.value)


def test_known_types_decode_to_their_struct_and_others_are_kept() -> None:
    drawing = decode(
        b'{"shapes": [{"type": "circle", "radius": 1}, {"radius": 2},'
        b' {"type": "group", "shapes": [{"type": "star", "points": 5}]}]}',
        Drawing,
    )
    assert drawing.shapes[:2] == [Circle(1), Circle(2)]
    group = drawing.shapes[2]
    assert isinstance(group, Group)
    assert group.shapes == [OtherShape("star", {"type": "star", "points": 5})]
    assert as_dict(group) == {"type": "group", "shapes": [{"type": "star", "points": 5}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"shapes": [5]}', "shapes[0]: expected `object`, got `int`"),
        (
            b'{"shapes": [{"type": 5}]}',
            "shapes[0].type: expected `str`, got `int`; allowed: 'circle', 'group'",
        ),
        (b'{"shapes": [{"radius": "big"}]}', "shapes[0].radius: expected `float`, got `str`"),
        (b'{"shapes": [{"type": "group"}]}', "shapes[0].shapes: required"),
        (
            b'{"shapes": [{"type": "group", "shapes": [{"type": "group", "shapes": [{}]}]}]}',
            "shapes[0].shapes[0].shapes[0].radius: required",
        ),
        (
            b'{"shapes": [], "pets": [{"name": "Rex"}]}',
            "pets[0].kind: required; allowed: 'cat', 'dog'",
        ),
        (
            b'{"shapes": [], "pets": [{"kind": "fish"}]}',
            "pets[0].kind: got 'fish'; allowed: 'cat', 'dog'",
        ),
        (b'{"shapes": [], "pets": [{"kind": "dog"}]}', "pets[0].name: required"),
        (b'{"shapes": [], "mode": "medium"}', "mode: got 'medium'; allowed: 'fast', 'slow'"),
        (
            b'{"shapes": [], "mode": 5}',
            "mode: expected `str | null`, got `int`; allowed: 'fast', 'slow'",
        ),
        (
            b'{"shapes": [], "colour": "red"}',
            "colour: unknown field; the fields are shapes, pets, mode, size",
        ),
        (b"{}", "shapes: required"),
        (b"[]", "request body: expected `object`, got `array`"),
    ],
)
def test_errors_name_the_path_and_what_is_allowed(body: bytes, message: str) -> None:
    assert refusal(body) == message


def test_an_error_names_its_path_apart_from_its_problem() -> None:
    refused = invalid_body(Drawing, "Invalid enum value 'x' - at `$.mode`")
    assert (refused.path, refused.problem, refused.code) == (
        "mode",
        "got 'x'; allowed: 'fast', 'slow'",
        "invalid_request",
    )


@pytest.mark.parametrize(
    "body",
    [b'{"shapes": [', b'{"shapes": ["\xff"]}', b'{"shapes": NaN}'],
    ids=["cut", "invalid-utf-8", "nan"],
)
def test_what_is_not_json_is_said_so(body: bytes) -> None:
    with pytest.raises(NotJson):
        decode(body, Drawing)


def test_deep_nesting_inside_a_block_is_not_json_either() -> None:
    nested = b"[" * 10_000 + b"]" * 10_000
    with pytest.raises(NotJson, match="nests too deeply"):
        decode(b'{"shapes": [{"type": "star", "points": ' + nested + b"}]}", Drawing)


def test_passthrough_keeps_what_is_not_interpreted() -> None:
    fields = body_fields(b'{"shapes": [], "size": 3, "extra": {"a": [1, 2]}}')
    kept = passthrough("openai", fields, frozenset({"shapes"}))
    assert kept is not None and kept.kind == "openai"
    decoded: dict[str, Any] = {name: msgspec.json.decode(raw) for name, raw in kept.fields.items()}
    assert decoded == {"size": 3, "extra": {"a": [1, 2]}}
    assert passthrough("anthropic", fields, frozenset(fields)) is None
