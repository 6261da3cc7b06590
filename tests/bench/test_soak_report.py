"""The soak's report: its figures, its text and markdown, and the doc section it rewrites;
and the readers' pure parts (what a reader takes from a stream, tracebacks in a log)."""

from __future__ import annotations

import time

import pytest

from bench.soak import frames, report
from bench.soak.logscan import count_levels, record_time, tracebacks_in
from bench.soak.traces import (
    Answer,
    Connection,
    Fault,
    LogEvent,
    ReaderTrace,
    RssSample,
    SessionTrace,
    SoakRun,
    Violation,
)
from relay.vocabulary import session_tag

T0 = time.mktime((2026, 12, 2, 2, 0, 0, 0, 0, -1))
SESSION = "s_" + "B" * 22


def small_run() -> SoakRun:
    run = SoakRun(T0, T0 + 120, 75, 10, "mock:tokens=200,tps=50", 256 * 2**20, "abc1234")
    done = SessionTrace(SESSION, "native", T0 + 1, "relay-a")
    done.log = [LogEvent(1, "status"), LogEvent(2, "delta", text="hi"), LogEvent(3, "done")]
    resumed = ReaderTrace("native", [1, 2, 3], "hi", "done")
    resumed.connections = [
        Connection("relay-a", T0 + 1, T0 + 2, "deliberate", 200),
        Connection("relay-b", T0 + 2, T0 + 3, "eof", 200),
        Connection("relay-a", T0 + 3, T0 + 4, "terminal", 200),
    ]
    done.readers = [resumed]
    lost = SessionTrace("s_" + "C" * 22, "openai", T0 + 2, "relay-b")
    lost.log = [LogEvent(1, "status"), LogEvent(2, "error", code="generation_lost")]
    lost.readers = [ReaderTrace("openai", [2], "", "error", [Connection("relay-b", T0 + 2)])]
    run.sessions = [done, lost]
    run.answers = [
        Answer(T0 + 5, "POST", "POST /v1/sessions", 400, "relay-a", "invalid_json", True),
        Answer(T0 + 6, "POST", "POST /v1/sessions", 503, "relay-a", "draining"),
    ]
    run.bad_bodies = 1
    run.faults = [Fault("drain", "relay-a", T0 + 10, T0 + 17.5, exit_status=0)]
    run.rss = [RssSample("relay-a", T0, 80 * 2**20), RssSample("relay-a", T0 + 2, 90 * 2**20)]
    run.error_lines = {"relay-b.log": 2}
    run.exit_statuses = {"nginx": 0, "relay-a": 0, "relay-b": -15}
    return run


def test_the_figures_count_what_the_run_recorded() -> None:
    rows = dict(report.figures(small_run(), [], 0))
    assert rows["date"] == time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(T0))
    assert rows["duration"] == "120 s (load 75 s, 10 clients, `mock:tokens=200,tps=50`)"
    assert rows["sessions"] == "2: native 1, openai 1"
    assert rows["outcomes"] == "done 1, error:generation_lost 1"
    assert rows["events"] == "5"
    assert rows["readers"] == "2: native 1, openai 1"
    assert rows["resumes"] == (
        "2: 1 after a planned hang-up, 1 after a cut stream, 0 after a refused request"
    )
    assert rows["bad bodies"] == "1 sent, 1 got a 4xx"
    assert rows["other non-2xx answers"] == "503 draining 1"
    assert rows["faults injected"] == "1: drain relay-a at +10 s (back in 7.5 s, exit 0)"
    assert rows["exit statuses at the end"] == "nginx 0, relay-a 0, relay-b -15"
    assert rows["ERROR lines in logs"] == "relay-b.log 2"
    assert rows["relay RSS, max"] == "relay-a 90 MiB (bound 256 MiB)"
    assert rows["violations"] == "0"


