"""A soak's figures and violations as text and as the generated part of
docs/reliability.md (the section between `<!-- soak:begin -->` and `<!-- soak:end -->`,
rewritten whole by every run). Pure code, except `write_doc`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.soak.checks import CUT_ENDINGS, outcome_of
from bench.soak.traces import Fault, SoakRun, Violation
from relay.vocabulary import session_tag

DOC_PATH = Path(__file__).resolve().parent.parent.parent / "docs" / "reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
LISTED_VIOLATIONS = 60  # the doc lists this many; the JSON results hold them all
MIB = 2**20

Rows = list[tuple[str, str]]


def figures(run: SoakRun, violations: Sequence[Violation], explained: int) -> Rows:
    return [
        ("date", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(run.started_at))),
        ("commit", run.commit or "unknown"),
        ("duration", _duration(run)),
        *_session_rows(run),
        *_answer_rows(run),
        ("faults injected", _faults(run.faults, run.started_at)),
        ("exit statuses at the end", _counts_in_order(run.exit_statuses) or "none"),
        ("tracebacks in logs", f"{len(run.tracebacks)}, {explained} explained by a Redis fault"),
        ("ERROR lines in logs", _counts(run.error_lines) or "none"),
        ("relay RSS, max", _rss(run)),
        ("violations", _violation_counts(violations)),
    ]


def _duration(run: SoakRun) -> str:
    return (
        f"{run.ended_at - run.started_at:.0f} s (load {run.load_s:.0f} s, "
        f"{run.concurrency} clients, `{run.model}`)"
    )


def _session_rows(run: SoakRun) -> Rows:
    readers = [reader for trace in run.sessions for reader in trace.readers]
    endings = Counter(c.ended for reader in readers for c in reader.connections)
    return [
        ("sessions", f"{len(run.sessions)}: {_counts(Counter(t.scenario for t in run.sessions))}"),
        ("outcomes", _counts(Counter(outcome_of(t.log) for t in run.sessions))),
        ("events", str(sum(len(trace.log) for trace in run.sessions))),
        ("readers", f"{len(readers)}: {_counts(Counter(r.kind for r in readers))}"),
        (
            "resumes",
            f"{sum(r.resumes for r in readers)}: {endings['deliberate']} after a planned "
            f"hang-up, {sum(endings[e] for e in CUT_ENDINGS)} after a cut stream, "
            f"{endings['status']} after a refused request",
        ),
    ]


def _answer_rows(run: SoakRun) -> Rows:
    bad = [a for a in run.answers if a.expected_4xx]
    refused = Counter(f"{a.status} {a.code}".strip() for a in run.answers if not a.expected_4xx)
    return [
        (
            "bad bodies",
            f"{run.bad_bodies} sent, {sum(400 <= a.status < 500 for a in bad)} got a 4xx",
        ),
        ("other non-2xx answers", _counts(refused) or "none"),
    ]


def _faults(faults: Iterable[Fault], started_at: float) -> str:
    described = []
    for fault in faults:
        status = "" if fault.exit_status is None else f", exit {fault.exit_status}"
        note = f" {fault.note}" if fault.note else ""
        described.append(
            f"{fault.kind}{note} {fault.target} at +{fault.started_at - started_at:.0f} s "
            f"(back in {fault.recovered_at - fault.started_at:.1f} s{status})"
        )
    return f"{len(described)}: " + "; ".join(described) if described else "none"


def _rss(run: SoakRun) -> str:
    highest: dict[str, int] = {}
    for sample in run.rss:
        highest[sample.process] = max(highest.get(sample.process, 0), sample.bytes)
    shown = ", ".join(f"{name} {size / MIB:.0f} MiB" for name, size in sorted(highest.items()))
    return f"{shown or 'no samples'} (bound {run.rss_bound_bytes / MIB:.0f} MiB)"


def _violation_counts(violations: Sequence[Violation]) -> str:
    if not violations:
        return "0"
    return f"{len(violations)}: {_counts(Counter(v.kind for v in violations))}"


def _counts_in_order(values: dict[str, int | None]) -> str:
    return ", ".join(f"{name} {value}" for name, value in values.items())


def _counts(counter: Counter[str] | dict[str, int]) -> str:
    ordered = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {count}" for name, count in ordered)


# --- text and markdown ---------------------------------------------------------------------


def violation_line(violation: Violation, started_at: float) -> str:
    when = "" if violation.at is None else f"+{violation.at - started_at:.0f} s "
    subject = violation.subject
    if subject.startswith("s_"):
        subject = f"{subject} ({session_tag(subject)})"
    return f"{when}{violation.kind}: {subject}: {violation.detail}"


def text(rows: Rows, violations: Sequence[Violation], started_at: float) -> str:
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines += [violation_line(v, started_at) for v in violations]
    return "\n".join(lines)


def markdown(rows: Rows, violations: Sequence[Violation], started_at: float) -> str:
    lines = ["", "| figure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value.replace('|', '/')} |" for name, value in rows]
    if violations:
        lines += ["", f"Violations (the first {LISTED_VIOLATIONS} in time order):", ""]
        shown = violations[:LISTED_VIOLATIONS]
        lines += [f"- {violation_line(v, started_at)}".replace("|", "/") for v in shown]
    return "\n".join(lines) + "\n"


def replace_section(document: str, section: str) -> str:
    if BEGIN not in document or END not in document:
        raise ValueError(f"no {BEGIN} … {END} section to rewrite")
    head, _, rest = document.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + BEGIN + "\n" + section + END + tail


def write_doc(section: str, path: Path = DOC_PATH) -> None:
    path.write_text(replace_section(path.read_text(), section))
