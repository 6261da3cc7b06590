"""`python -m bench.compare BEFORE.json AFTER.json`: every target of issues 5 and 16 side
by side, as two saved runs measured it (each run's own figures, as its report states them).

A target one of the runs did not measure shows a dash in that column. The markdown table
it prints is what docs/performance.md quotes for a before/after of one change.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from bench import floor_report
from bench.report import NONE, Result, Row, evaluate, markdown_table


def targets(results: Result) -> list[Result]:
    """The targets of issue 5 and of issue 16 that the run measured."""
    return evaluate(results) + floor_report.evaluate(results["scenarios"])


def compare(before: Result, after: Result) -> str:
    """A markdown table: each target, what each run measured, whether the later met it."""
    old = {target["goal"]: target for target in targets(before)}
    new = {target["goal"]: target for target in targets(after)}
    goals = list(new) + [goal for goal in old if goal not in new]
    rows = [_row(goal, old.get(goal), new.get(goal)) for goal in goals]
    heading = [
        "target",
        f"before ({before['meta']['git']})",
        f"after ({after['meta']['git']})",
        "",
    ]
    return markdown_table(heading, rows)


def _row(goal: str, old: Result | None, new: Result | None) -> Row:
    verdict = NONE if new is None else ("met" if new["met"] else "**not met**")
    return [goal, _measured(old), _measured(new), verdict]


def _measured(target: Result | None) -> str:
    return NONE if target is None else str(target["measured"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    runs = [msgspec.json.decode(path.read_bytes()) for path in (args.before, args.after)]
    print(compare(*runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
