"""The soak's verdict: per-session invariants, readers, answers, tracebacks, memory, exits."""

from __future__ import annotations

from bench.soak.checks import (
    check_answer,
    check_exits,
    check_final_exits,
    check_rss,
    check_run,
    check_session,
    check_tracebacks,
    outcome_of,
)
from bench.soak.traces import (
    Answer,
    Connection,
    Fault,
    LogEvent,
    ReaderTrace,
    RssSample,
    SessionTrace,
    SoakRun,
    Traceback,
)

T0 = 1_000.0  # the session starts; faults are placed around it
WORDS = ["Rivers", " run", " to", " the", " sea."]


def log(*terminal: LogEvent) -> list[LogEvent]:
    """status, five deltas, usage, then `terminal` (done by default), numbered from 1."""
    events = [LogEvent(0, "status")] + [LogEvent(0, "delta", text=w) for w in WORDS]
    events += [LogEvent(0, "usage"), *(terminal or [LogEvent(0, "done")])]
    for number, event in enumerate(events, 1):
        event.id = number
    return events


def reader(kind: str = "native", text: str = "".join(WORDS), ids: list[int] | None = None,
           terminal: str = "done", *connections: Connection) -> ReaderTrace:  # fmt: skip
    found = ReaderTrace(kind, ids=list(range(1, 9)) if ids is None else ids, text=text)
    found.terminal = terminal
    found.connections = list(connections) or [Connection("relay-b", T0, T0 + 4, "terminal", 200)]
    return found


def session(events: list[LogEvent] | None = None, *readers: ReaderTrace) -> SessionTrace:
    events = log() if events is None else events
    trace = SessionTrace("s_" + "A" * 22, "native", T0, "relay-a", list(readers) or [reader()])
    trace.log = events
    status = {"done": "completed", "error": "failed", "cancelled": "cancelled"}
    trace.snapshot_status = status.get(events[-1].type, "running")
    trace.snapshot_text = "".join(e.text for e in events if e.type == "delta")
    trace.snapshot_last_event_id = events[-1].id
    return trace


def kinds(trace: SessionTrace, faults: list[Fault] | None = None) -> list[str]:
    return [violation.kind for violation in check_session(trace, faults or [])]


# --- the log ----------------------------------------------------------------------------


def test_a_complete_session_read_to_its_end_has_no_violation() -> None:
    assert kinds(session()) == []


def test_a_gap_in_the_ids_is_a_violation() -> None:
    events = log()
    del events[3]
    trace = session(events, reader(ids=[e.id for e in events], text="".join(WORDS)))
    trace.snapshot_text = "".join(e.text for e in events if e.type == "delta")
    trace.readers[0].text = trace.snapshot_text
    found = check_session(trace, [])
    assert [v.kind for v in found] == ["ids", "reader ids"]
    assert "[1…3, 5…8]" in found[0].detail


def test_two_terminal_events_or_one_that_is_not_last_are_violations() -> None:
    doubled = log(LogEvent(0, "done"), LogEvent(0, "error", code="internal_error"))
    trace = session(doubled, reader(ids=list(range(1, 10)), terminal="error"))
    assert kinds(trace) == ["terminal", "outcome"]
    early = log()
    early.insert(2, LogEvent(0, "cancelled", code="client"))
    for number, event in enumerate(early, 1):
        event.id = number
    assert "terminal" in kinds(session(early, reader(ids=list(range(1, 10)))))


def test_a_log_without_a_terminal_event_is_unended() -> None:
    events = log()[:-1]
    assert outcome_of(events) == "unended"
    trace = session(events, reader(ids=list(range(1, 8)), terminal=""))
    assert kinds(trace) == ["terminal", "outcome"]


def test_a_snapshot_whose_text_or_status_differs_from_the_log_is_a_violation() -> None:
    trace = session()
    trace.snapshot_text = "Rivers run"
    trace.readers[0].text = "Rivers run"
    assert kinds(trace) == ["snapshot"]
    trace = session()
    trace.snapshot_status, trace.snapshot_last_event_id = "running", 7
    found = check_session(trace, [])
    assert [v.kind for v in found] == ["snapshot"]
    assert "running at event 7; the log ends completed at 8" in found[0].detail


def test_a_session_that_could_not_be_read_back_is_a_violation() -> None:
    trace = session()
    trace.fetch_error = "the snapshot got 404"
    assert kinds(trace) == ["unreadable"]


# --- how it ended -----------------------------------------------------------------------


