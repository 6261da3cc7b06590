"""deploy/docker-compose.yml against the Compose Specification's JSON schema.

`docker compose config` needs the compose plugin, which this machine lacks; the schema is
the compose-spec project's own `compose-spec.json`, as the PyPI package check-jsonschema
ships it (vendored there with its licence, refreshed with each release), and `jsonschema`
checks the file against it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from tests.deploy.files import compose, relay_services
from tests.system_programs import missing


def compose_schema() -> dict[str, Any]:
    try:
        vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    except ModuleNotFoundError:
        missing("check-jsonschema is not installed (pip install -e '.[test]')")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]


def test_the_compose_file_follows_the_compose_spec() -> None:
    assert schema_errors(compose()) == []


def test_the_schema_check_catches_a_misspelled_key() -> None:
    document = compose()
    document["services"]["nginx"]["port"] = ["8080:80"]
    (error,) = schema_errors(document)
    assert error.startswith("$.services.nginx: ")
    assert "('port' was unexpected)" in error


def test_the_shape_redis_three_relays_nginx_prometheus_grafana() -> None:
    services = compose()["services"]
    assert sorted(relay_services(compose())) == ["relay-1", "relay-2", "relay-3"]
    assert {"redis", "nginx", "prometheus", "grafana"} <= set(services)
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["nginx"]["volumes"]
    assert "./alerts.yml:/etc/prometheus/alerts.yml:ro" in services["prometheus"]["volumes"]
