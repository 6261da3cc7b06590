"""Request bodies into typed structs, with errors that name the path, the value's
problem and what is allowed. Pure code, no I/O.

msgspec decodes the structs; this module adds two things to it:
- *block families*, for lists of JSON objects told apart by their `type` where a format
  has more types than relay models (Anthropic's server-tool blocks, vendors' content
  parts). A family is a subclass of `Block`; each tagged struct subclassing it is a type
  relay reads, and an untagged subclass, if the family has one, keeps every other type as
  the client sent it (the family is *open*); without one, other types are refused with the
  list of those allowed (it is *closed*). msgspec hands such objects to `block_hook`.
- `invalid_body`, which rewrites msgspec's `Object missing required field `role` - at
  `$.messages[0]`` as `messages[0].role: required, one of 'system', 'user', …`, listing
  the tags of a tagged union or the values of a Literal at that path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, TypeVar

import msgspec
import msgspec.inspect as mi

from relay.vocabulary import Passthrough, UpstreamKind

T = TypeVar("T")

DEFAULT_CODE = "invalid_request"

# Constraints the formats share. No model generates 2**31 tokens: the bound keeps absurd
# limits (2**63, 10**30) from reaching an upstream, or an encoder that cannot hold them.
TokenLimit = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
ModelName = Annotated[str, msgspec.Meta(min_length=1)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class InvalidBody(ValueError):
    """A request body relay refuses: `path` names the field (`messages[0].role`, or
    `request body`), `problem` what is wrong and what is allowed. `code` is
    `invalid_request`, or `unsupported_parameter` for a valid request relay cannot honour."""

    def __init__(self, path: str, problem: str, code: str = DEFAULT_CODE) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.code = code


class NotJson(ValueError):
    """The body is not JSON (malformed, not UTF-8, or nested too deeply)."""


def decode(body: bytes, body_type: type[T]) -> T:
    """`body` as a `body_type`; raises `InvalidBody` or `NotJson`."""
    try:
        return _decoder(body_type).decode(body)
    except msgspec.ValidationError as exc:
        raise invalid_body(body_type, str(exc)) from None
    except msgspec.DecodeError as exc:
        raise NotJson(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise NotJson("the request body nests too deeply") from None


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _decoder(body_type: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(body_type)
    if decoder is None:
        decoder = _decoders[body_type] = msgspec.json.Decoder(body_type, dec_hook=block_hook)
    return decoder


_fields_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def body_fields(body: bytes) -> dict[str, msgspec.Raw]:
    """The top-level fields of a body that `decode` accepted, each as its raw JSON."""
    try:
        return _fields_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:  # `decode` would have said first
        raise NotJson(f"the request body is not a JSON object: {exc}") from None


def raw(value: object) -> msgspec.Raw:
    """A value as raw JSON, for a field relay adds to the ones a client sent."""
    return msgspec.Raw(msgspec.json.encode(value))


def passthrough(
    kind: UpstreamKind, fields: dict[str, msgspec.Raw], interpreted: frozenset[str]
) -> Passthrough | None:
    """The fields relay does not interpret, for an upstream of `kind`; None if none."""
    passed = {name: value for name, value in fields.items() if name not in interpreted}
    return Passthrough(kind, passed) if passed else None


# --- block families ------------------------------------------------------------------


class Block:
    """Base of every block family (see the module docstring)."""

    __slots__ = ()
    tag_field: ClassVar[str] = "type"
    # The type of an object that has none (Anthropic's client tools, Responses' messages).
    default_tag: ClassVar[str | None] = None


class Unmodelled:
    """A block of a type relay does not model, as the client sent it (an open family's
    subclass for other types is one of these). Not a struct: encoded, it is `fields`."""

    __slots__ = ("fields", "type")

    def __init__(self, type: str, fields: dict[str, Any]) -> None:
        self.type = type
        self.fields = fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unmodelled) and (self.type, self.fields) == (
            other.type,
            other.fields,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.type!r}, {self.fields!r})"


def as_dict(block: object) -> dict[str, Any]:
    """A decoded block as JSON's dict; an unmodelled one, also inside it, as it came."""
    converted: dict[str, Any] = msgspec.to_builtins(block, enc_hook=_unmodelled_fields)
    return converted


