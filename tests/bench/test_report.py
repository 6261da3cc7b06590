"""bench/report.py and bench/floor_report.py: the generated part of docs/performance.md from a
saved results file, byte for byte (tests/bench/data/ holds a synthetic run and what it renders)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from bench import floor_report, report

DATA = Path(__file__).parent / "data"


def synthetic_results() -> report.Result:
    results: report.Result = msgspec.json.decode((DATA / "results.json").read_bytes())
    results["targets"] = report.evaluate(results)
    return results


def test_the_doc_section_is_what_was_rendered_before() -> None:
    expected = (DATA / "performance_section.md").read_text()
    assert report.doc_section(synthetic_results()) + "\n" == expected


def test_the_section_has_both_ttft_tables_and_the_floor_targets() -> None:
    section = report.doc_section(synthetic_results())
    assert "| path | p50 | p99 | added p50 | added p99 | requests |" in section
    assert "| path | p50 ms | p99 ms | added p50 | added p99 | x proxy | requests |" in section
    none = report.NONE
    assert f"| direct | 0.50 | 1.20 | {none} | {none} | {none} | 100 |" in section
    assert "| relay-memory | 1.90 | 3.40 | 1.40 | 2.20 | 1.75x | 100 |" in section
    assert "pinned: relay alone on core 1." in section


def test_the_held_streams_table_names_what_was_held_and_the_lag() -> None:
    section = report.doc_section(synthetic_results())
    assert "### Streams while idle SSE subscribers are held" in section
    row = "| relay-redis | 10,000 on 100 sessions | 100 x 50 tok/s | 26.0 | 53.3 | 96.6 | 54.7 |"
    assert row in section


def test_rewriting_the_doc_keeps_what_is_outside_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"before\n{report.BEGIN}\nold\n{report.END}\nafter\n")
    report.write_doc(synthetic_results(), doc)
    text = doc.read_text()
    assert text.startswith("before\n" + report.BEGIN) and text.endswith(report.END + "\nafter\n")
    assert "old" not in text


def test_floor_targets_name_the_ratio_to_the_proxy() -> None:
    targets = floor_report.evaluate(synthetic_results()["scenarios"])
    goals = [target["goal"] for target in targets]
    assert len(goals) == 4
    assert targets[0]["measured"].startswith("memory 1.40 ms (1.75x), redis 2.10 ms (2.62x)")
    assert [target["met"] for target in targets] == [False, True, False, False]
