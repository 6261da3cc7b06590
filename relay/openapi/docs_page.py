"""The docs page: the OpenAPI document as one self-contained HTML page. Pure code, no I/O.

No script and nothing fetched (relay often runs where there is no internet): the page is
rendered here, once, from the document: per operation its parameters, body and answers,
then every schema with its fields. Types link to their schemas.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

Schema = Mapping[str, Any]

METHODS = ("get", "post", "put", "patch", "delete")
_CODE = re.compile(r"`([^`]+)`")

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d2330; background: #fafbfc; }
header, main, nav { max-width: 980px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #d8dde6; padding-bottom: 4px; }
nav ul { columns: 2; padding-left: 18px; }
article { background: #fff; border: 1px solid #d8dde6; border-radius: 6px; padding: 4px 16px 12px;
  margin: 16px 0; }
h3 { font-size: 17px; } h4 { margin: 12px 0 4px; font-size: 14px; color: #4a5468; }
code { font: 13px ui-monospace, monospace; background: #eef1f5; padding: 1px 4px;
  border-radius: 3px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: 4px 8px; border-top: 1px solid #e6e9ef; }
th { color: #4a5468; font-weight: 600; }
.method { display: inline-block; min-width: 58px; text-align: center; color: #fff;
  border-radius: 4px; font: 600 12px ui-monospace, monospace; padding: 3px 6px; margin-right: 6px; }
.get { background: #2f7d4f; } .post { background: #2d5fa8; } .delete { background: #a83232; }
.path { font-size: 16px; background: none; } .required { color: #a83232; font-size: 12px; }
"""