def test_violations_are_counted_by_kind_and_listed_with_the_sessions_tag() -> None:
    violations = [
        Violation("cut", SESSION, "native stream from relay-b ended eof", T0 + 3),
        Violation("cut", SESSION, "again", T0 + 4),
        Violation("traceback", "relay-a.log", "line 3: … OSError", None),
    ]
    rows = report.figures(small_run(), violations, 1)
    assert dict(rows)["violations"] == "3: cut 2, traceback 1"
    assert dict(rows)["tracebacks in logs"] == "0, 1 explained by a Redis fault"
    section = report.markdown(rows, violations, T0)
    assert "| violations | 3: cut 2, traceback 1 |" in section
    assert f"- +3 s cut: {SESSION} ({session_tag(SESSION)}): native stream" in section
    assert "- traceback: relay-a.log: line 3: … OSError" in section
    printed = report.text(rows, violations, T0)
    assert printed.splitlines()[0].startswith("date ")
    assert printed.splitlines()[-1] == "traceback: relay-a.log: line 3: … OSError"


def test_a_table_cell_never_holds_a_pipe() -> None:
    rows = [("sessions", "a | b")]
    assert "| sessions | a / b |" in report.markdown(rows, [], T0)


def test_the_doc_section_is_replaced_whole_so_a_rerun_replaces_the_last_report() -> None:
    doc = f"# Reliability\n\nintro\n\n{report.BEGIN}\nold table\n{report.END}\n\nafter\n"
    once = report.replace_section(doc, "| figure | value |\n")
    assert once == (
        f"# Reliability\n\nintro\n\n{report.BEGIN}\n| figure | value |\n{report.END}\n\nafter\n"
    )
    assert report.replace_section(once, "new\n") == report.replace_section(doc, "new\n")


def test_a_doc_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="soak:begin"):
        report.replace_section("# Reliability\n", "table\n")


def test_the_doc_has_its_markers() -> None:
    text = report.DOC_PATH.read_text()
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1


# --- what a reader takes from a stream -------------------------------------------------


def reading(kind: str, budget: int | None = None) -> tuple[ReaderTrace, frames.StreamReading]:
    reader = ReaderTrace(kind)
    connection = Connection("relay-a", T0)
    reader.connections.append(connection)
    return reader, frames.StreamReading(reader, connection, budget)


def test_a_native_stream_gives_every_id_its_text_and_the_terminal() -> None:
    reader, stream = reading("native")
    body = (
        b"retry: 1000\n\nid: 1\nevent: status\ndata: {}\n\n: ping\n\n"
        b'id: 2\nevent: delta\ndata: {"text":"Hi"}\n\nid: 3\nevent: de'
    )
    assert stream.feed(body) == ""
    assert stream.feed(b'lta\ndata: {"text":" there"}\n\nid: 4\nevent: done\ndata: {}\n\n') == (
        "terminal"
    )
    assert (reader.ids, reader.text, reader.terminal) == ([1, 2, 3, 4], "Hi there", "done")


def test_text_counts_only_once_the_message_with_its_events_id_arrives() -> None:
    reader, stream = reading("anthropic")
    start = b'event: message_start\ndata: {"type":"message_start"}\n\n'
    delta = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta",'
        b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    )
    assert stream.feed(start + delta) == ""
    assert reader.text == "" and reader.ids == []  # a cut here resumes before event 2
    assert stream.feed(b"id: 2\n" + delta) == ""
    assert (reader.ids, reader.text) == ([2], "HiHi")
    stop = b'id: 3\nevent: message_stop\ndata: {"type":"message_stop"}\n\n'
    assert stream.feed(stop) == "terminal" and reader.terminal == "done"


def test_a_planned_hang_up_comes_after_the_budget_of_messages() -> None:
    reader, stream = reading("openai", budget=2)
    chunk = b'id: %d\ndata: {"choices":[{"delta":{"content":"a"}}]}\n\n'
    assert stream.feed(chunk % 1) == ""
    assert stream.feed(chunk % 2 + chunk % 3) == "deliberate"
    assert (reader.ids, reader.text) == ([1, 2], "aa")