def test_generation_lost_is_correct_only_after_a_kill_of_the_creating_instance() -> None:
    lost = LogEvent(0, "error", code="generation_lost")
    trace = session(log(lost), reader(terminal="error"))
    assert outcome_of(trace.log) == "error:generation_lost"
    assert kinds(trace, [Fault("kill", "relay-a", T0 + 2, T0 + 5)]) == []
    assert kinds(trace, [Fault("kill", "relay-b", T0 + 2, T0 + 5)]) == ["outcome"]
    assert kinds(trace, [Fault("kill", "relay-a", T0 - 10, T0 - 5)]) == ["outcome"]
    assert kinds(trace, [Fault("freeze", "redis", T0 + 2, T0 + 5)]) == ["outcome"]


def test_a_shutdown_cancel_is_correct_only_after_a_drain_of_the_creating_instance() -> None:
    shutdown = LogEvent(0, "cancelled", code="shutdown")
    trace = session(log(shutdown), reader(terminal="cancelled"))
    assert kinds(trace, [Fault("drain", "relay-a", T0 + 1, T0 + 8)]) == []
    assert kinds(trace, [Fault("kill", "relay-a", T0 + 1, T0 + 8)]) == ["outcome"]


def test_a_client_cancel_is_correct_only_when_the_soak_sent_delete() -> None:
    trace = session(log(LogEvent(0, "cancelled", code="client")), reader(terminal="cancelled"))
    assert kinds(trace) == ["outcome"]
    trace.cancelled_at = T0 + 1
    assert kinds(trace) == []


def test_any_other_error_is_a_violation_that_names_the_code() -> None:
    trace = session(log(LogEvent(0, "error", code="upstream_error")), reader(terminal="error"))
    found = check_session(trace, [])
    assert [v.kind for v in found] == ["outcome"]
    assert "ended error:upstream_error" in found[0].detail
    assert "[native on relay-a]" in found[0].detail


# --- readers ----------------------------------------------------------------------------


def test_a_reader_whose_assembled_text_differs_is_a_violation() -> None:
    trace = session(None, reader(text="Rivers run to the sea. sea."))
    found = check_session(trace, [])
    assert [v.kind for v in found] == ["text"]
    assert "at character 22" in found[0].detail


def test_a_native_reader_that_got_an_id_twice_or_not_the_last_is_a_violation() -> None:
    assert kinds(session(None, reader(ids=[1, 2, 3, 3, 4, 5, 6, 7, 8]))) == ["reader ids"]
    assert kinds(session(None, reader(ids=list(range(1, 8)), terminal=""))) == [
        "reader ids",
        "reader",
    ]


def test_a_front_door_reader_needs_increasing_ids_that_end_at_the_last() -> None:
    assert kinds(session(None, reader("anthropic", ids=[2, 3, 4, 5, 6, 8]))) == []
    assert kinds(session(None, reader("openai", ids=[2, 3, 3, 8]))) == ["reader ids"]


def test_a_reader_that_gave_up_is_a_violation() -> None:
    stuck = reader(terminal="")
    stuck.gave_up = "a resume after [4] got 404"
    found = check_session(session(None, stuck), [])
    assert [v.kind for v in found] == ["reader"]
    assert "got 404" in found[0].detail


def test_a_cut_is_excused_by_a_fault_of_the_instance_that_served_it_or_of_redis() -> None:
    cut = Connection("relay-b", T0, T0 + 2, "eof", 200)
    rest = Connection("relay-a", T0 + 2, T0 + 4, "terminal", 200)
    trace = session(None, reader("native", "".join(WORDS), None, "done", cut, rest))
    assert kinds(trace) == ["cut"]
    assert kinds(trace, [Fault("drain", "relay-b", T0 + 1, T0 + 6)]) == []
    assert kinds(trace, [Fault("drain", "relay-a", T0 + 1, T0 + 6)]) == ["cut"]
    assert kinds(trace, [Fault("freeze", "redis", T0 - 10, T0 - 7)]) == []  # within the grace
    assert kinds(trace, [Fault("freeze", "redis", T0 - 20, T0 - 15)]) == ["cut"]


def test_a_planned_hang_up_and_a_refused_resume_are_not_cuts() -> None:
    hang_up = Connection("relay-b", T0, T0 + 1, "deliberate", 200)
    refused = Connection("relay-b", T0 + 1, T0 + 1, "status", 503)
    rest = Connection("relay-a", T0 + 2, T0 + 4, "terminal", 200)
    trace = session(None, reader("native", "".join(WORDS), None, "done", hang_up, refused, rest))
    assert kinds(trace) == []
    assert trace.readers[0].resumes == 2


# --- answers ----------------------------------------------------------------------------


def answer(status: int, code: str = "", instance: str = "relay-a", bad: bool = False) -> Answer:
    return Answer(T0, "POST", "POST /v1/sessions", status, instance, code, bad)