def render(spec: Schema) -> str:
    """The page for `spec`, an OpenAPI 3.1 document as JSON's dicts."""
    info = spec["info"]
    body = [
        f"<header><h1>{_text(info['title'])} API</h1><p>{_prose(info['description'])}</p>",
        '<p>The machine-readable description: <a href="/openapi.json">/openapi.json</a></p>'
        "</header>",
        _nav(spec),
        "<main>",
        *_tag_sections(spec),
        _schemas_section(spec["components"]["schemas"]),
        "</main>",
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        # An empty icon: else the browser asks relay for /favicon.ico.
        '<link rel="icon" href="data:,">'
        f"<title>{_text(info['title'])} API</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )


def operations(spec: Schema) -> Iterable[tuple[str, str, Schema]]:
    """(method, path, operation) in the document's order."""
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


# --- operations ---------------------------------------------------------------------------


def _nav(spec: Schema) -> str:
    links = [
        f'<li><a href="#{op["operationId"]}">{method.upper()} {_text(path)}</a>'
        f" — {_text(op['summary'])}</li>"
        for method, path, op in operations(spec)
    ]
    return f"<nav><h2>Endpoints</h2><ul>{''.join(links)}</ul></nav>"


def _tag_sections(spec: Schema) -> list[str]:
    sections = []
    for tag in spec["tags"]:
        tagged = [
            _operation(method, path, op)
            for method, path, op in operations(spec)
            if tag["name"] in op["tags"]
        ]
        heading = f"<h2>{_text(tag['name'])}</h2><p>{_prose(tag['description'])}</p>"
        sections.append(f"<section>{heading}{''.join(tagged)}</section>")
    return sections


def _operation(method: str, path: str, op: Schema) -> str:
    title = (
        f'<h3><span class="method {method}">{method.upper()}</span>'
        f'<code class="path">{_text(path)}</code> {_text(op["summary"])}</h3>'
    )
    parts = [title, f"<p>{_prose(op['description'])}</p>" if "description" in op else ""]
    if op.get("parameters"):
        parts.append(_parameters(op["parameters"]))
    if "requestBody" in op:
        parts.append(_request_body(op["requestBody"]))
    parts.append(_answers(op["responses"]))
    return f'<article id="{op["operationId"]}">{"".join(parts)}</article>'


def _parameters(parameters: Iterable[Schema]) -> str:
    rows = [
        _row(
            f"<code>{_text(p['name'])}</code>{_required(p.get('required', False))}",
            _text(p["in"]),
            type_label(p["schema"]),
            _prose(p.get("description", "")),
        )
        for p in parameters
    ]
    return _table("Parameters", ("name", "in", "type", "description"), rows)


def _request_body(body: Schema) -> str:
    content = body["content"]["application/json"]
    example = _text(_json(content.get("example")))
    return (
        f"<h4>Request body</h4><p><code>application/json</code>: {type_label(content['schema'])}"
        f"</p><p>Example: <code>{example}</code></p>"
    )


def _answers(answers: Schema) -> str:
    rows = [
        _row(
            f"<code>{_text(status)}</code>",
            _prose(answered["description"]),
            _contents(answered.get("content", {})),
            ", ".join(f"<code>{_text(name)}</code>" for name in answered.get("headers", {})),
        )
        for status, answered in answers.items()
    ]
    return _table("Answers", ("status", "when", "body", "headers"), rows)


def _contents(content: Schema) -> str:
    return "<br>".join(
        f"<code>{_text(media)}</code> {type_label(item['schema'])}"
        for media, item in content.items()
    )


# --- schemas ------------------------------------------------------------------------------


def _schemas_section(components: Schema) -> str:
    articles = [_schema(name, components[name]) for name in sorted(components, key=str.lower)]
    return f"<section><h2>Schemas</h2>{''.join(articles)}</section>"


def _schema(name: str, schema: Schema) -> str:
    parts = [f"<h3>{_text(name)}</h3>"]
    if "description" in schema:
        parts.append(f"<p>{_prose(schema['description'])}</p>")
    if "properties" in schema:
        parts.append(_fields(schema))
    elif union := schema.get("anyOf") or schema.get("oneOf"):
        items = "".join(f"<li>{type_label(member)}</li>" for member in union)
        parts.append(f"<h4>One of</h4><ul>{items}</ul>")
    else:
        parts.append(f"<p>{type_label(schema)}</p>")
    return f'<article id="schema-{_text(name)}">{"".join(parts)}</article>'


def _fields(schema: Schema) -> str:
    required = set(schema.get("required", ()))
    rows = [
        _row(
            f"<code>{_text(field)}</code>{_required(field in required)}",
            type_label(value),
            _prose(value.get("description", "")),
        )
        for field, value in schema["properties"].items()
    ]
    closed = "; no other fields" if schema.get("additionalProperties") is False else ""
    return _table("Fields" + closed, ("field", "type", "description"), rows)


def type_label(schema: Schema) -> str:
    """A schema as a short HTML phrase: `integer (≥ 1, ≤ 2147483647)`, `string | null`."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return f'<a href="#schema-{_text(name)}">{_text(name)}</a>'
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " | ".join(type_label(member) for member in schema[union])
    if "const" in schema:
        return f"<code>{_text(_json(schema['const']))}</code>"
    if "enum" in schema:
        return " | ".join(f"<code>{_text(_json(value))}</code>" for value in schema["enum"])
    if schema.get("type") == "array":
        items = type_label(schema.get("items", {}))
        return f"array of {items}{_constraints(schema)}"
    return f"{_text(str(schema.get('type', 'any')))}{_constraints(schema)}"


def _constraints(schema: Schema) -> str:
    bounds = [
        f"{label} {_text(_json(schema[key]))}"
        for key, label in (
            ("minimum", "≥"),
            ("maximum", "≤"),
            ("minLength", "length ≥"),
            ("minItems", "items ≥"),
            ("maxItems", "items ≤"),
        )
        if key in schema
    ]
    if "pattern" in schema:
        bounds.append(f"matching <code>{_text(schema['pattern'])}</code>")
    if "contentSchema" in schema:
        bounds.append("JSON: " + type_label(schema["contentSchema"]))
    if "not" in schema:
        bounds.append("not " + type_label(schema["not"]))
    for field, value in schema.get("properties", {}).items():
        bounds.append(f"<code>{_text(field)}</code>: {type_label(value)}")
    return f" ({', '.join(bounds)})" if bounds else ""


# --- HTML ---------------------------------------------------------------------------------


def _table(title: str, columns: Iterable[str], rows: list[str]) -> str:
    head = "".join(f"<th>{_text(column)}</th>" for column in columns)
    return f"<h4>{_text(title)}</h4><table><tr>{head}</tr>{''.join(rows)}</table>"


def _row(*cells: str) -> str:
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _required(required: bool) -> str:
    return ' <span class="required">required</span>' if required else ""


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _prose(text: str) -> str:
    """Escaped text whose `backticks` become code."""
    return _CODE.sub(r"<code>\1</code>", _text(text))


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