def _unmodelled_fields(value: object) -> dict[str, Any]:
    if isinstance(value, Unmodelled):
        return value.fields
    raise TypeError(f"cannot encode {type(value).__name__}")


def block_hook(kind: type, value: Any) -> Any:
    """msgspec's `dec_hook`: a decoded JSON object as a member of the family `kind`."""
    if not (isinstance(kind, type) and issubclass(kind, Block)):
        raise TypeError(f"unsupported type {kind!r}")
    if not isinstance(value, dict):
        raise TypeError(f"Expected `object`, got `{json_type(value)}`")
    return _family_member(kind, value)


def _family_member(family: type[Block], value: dict[str, Any]) -> Any:
    members, unmodelled = family_members(family)
    tag = value.get(family.tag_field)
    if tag is None and family.default_tag is not None:
        tag = family.default_tag
        value = {key: item for key, item in value.items() if key != family.tag_field}
    if not isinstance(tag, str):
        problem = "required" if tag is None else f"expected `str`, got `{json_type(tag)}`"
        raise ValueError(problem + _allowed(members) + at(family.tag_field))
    member = members.get(tag)
    if member is not None:
        return _converted(value, member)
    if unmodelled is None:
        raise ValueError(f"got {tag!r}" + _allowed(members) + at(family.tag_field))
    return unmodelled(type=tag, fields=value)


def _allowed(members: dict[str, type[Any]]) -> str:
    """Written only for an error: a body may hold 100,000 blocks that need none."""
    return "; allowed: " + ", ".join(repr(name) for name in members)


def _converted(value: dict[str, Any], member: type[Any]) -> Any:
    try:
        return msgspec.convert(value, member, dec_hook=block_hook)
    except msgspec.ValidationError as exc:
        invalid = invalid_body(member, str(exc), root="")
        # Raised again with its path relative to the member, which msgspec extends.
        raise ValueError(invalid.problem + at(invalid.path)) from None


Members = tuple[dict[str, type[Any]], type[Unmodelled] | None]
_families: dict[type[Block], Members] = {}


def family_members(family: type[Block]) -> Members:
    """The family's members by tag, and its struct for other types (None: closed)."""
    if family not in _families:
        _families[family] = _members_found(family)
    return _families[family]


def _members_found(family: type[Block]) -> Members:
    members: dict[str, type[Any]] = {}
    unmodelled = None
    for member in _descendants(family):
        if issubclass(member, Unmodelled):
            unmodelled = member
            continue
        info = mi.type_info(member)
        if isinstance(info, mi.StructType) and isinstance(info.tag, str):
            members[info.tag] = member
    return members, unmodelled


