"""bench/compare.py: two saved runs' targets side by side."""

from __future__ import annotations

import copy
from pathlib import Path

import msgspec
import pytest

from bench import compare, report

DATA = Path(__file__).parent / "data"


def saved_run(git: str) -> report.Result:
    results: report.Result = msgspec.json.decode((DATA / "results.json").read_bytes())
    results["meta"]["git"] = git
    return results


def test_each_target_has_both_runs_figures_and_the_later_verdict() -> None:
    before, after = saved_run("aaaaaaa"), saved_run("bbbbbbb")
    after["scenarios"]["ttft20"]["summary_ms"]["relay-memory"]["p50"] = 0.75
    table = compare.compare(before, after).splitlines()
    assert table[0] == "| target | before (aaaaaaa) | after (bbbbbbb) |  |"
    goals = [target["goal"] for target in compare.targets(after)]
    assert len(table) == 2 + len(goals)
    old = {t["goal"]: t for t in compare.targets(before)}
    for line, target in zip(table[2:], compare.targets(after), strict=True):
        verdict = "met" if target["met"] else "**not met**"
        expected = [target["goal"], old[target["goal"]]["measured"], target["measured"], verdict]
        assert line == "| " + " | ".join(expected) + " |"


def test_a_target_only_one_run_measured_shows_a_dash() -> None:
    before, after = saved_run("aaaaaaa"), saved_run("bbbbbbb")
    floor = {"ttft20", "burst", "cpu_token", "core1000"}
    before["scenarios"] = {k: v for k, v in before["scenarios"].items() if k not in floor}
    table = compare.compare(before, after)
    floor_goals = {t["goal"] for t in compare.targets(after)} - {
        t["goal"] for t in compare.targets(before)
    }
    assert floor_goals, "the synthetic run measures issue 16's scenarios"
    for line in table.splitlines():
        if any(goal in line for goal in floor_goals):
            assert line.split(" | ")[1] == report.NONE


def test_the_command_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for name in ("before", "after"):
        path = tmp_path / f"{name}.json"
        path.write_bytes(msgspec.json.encode(saved_run(name)))
        paths.append(str(path))
    assert compare.main(paths) == 0
    expected = compare.compare(saved_run("before"), copy.deepcopy(saved_run("after")))
    assert capsys.readouterr().out == expected + "\n"
