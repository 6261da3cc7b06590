"""The docs page rendered from the document: every operation and schema has its anchor,
the document's text is escaped, and backticks become code. Pure code."""

from __future__ import annotations

import re

from relay.openapi import spec
from relay.openapi.docs_page import operations, render, type_label

DOCUMENT = spec.build()
PAGE = render(DOCUMENT)


def test_every_operation_and_schema_has_an_anchor() -> None:
    anchors = set(re.findall(r' id="([^"]+)"', PAGE))
    assert {op["operationId"] for _, _, op in operations(DOCUMENT)} <= anchors
    assert {f"schema-{name}" for name in DOCUMENT["components"]["schemas"]} <= anchors


def test_every_link_on_the_page_has_its_target() -> None:
    anchors = set(re.findall(r' id="([^"]+)"', PAGE))
    targets = set(re.findall(r'href="#([^"]+)"', PAGE))
    assert targets <= anchors


def test_the_page_fetches_nothing() -> None:
    assert "<script" not in PAGE
    assert not re.search(r'(src|href)="(https?:)?//', PAGE)


def test_text_is_escaped_and_backticks_become_code() -> None:
    document = DOCUMENT | {"info": DOCUMENT["info"] | {"description": "<b>x</b> and `code`"}}
    page = render(document)
    assert "&lt;b&gt;x&lt;/b&gt; and <code>code</code>" in page
    assert "<b>x</b>" not in page


def test_type_labels_say_the_constraints() -> None:
    label = type_label({"type": "integer", "minimum": 1, "maximum": 2147483647})
    assert label == "integer (≥ 1, ≤ 2147483647)"
    items = type_label(
        {"type": "array", "items": {"$ref": "#/components/schemas/X"}, "minItems": 1}
    )
    assert items == 'array of <a href="#schema-X">X</a> (items ≥ 1)'
    assert type_label({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "string | null"
