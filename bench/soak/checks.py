"""The soak's verdict: every session, reader, answer, log and memory sample it recorded,
checked against what relay promises. Pure code, no I/O.

What a fault excuses, and for how long: a fault's window runs from `EARLY_S` before its
signal to `GRACE_S` after its target answered again. Within it, and only for its target:
- a relay's drain or kill may cut the streams it served (a reader then resumes), and
  nginx may answer 502 (or 504) itself for a request that was in flight to it;
- a drain makes that relay answer 503 `draining`; it may end the generations it ran
  with `cancelled` (reason `shutdown`) when they outlast `drain_timeout_s`;
- a kill may end the generations it ran with `error` `generation_lost` (within the
  lease TTL; the session's time does not matter, only that it started before the kill);
- a Redis freeze or restart may cut streams, make relays answer 503 `store_unavailable`,
  and log tracebacks whose frames pass through the redis client library.
Everything else is a violation: any other 5xx, an unexpected 4xx, a bad body that was
accepted, a session whose ids skip or whose terminal event is missing, doubled or not
last, a reader whose text differs from the snapshot, a traceback, a drained process that
did not exit 0, and a relay whose resident memory went over the bound.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from bench.soak.traces import (
    TERMINAL_TYPES,
    Answer,
    Connection,
    Fault,
    LogEvent,
    ReaderTrace,
    RssSample,
    SessionTrace,
    SoakRun,
    Traceback,
    Violation,
)

EARLY_S = 1.0
GRACE_S = 10.0
RELAY_FAULTS = ("drain", "kill")
REDIS_FAULTS = ("freeze", "redis-restart")
CUT_ENDINGS = ("eof", "stalled", "failed")
STATUS_OF_TERMINAL = {"done": "completed", "error": "failed", "cancelled": "cancelled"}


# --- fault windows -------------------------------------------------------------------------


def covering(faults: Iterable[Fault], at: float, kinds: Sequence[str], target: str = "") -> bool:
    """Whether a fault of one of `kinds` (on `target`, if given) was under way at `at`."""
    return any(
        fault.kind in kinds
        and (not target or fault.target == target)
        and fault.started_at - EARLY_S <= at <= fault.recovered_at + GRACE_S
        for fault in faults
    )


def _relay_fault_at(faults: Sequence[Fault], at: float, relay: str) -> bool:
    """A relay fault on `relay`, or on any relay when nginx answered (`relay` is "")."""
    return covering(faults, at, RELAY_FAULTS, relay)


# --- one session ---------------------------------------------------------------------------


def outcome_of(log: Sequence[LogEvent]) -> str:
    """`done`, `cancelled:REASON`, `error:CODE`, or `unended` without a terminal event."""
    if not log or log[-1].type not in TERMINAL_TYPES:
        return "unended"
    last = log[-1]
    return last.type if last.type == "done" else f"{last.type}:{last.code}"


def check_session(trace: SessionTrace, faults: Sequence[Fault]) -> list[Violation]:
    if trace.fetch_error:
        return [_violation("unreadable", trace, trace.fetch_error)]
    found = _check_log(trace) + _check_snapshot(trace)
    explained = _explain_outcome(trace, faults)
    found += [] if explained is None else [explained]
    for reader in trace.readers:
        found += check_reader(trace, reader, faults)
    return found


def _check_log(trace: SessionTrace) -> list[Violation]:
    ids = [event.id for event in trace.log]
    found = []
    if ids != list(range(1, len(ids) + 1)):
        found.append(_violation("ids", trace, f"log ids are not 1…{len(ids)}: {_ids(ids)}"))
    terminals = [event for event in trace.log if event.type in TERMINAL_TYPES]
    if len(terminals) != 1 or trace.log[-1] is not terminals[0]:
        where = ", ".join(f"{e.type}@{e.id}" for e in terminals) or "none"
        found.append(_violation("terminal", trace, f"terminal events: {where}; last id {ids[-1:]}"))
    return found


def _check_snapshot(trace: SessionTrace) -> list[Violation]:
    found = []
    logged = "".join(event.text for event in trace.log if event.type == "delta")
    if logged != trace.snapshot_text:
        found.append(_violation("snapshot", trace, _text_difference(logged, trace.snapshot_text)))
    last_id = trace.log[-1].id if trace.log else 0
    status = STATUS_OF_TERMINAL.get(trace.log[-1].type, "running") if trace.log else "running"
    if trace.snapshot_status != status or trace.snapshot_last_event_id != last_id:
        detail = (
            f"snapshot says {trace.snapshot_status} at event {trace.snapshot_last_event_id}; "
            f"the log ends {status} at {last_id}"
        )
        found.append(_violation("snapshot", trace, detail))
    return found


def _explain_outcome(trace: SessionTrace, faults: Sequence[Fault]) -> Violation | None:
    """None if the way the session ended is correct behaviour, else why it is not."""
    outcome = outcome_of(trace.log)
    if outcome == "done" or (outcome == "cancelled:client" and trace.cancelled_at):
        return None
    if outcome in ("cancelled:shutdown", "error:generation_lost"):
        kind = "drain" if outcome == "cancelled:shutdown" else "kill"
        if _fault_after(faults, kind, trace.created_on, trace.created_at):
            return None
        why = f"ended {outcome}, but its instance {trace.created_on} had no {kind} after it began"
        return _violation("outcome", trace, why)
    return _violation("outcome", trace, f"ended {outcome} ({_tail(trace.log)})")


def _fault_after(faults: Sequence[Fault], kind: str, target: str, after: float) -> bool:
    return any(f.kind == kind and f.target == target and f.started_at >= after for f in faults)


# --- one reader -------------------------------------------------------------------------


def check_reader(
    trace: SessionTrace, reader: ReaderTrace, faults: Sequence[Fault]
) -> list[Violation]:
    found = [
        _cut(trace, reader, c)
        for c in reader.connections
        if c.ended in CUT_ENDINGS and not _excused(c, faults)
    ]
    if reader.gave_up:
        return [*found, _violation("reader", trace, f"{reader.kind} reader: {reader.gave_up}")]
    found += _check_reader_ids(trace, reader)
    if reader.text != trace.snapshot_text:
        difference = _text_difference(reader.text, trace.snapshot_text)
        found.append(_violation("text", trace, f"{reader.kind} reader: {difference}"))
    expected = outcome_of(trace.log).partition(":")[0].replace("unended", "")
    if reader.terminal != expected:
        got = reader.terminal or "no terminal"
        found.append(
            _violation("reader", trace, f"{reader.kind} reader saw {got}, the log ends {expected}")
        )
    return found


def _check_reader_ids(trace: SessionTrace, reader: ReaderTrace) -> list[Violation]:
    ids = reader.ids
    if reader.kind in ("native", "slow"):
        ok = ids == list(range(1, len(ids) + 1))
    else:  # a wire format: only an event's last frame has an id, and status events none
        ok = all(a < b for a, b in itertools.pairwise(ids))
    last = trace.log[-1].id if trace.log else 0
    if ok and ids[-1:] == [last]:
        return []
    detail = f"{reader.kind} reader got ids {_ids(ids)}; the log ends at {last}"
    return [_violation("reader ids", trace, detail)]


def _cut(trace: SessionTrace, reader: ReaderTrace, connection: Connection) -> Violation:
    where = connection.instance or "nginx"
    detail = (
        f"[{trace.scenario} on {trace.created_on}] {reader.kind} stream from {where} ended "
        f"{connection.ended} without a terminal event"
        + (f": {connection.detail}" if connection.detail else "")
    )
    return Violation("cut", trace.id, detail, connection.ended_at)


def _excused(connection: Connection, faults: Sequence[Fault]) -> bool:
    """A cut during a fault of the relay that served it, or of Redis."""
    at = connection.ended_at
    return _relay_fault_at(faults, at, connection.instance) or covering(faults, at, REDIS_FAULTS)


# --- answers, logs, memory, processes ----------------------------------------------------


def check_answer(answer: Answer, faults: Sequence[Fault]) -> Violation | None:
    """None if a non-2xx answer (or a bad body's answer) is what relay documents."""
    if answer.status >= 500 and _documented_5xx(answer, faults):
        return None
    if answer.expected_4xx and 400 <= answer.status < 500:
        return None
    what = f"{answer.route} → {answer.status} {answer.code}".rstrip()
    where = f" from {answer.instance or 'nginx'}" + (f": {answer.body!r}" if answer.body else "")
    if answer.expected_4xx:
        return Violation("bad body", answer.route, f"a bad body got {what}{where}", answer.at)
    kind = "no answer" if not answer.status else "5xx" if answer.status >= 500 else "4xx"
    return Violation(kind, answer.route, what + where, answer.at)


def _documented_5xx(answer: Answer, faults: Sequence[Fault]) -> bool:
    if answer.status == 503 and answer.code == "draining":
        return covering(faults, answer.at, ("drain",), answer.instance)
    if answer.status == 503 and answer.code == "store_unavailable":
        return covering(faults, answer.at, REDIS_FAULTS)
    if answer.status in (502, 504) and not answer.instance:
        return _relay_fault_at(faults, answer.at, "")
    return False


def check_tracebacks(
    tracebacks: Iterable[Traceback], faults: Sequence[Fault]
) -> tuple[int, list[Violation]]:
    """How many tracebacks the Redis faults explain, and a violation for each other one."""
    explained, found = 0, []
    for tb in tracebacks:
        if tb.through_redis and tb.at is not None and covering(faults, tb.at, REDIS_FAULTS):
            explained += 1
            continue
        detail = f"line {tb.line}: {tb.headline} … {tb.exception}"
        found.append(Violation("traceback", tb.log, detail, tb.at))
    return explained, found


def check_rss(samples: Iterable[RssSample], bound_bytes: int) -> list[Violation]:
    highest: dict[str, RssSample] = {}
    for sample in samples:
        best = highest.get(sample.process)
        if best is None or sample.bytes > best.bytes:
            highest[sample.process] = sample
    return [
        Violation(
            "rss",
            name,
            f"resident memory {s.bytes / 2**20:.0f} MiB > bound {bound_bytes / 2**20:.0f} MiB",
            s.at,
        )
        for name, s in sorted(highest.items())
        if s.bytes > bound_bytes
    ]


def check_exits(faults: Iterable[Fault]) -> list[Violation]:
    """A drained relay and a stopped Redis exit 0."""
    return [
        Violation("exit", fault.target, f"{fault.kind}: exit status {fault.exit_status}")
        for fault in faults
        if fault.kind in ("drain", "redis-restart") and fault.exit_status != 0
    ]


# --- wording ----------------------------------------------------------------------------


def _violation(kind: str, trace: SessionTrace, detail: str) -> Violation:
    where = f"[{trace.scenario} on {trace.created_on}]"
    return Violation(kind, trace.id, f"{where} {detail}", trace.created_at)


def _ids(ids: Sequence[int]) -> str:
    """A list of ids, short: runs of consecutive ids as `a…b`."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return "[" + ", ".join(f"{r[0]}…{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs) + "]"


def _text_difference(got: str, expected: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
    at = min(len(got), len(expected)) if at is None else at
    return (
        f"text differs from the snapshot's at character {at} "
        f"(lengths {len(got)} and {len(expected)}): {got[at : at + 30]!r} vs "
        f"{expected[at : at + 30]!r}"
    )


def _tail(log: Sequence[LogEvent]) -> str:
    return ", ".join(f"{e.type}@{e.id}{':' + e.code if e.code else ''}" for e in log[-3:])


def check_final_exits(statuses: dict[str, int | None]) -> list[Violation]:
    """At the end every relay and Redis, SIGTERMed, exit 0."""
    return [
        Violation("exit", name, f"final SIGTERM: exit status {status}")
        for name, status in statuses.items()
        if (name.startswith("relay") or name == "redis") and status != 0
    ]


# --- the whole run -------------------------------------------------------------------------


def check_run(run: SoakRun) -> tuple[list[Violation], int]:
    """Every violation of the run, in time order, and how many tracebacks the faults explain."""
    found: list[Violation] = []
    for trace in run.sessions:
        found += check_session(trace, run.faults)
    found += [v for a in run.answers if (v := check_answer(a, run.faults)) is not None]
    explained, unexplained = check_tracebacks(run.tracebacks, run.faults)
    found += unexplained
    found += check_rss(run.rss, run.rss_bound_bytes)
    found += check_exits(run.faults) + check_final_exits(run.exit_statuses)
    found.sort(key=lambda v: v.at if v.at is not None else run.ended_at)
    return found, explained