DRAIN_A = Fault("drain", "relay-a", T0 - 2, T0 + 3)
FREEZE = Fault("freeze", "redis", T0 - 2, T0 + 1)
KILL_B = Fault("kill", "relay-b", T0 - 1, T0 + 2)


def test_503_draining_is_documented_only_from_the_draining_instance() -> None:
    assert check_answer(answer(503, "draining"), [DRAIN_A]) is None
    found = check_answer(answer(503, "draining", "relay-b"), [DRAIN_A])
    assert found is not None and found.kind == "5xx"
    assert found.detail == "POST /v1/sessions → 503 draining from relay-b"


def test_503_store_unavailable_is_documented_only_during_a_redis_fault() -> None:
    assert check_answer(answer(503, "store_unavailable"), [FREEZE]) is None
    assert check_answer(answer(503, "store_unavailable"), [DRAIN_A]) is not None


def test_a_502_from_nginx_is_documented_only_during_a_relay_fault() -> None:
    assert check_answer(answer(502, instance=""), [KILL_B]) is None
    assert check_answer(answer(502, instance=""), [FREEZE]) is not None
    assert check_answer(answer(502, instance="relay-a"), [KILL_B]) is not None


def test_other_answers_are_violations_by_their_kind() -> None:
    assert getattr(check_answer(answer(500, "internal_error"), [DRAIN_A]), "kind", "") == "5xx"
    assert getattr(check_answer(answer(404, "session_not_found"), []), "kind", "") == "4xx"
    assert getattr(check_answer(answer(0, instance=""), []), "kind", "") == "no answer"


def test_a_bad_body_must_get_a_4xx() -> None:
    assert check_answer(answer(400, "invalid_json", bad=True), []) is None
    assert check_answer(answer(413, "body_too_large", bad=True), []) is None
    accepted = check_answer(answer(201, bad=True), [])
    assert accepted is not None and accepted.kind == "bad body"
    assert check_answer(answer(503, "draining", bad=True), [DRAIN_A]) is None


# --- logs, memory, exits, the whole run ------------------------------------------------


def traceback(at: float | None, through_redis: bool) -> Traceback:
    return Traceback("relay-a.log", 12, at, "… ERROR relay.runner: x", "OSError: y", through_redis)


def test_only_redis_tracebacks_during_a_redis_fault_are_explained() -> None:
    explained, found = check_tracebacks(
        [
            traceback(T0, True),
            traceback(T0, False),
            traceback(T0 + 100, True),
            traceback(None, True),
        ],
        [FREEZE],
    )
    assert explained == 1
    assert [(v.kind, v.subject) for v in found] == [("traceback", "relay-a.log")] * 3
    assert found[0].detail == "line 12: … ERROR relay.runner: x … OSError: y"


def test_rss_over_the_bound_is_one_violation_per_relay_at_its_highest() -> None:
    samples = [
        RssSample("relay-a", T0, 100 * 2**20),
        RssSample("relay-a", T0 + 2, 300 * 2**20),
        RssSample("relay-a", T0 + 4, 280 * 2**20),
        RssSample("relay-b", T0, 120 * 2**20),
    ]
    found = check_rss(samples, 256 * 2**20)
    assert [(v.subject, v.at) for v in found] == [("relay-a", T0 + 2)]
    assert found[0].detail == "resident memory 300 MiB > bound 256 MiB"


def test_a_drain_or_a_final_stop_that_does_not_exit_0_is_a_violation() -> None:
    faults = [
        Fault("drain", "relay-a", T0, T0 + 1, exit_status=0),
        Fault("drain", "relay-b", T0, T0 + 1, exit_status=None),
        Fault("kill", "relay-a", T0, T0 + 1, exit_status=-9),
        Fault("redis-restart", "redis", T0, T0 + 1, exit_status=1),
    ]
    assert [v.subject for v in check_exits(faults)] == ["relay-b", "redis"]
    statuses = {"relay-a": 0, "relay-b": 1, "redis": 0, "nginx": 1, "upstream": None}
    assert [v.subject for v in check_final_exits(statuses)] == ["relay-b"]


def test_a_run_lists_every_violation_in_time_order() -> None:
    run = SoakRun(T0 - 10, T0 + 100, 90, 10, "mock", 256 * 2**20)
    late = session(log(LogEvent(0, "error", code="upstream_error")), reader(terminal="error"))
    late.created_at = T0 + 50
    run.sessions = [session(), late]
    run.answers = [answer(500, "internal_error")]
    run.tracebacks = [traceback(T0, True)]
    run.faults = [FREEZE]
    found, explained = check_run(run)
    assert [v.kind for v in found] == ["5xx", "outcome"]
    assert explained == 1
