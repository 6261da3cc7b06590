"""promtool, from Debian's `prometheus` package, accepts deploy/prometheus.yml, the alert
rules, and every expression of the Grafana dashboard."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy.files import ALERTS, DEPLOY, alert_expressions, dashboard_expressions, with_range
from tests.system_programs import require_program


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_program("promtool", env="PROMTOOL", package="prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_prometheus_config_and_the_rules_it_loads() -> None:
    checked = promtool("check", "config", str(DEPLOY / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_expressions())} rules found" in checked.stdout


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    """Each query as a recording rule: `check rules` parses its PromQL."""
    rules = [
        {"record": f"dashboard:panel_{index}", "expr": with_range(expression, "5m")}
        for index, (_, expression) in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_promtool_refuses_a_broken_expression(tmp_path: Path) -> None:
    """The checks above can fail: a parse error is caught."""
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"alert": "Broken", "expr": "sum by (model (rate(relay_output_tokens_total[5m]))"}
    ]}]}))  # fmt: skip
    assert promtool("check", "rules", str(path)).returncode != 0
