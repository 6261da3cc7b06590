"""Logs name sessions by their tag, never by their id (a capability), checked in relay's
source: no log call, task name or exception message (which logs quote) is handed a
session id unless through `session_tag`. Answers to clients (`ApiError`) may name it:
the client sent it. tests/frontdoors/test_secrets.py checks the same at run time."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

RELAY = Path(__file__).parent.parent / "relay"
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
ANSWERS = {"ApiError"}  # exceptions answered to the client that sent the id


def holds_a_session_id(node: ast.AST) -> bool:
    """`session_id`, `x.session_id`, `record.id`: what relay's code calls a session id."""
    if isinstance(node, ast.Name):
        return node.id == "session_id"
    if isinstance(node, ast.Attribute):
        return node.attr == "session_id" or (
            node.attr == "id" and isinstance(node.value, ast.Name) and node.value.id == "record"
        )
    return False


def untagged(values: list[ast.expr]) -> Iterator[ast.AST]:
    """The session ids among `values`, or inside their f-strings, that are not tagged."""
    for value in values:
        parts = value.values if isinstance(value, ast.JoinedStr) else [value]
        for part in parts:
            inner = part.value if isinstance(part, ast.FormattedValue) else part
            if holds_a_session_id(inner):
                yield inner


def is_log_call(func: ast.expr) -> bool:
    return (
        isinstance(func, ast.Attribute)
        and func.attr in LOG_METHODS
        and isinstance(func.value, ast.Name)
        and func.value.id == "log"
    )


def offences(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if is_log_call(node.func):
            yield from ((n.lineno, "log call") for n in untagged(node.args))
        for keyword in node.keywords:
            if keyword.arg == "name":
                yield from ((n.lineno, "task name") for n in untagged([keyword.value]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            named = node.exc.func
            # An exception class's message, not a helper's arguments (it tags them itself).
            if not isinstance(named, ast.Name) or named.id in ANSWERS or named.id.islower():
                continue
            yield from ((n.lineno, "exception message") for n in untagged(node.exc.args))


def test_no_log_line_task_name_or_exception_names_a_session_by_its_id() -> None:
    found = [
        f"{path.relative_to(RELAY.parent)}:{line}: {what}"
        for path in sorted(RELAY.rglob("*.py"))
        for line, what in offences(ast.parse(path.read_text()))
    ]
    assert found == []


def test_the_check_finds_what_it_looks_for() -> None:
    source = """
log.info("session %s", session_id)
log.warning("x %s", record.id)
asyncio.create_task(run(), name=f"relay-{self.session_id}")
raise SessionEnded(f"session {record.id} has ended")
raise SessionNotFound(session_id)
log.info("session %s", session_tag(session_id))
raise ApiError(404, "session_not_found", f"session {session_id!r} does not exist")
raise _refusal(session_id)
"""
    assert [line for line, _ in offences(ast.parse(source))] == [2, 3, 4, 5, 6]
