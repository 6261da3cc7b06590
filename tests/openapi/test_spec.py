"""The OpenAPI document says what relay serves: every route the app serves is in it with
the same method and path template, every path in it is served, and what it shows as an
example is what relay accepts. Pure code: the app is built, never started."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from relay.app import create_app
from relay.config import load_settings
from relay.openapi import spec
from relay.openapi.docs_page import operations
from relay.openapi.schemas import components, family_name
from relay.wire.decoding import Block, decode, family_members

DOCUMENT = spec.build()
BODY_TYPES = {schema["$ref"]: body for body, schema in components(spec.BODIES)[0].items()}


def served_routes() -> set[tuple[str, str]]:
    """(method, path template) of every route, without HEAD (aiohttp adds it to each
    GET) and the optional demo page and its static files, which are not part of the API."""
    app = create_app(load_settings(None, environ={}))
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and route.handler.__name__ not in ("demo_page", "static_file")
    }


def described_routes() -> set[tuple[str, str]]:
    return {(method, path) for method, path, _ in operations(DOCUMENT)}


def test_every_served_route_is_described() -> None:
    missing = served_routes() - described_routes()
    assert not missing, f"served but not in the OpenAPI document: {sorted(missing)}"


def test_every_described_route_is_served() -> None:
    unserved = described_routes() - served_routes()
    assert not unserved, f"in the OpenAPI document but not served: {sorted(unserved)}"


def test_the_comparison_sees_templates_and_skips_only_head_and_the_demo_page() -> None:
    routes = served_routes()
    assert {
        ("get", "/v1/sessions/{session_id}/events"),
        ("delete", "/v1/sessions/{session_id}"),
        ("post", "/v1/responses/{response_id}/cancel"),
        ("get", "/docs"),
    } <= routes
    assert not any(method == "head" or path == "/" for method, path in routes)


def test_the_document_is_openapi_3_1_with_unique_operation_ids() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    ids = [op["operationId"] for _, _, op in operations(DOCUMENT)]
    assert len(ids) == len(set(ids)) == len(described_routes())
    tags = {tag["name"] for tag in DOCUMENT["tags"]}
    assert all(set(op["tags"]) <= tags for _, _, op in operations(DOCUMENT))


def request_bodies() -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Each example with the struct it is (of a `oneOf`, the first variant)."""
    for method, path, op in operations(DOCUMENT):
        if "requestBody" in op:
            content = op["requestBody"]["content"]["application/json"]
            schema = content["schema"].get("oneOf", [content["schema"]])[0]
            yield f"{method} {path}", content["example"], BODY_TYPES[schema["$ref"]]


@pytest.mark.parametrize(("where", "example", "body_type"), list(request_bodies()))
def test_each_example_body_decodes_as_its_struct(where: str, example: Any, body_type: Any) -> None:
    assert isinstance(decode(msgspec.json.encode(example), body_type), body_type), where


def test_every_body_the_front_doors_decode_has_an_example() -> None:
    assert sorted(where for where, _, _ in request_bodies()) == [
        "post /v1/chat/completions",
        "post /v1/messages",
        "post /v1/responses",
        "post /v1/sessions",
        "post /v1/sessions/{session_id}/events",
        "post /v1/sessions/{session_id}/signals",
        "post /v1/ui/chat",
    ]


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"].rsplit("/", 1)[-1]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def test_every_reference_names_a_component() -> None:
    named = set(DOCUMENT["components"]["schemas"])
    assert set(references(DOCUMENT)) <= named


RELAY_FAMILIES = [f for f in Block.__subclasses__() if f.__module__.startswith("relay.")]


@pytest.mark.parametrize("family", RELAY_FAMILIES, ids=lambda f: f.__name__)
def test_each_block_family_lists_the_members_its_decoder_accepts(family: type[Block]) -> None:
    schema = DOCUMENT["components"]["schemas"][family_name(family)]
    members, unmodelled = family_members(family)
    variants = schema["anyOf"]
    refs = {variant["$ref"].rsplit("/", 1)[-1] for variant in variants if "$ref" in variant}
    assert {name.rsplit(".", 1)[-1] for name in refs} == {m.__name__ for m in members.values()}
    others = [variant for variant in variants if "$ref" not in variant]
    assert len(others) == (0 if unmodelled is None else 1)


def test_only_families_of_the_bodies_are_described() -> None:
    class Elsewhere(Block):
        """A family no body holds (as tests define them)."""

    assert family_name(Elsewhere) not in spec.build()["components"]["schemas"]


def test_a_default_tag_makes_the_tag_optional_in_its_member() -> None:
    message_item = DOCUMENT["components"]["schemas"]["MessageItem"]
    assert "type" not in message_item["required"]
    assert message_item["properties"]["type"] == {"enum": ["message"]}


def test_structs_that_share_a_name_are_told_apart_by_module() -> None:
    names = set(DOCUMENT["components"]["schemas"])
    assert {"chat_request.UserMessage", "messages_request.UserMessage"} <= names
    assert not any(name.startswith("relay.") for name in names)


SESSION_STARTING = {
    "createSession",
    "createChatCompletion",
    "createMessage",
    "createResponse",
    "sendChatMessages",
}


def test_the_operations_that_start_a_session_answer_429_with_retry_after() -> None:
    described = {
        operation["operationId"]: operation["responses"]
        for path in DOCUMENT["paths"].values()
        for operation in path.values()
    }
    answering_429 = {name for name, answers in described.items() if "429" in answers}
    assert answering_429 == SESSION_STARTING
    for name in SESSION_STARTING:
        assert "rate_limited" in described[name]["429"]["description"]
        assert "Retry-After" in described[name]["429"]["headers"]
    assert described["createSession"]["429"]["headers"]["Retry-After"]["required"] is True
