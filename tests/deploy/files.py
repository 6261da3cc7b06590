"""The deploy files as the tests read them: parsed YAML and JSON, the Kubernetes objects
kustomize renders, and the PromQL of the dashboard and of the alert rules."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.system_programs import missing, require_program

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUSTOMIZATIONS = {
    "base": KUBERNETES / "base",
    "overlays/redis-cluster": KUBERNETES / "overlays" / "redis-cluster",
}
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "relay.json"
ALERTS = DEPLOY / "alerts.yml"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(DEPLOY / "docker-compose.yml")
    return loaded


def relay_services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run relay's image."""
    return {
        name: service
        for name, service in document["services"].items()
        if str(service.get("image", "")).startswith("relay:")
    }


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` (or a `kustomize` binary) builds from `directory`."""
    binary = require_program("kubectl", "kustomize", package="kubectl, or a kustomize binary")
    command = [binary, "kustomize" if binary.endswith("kubectl") else "build", str(directory)]
    built = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if built.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {built.stderr}")
    return [document for document in yaml.safe_load_all(built.stdout) if document]


def objects_of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expression) for every query of the Grafana dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_expressions() -> list[tuple[str, str]]:
    """(alert name, expression) for every rule of deploy/alerts.yml."""
    groups = load_yaml(ALERTS)["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def with_range(expression: str, window: str) -> str:
    """A dashboard expression as Prometheus takes it: Grafana's `$__rate_interval` made
    `window`."""
    return expression.replace("$__rate_interval", window)


# The operators an alert compares its signal with; `and` joins two comparisons.
_TOP_LEVEL_OPERATOR = re.compile(r"\s(?:>=|<=|==|!=|>|<|and|or|unless)\s")
_NUMBER = re.compile(r"[\d.]+")


def operands(expression: str) -> list[str]:
    """The operands of an alert's comparisons (`a > 2 * b and c > 1`: `a`, `2 * b`, `c`),
    numbers left out: each must return data, firing or not."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(expression):
        depth += {"(": 1, ")": -1, "{": 1, "}": -1, "[": 1, "]": -1}.get(char, 0)
        match = _TOP_LEVEL_OPERATOR.match(expression, index) if depth == 0 else None
        if match and index >= start:
            parts.append(expression[start:index])
            start = match.end()
    parts.append(expression[start:])
    return [p.strip() for p in parts if not _NUMBER.fullmatch(p.strip())]


def require_kubernetes_validate() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        missing("kubernetes-validate is not installed (pip install -e '.[test]')")
    return kubernetes_validate