def test_an_in_band_error_without_an_id_is_not_the_sessions_end() -> None:
    reader, stream = reading("native")
    assert stream.feed(b'event: error\ndata: {"code":"internal_error"}\n\n') == ""
    assert reader.terminal == ""
    assert "in-band error" in reader.connections[0].detail


@pytest.mark.parametrize(
    ("data", "taken"),
    [
        (b"[DONE]", frames.Taken(terminal="done")),
        (b'{"error":{"type":"cancelled","code":null}}', frames.Taken(terminal="cancelled")),
        (b'{"error":{"type":"upstream_error","code":"x"}}', frames.Taken(terminal="error")),
        (b'{"choices":[{"delta":{"role":"assistant"}}]}', frames.Taken()),
        (b'{"choices":[],"usage":{}}', frames.Taken()),
    ],
)
def test_openai_chunks(data: bytes, taken: frames.Taken) -> None:
    from bench.wire import Frame

    assert frames.openai(Frame(0.0, 1, "message", data)) == taken


def test_the_error_code_of_any_front_doors_answer() -> None:
    assert frames.error_code(b'{"error":{"code":"draining","message":"m"}}') == "draining"
    anthropic = b'{"type":"error","error":{"type":"overloaded_error","message":"x"}}'
    assert frames.error_code(anthropic) == ""
    shutting = b'{"type":"error","error":{"type":"x","message":"this instance is shutting down"}}'
    assert frames.error_code(shutting) == "draining"
    assert frames.error_code(b"<html>502 Bad Gateway</html>") == ""


def test_a_native_replay_becomes_the_log() -> None:
    body = (
        b'retry: 1000\n\nid: 1\nevent: delta\ndata: {"text":"a"}\n\n'
        b'id: 2\nevent: error\ndata: {"code":"generation_lost","message":"m"}\n\n'
    )
    assert frames.log_events(body) == [
        LogEvent(1, "delta", text="a"),
        LogEvent(2, "error", code="generation_lost"),
    ]


# --- tracebacks in a log ------------------------------------------------------------------

LOG = """\
2026-12-02 02:00:01,250 INFO aiohttp.access: 127.0.0.1 "GET /healthz HTTP/1.1" 200
2026-12-02 02:00:02,500 ERROR relay.runner: the generation of #abc failed
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/redis/asyncio/connection.py", line 1, in read
    raise ConnectionError("Connection closed by server.")
redis.exceptions.ConnectionError: Connection closed by server.

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/relay/relay/store/redis/boundary.py", line 9, in call
relay.errors.StoreUnavailable: the event store is unreachable
2026-12-02 02:00:03,000 ERROR aiohttp.server: Error handling request
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/aiohttp/web_protocol.py", line 1, in start
ConnectionError: Connection lost
2026-12-02 02:00:04,000 WARNING relay.leases: late
"""


def test_each_traceback_belongs_to_the_record_before_it() -> None:
    found = tracebacks_in(LOG, "relay-a.log")
    assert [(tb.line, tb.through_redis) for tb in found] == [(3, True), (14, False)]
    assert found[0].headline.endswith("the generation of #abc failed")
    assert found[0].exception == "relay.errors.StoreUnavailable: the event store is unreachable"
    assert found[0].at == pytest.approx(T0 + 2.5)
    assert found[1].exception == "ConnectionError: Connection lost"
    assert found[1].at == pytest.approx(T0 + 3)


def test_a_traceback_without_a_record_has_no_time() -> None:
    (found,) = tracebacks_in("Traceback (most recent call last):\nValueError: x\n", "up.log")
    assert (found.at, found.headline, found.exception) == (None, "", "ValueError: x")


def test_records_are_counted_by_level() -> None:
    assert count_levels(LOG, "ERROR") == 2
    assert count_levels(LOG, "WARNING") == 1
    assert record_time("  File x") is None