def _descendants(family: type) -> list[type[Any]]:
    children: list[type[Any]] = family.__subclasses__()
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def json_type(value: object) -> str:
    """How msgspec names the JSON type of a decoded value."""
    names = {dict: "object", list: "array", str: "str", bool: "bool", int: "int", float: "float"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# --- errors that name the path ----------------------------------------------------------

_AT = re.compile(r" - at `\$([^`]*)`")
_MISSING = re.compile(r"Object missing required field `([^`]*)`")
_UNKNOWN = re.compile(r"Object contains unknown field `([^`]*)`")
_INVALID = re.compile(r"Invalid (?:enum )?value (.*)")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def invalid_body(body_type: type[Any], message: str, root: str = "request body") -> InvalidBody:
    """msgspec's error message as `path: problem; allowed: …`. A message raised through
    block families holds one `- at` per level, innermost first."""
    path = "".join(reversed(_AT.findall(message))).removeprefix(".")
    detail = _AT.sub("", message)
    if match := _MISSING.fullmatch(detail) or _UNKNOWN.fullmatch(detail):
        path = _joined(path, match.group(1))
    if _UNKNOWN.fullmatch(detail):
        problem = f"unknown field; the fields are {_field_names(body_type, path)}"
    elif _MISSING.fullmatch(detail):
        problem = "required" + allowed_suffix(body_type, path)
    elif match := _INVALID.fullmatch(detail):
        problem = f"got {match.group(1)}" + allowed_suffix(body_type, path)
    else:
        problem = detail[:1].lower() + detail[1:] + allowed_suffix(body_type, path, only=True)
    return InvalidBody(path or root, problem)


def allowed_suffix(body_type: type[Any], path: str, *, only: bool = False) -> str:
    """`; allowed: 'a', 'b'` for the tags of a union or the values of a Literal at `path`;
    `only`: just where nothing but those values is allowed."""
    node = _walk(_type_info(body_type), _segments(path))
    if isinstance(node, tuple) or (not only and isinstance(node, mi.Type)):
        values = node if isinstance(node, tuple) else _literals(node)
        return "; allowed: " + ", ".join(repr(value) for value in values) if values else ""
    return ""


def at(path: str) -> str:
    """msgspec's suffix naming the path of an error (`path` as relay names it)."""
    return f" - at `$.{path}`" if path else " - at `$`"


def _joined(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _field_names(body_type: type[Any], path: str) -> str:
    parent = _walk(_type_info(body_type), _segments(path)[:-1])
    structs = _structs(parent) if isinstance(parent, mi.Type) else []
    return ", ".join(field.encode_name for struct in structs for field in struct.fields)


_type_infos: dict[type[Any], mi.Type] = {}


def _type_info(body_type: type[Any]) -> mi.Type:
    if body_type not in _type_infos:
        _type_infos[body_type] = mi.type_info(body_type)
    return _type_infos[body_type]


def _segments(path: str) -> list[str | int]:
    return [
        name if name else (-1 if index == "..." else int(index))
        for name, index in _SEGMENT.findall("." + path)
    ]


Allowed = tuple[Any, ...]


def _walk(node: mi.Type | Allowed | None, segments: list[str | int]) -> mi.Type | Allowed | None:
    """The type at the end of a path; a tag field gives its union's tags, a type that is
    nothing but Literals (and null) their values."""
    for segment in segments:
        if not isinstance(node, mi.Type):
            return None
        node = _field(node, segment) if isinstance(segment, str) else _item(node)
    if isinstance(node, mi.Type) and all(
        isinstance(member, mi.LiteralType | mi.NoneType) for member in _members_of(node)
    ):
        return _literals(node)
    return node


def _literals(node: mi.Type) -> Allowed:
    literals = [member for member in _members_of(node) if isinstance(member, mi.LiteralType)]
    return tuple(value for literal in literals for value in literal.values)


def _field(node: mi.Type, name: str) -> mi.Type | Allowed | None:
    structs = _structs(node)
    tags = tuple(struct.tag for struct in structs if struct.tag_field == name)
    if tags:
        return tags
    types = [
        field.type for struct in structs for field in struct.fields if field.encode_name == name
    ]
    # Members of a union that type the field differently: the path does not say which.
    return types[0] if types and all(t == types[0] for t in types) else None


def _item(node: mi.Type) -> mi.Type | None:
    for member in _members_of(node):
        if isinstance(member, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
            return member.item_type
        if isinstance(member, mi.DictType):
            return member.value_type
    return None


def _structs(node: mi.Type) -> list[mi.StructType]:
    return [member for member in _members_of(node) if isinstance(member, mi.StructType)]


def _members_of(node: mi.Type) -> tuple[mi.Type, ...]:
    return node.types if isinstance(node, mi.UnionType) else (node,)
