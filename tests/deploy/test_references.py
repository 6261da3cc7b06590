"""What the deploy files name exists in relay: their relay.toml files load and may serve
beyond loopback, every environment variable given to relay is one it reads, every port is
the configured one, every probed or scraped path is a relay route, and the image is this
version of relay."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from relay import __version__
from relay.app import create_app
from relay.clients import Clients, check_exposure
from relay.config import ENV_OVERRIDES, Settings, load_settings
from tests.deploy.files import (
    DASHBOARD,
    DEPLOY,
    KUBERNETES,
    KUSTOMIZATIONS,
    compose,
    kustomize,
    load_yaml,
    objects_of_kind,
    relay_services,
)

IMAGE_CONFIG = DEPLOY / "relay.toml"  # the image's, and docker-compose.yml's
KUBERNETES_CONFIG = KUBERNETES / "base" / "relay.toml"
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def variables_read(settings: Settings) -> set[str]:
    """The environment variables relay reads with these settings."""
    keys = {v for client in settings.clients for v in client.key_variables}
    return set(ENV_OVERRIDES) | keys | {u.api_key_env for u in settings.upstreams if u.api_key_env}


def client_key_variables(settings: Settings) -> set[str]:
    return {v for client in settings.clients for v in client.key_variables}


def required_variables(settings: Settings) -> set[str]:
    """Those relay refuses to start without: every client's key variables, and every
    upstream's `api_key_env` (relay.providers.router.build_provider)."""
    upstream_keys = {u.api_key_env for u in settings.upstreams if u.api_key_env}
    return client_key_variables(settings) | upstream_keys


def relay_routes() -> set[str]:
    return {resource.canonical for resource in create_app(Settings()).router.resources()}


def kubernetes_container(name: str = "base") -> dict[str, Any]:
    (deployment,) = objects_of_kind(kustomize(KUSTOMIZATIONS[name]), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("path", [IMAGE_CONFIG, KUBERNETES_CONFIG], ids=lambda p: str(p))
def test_the_config_files_load_and_may_serve_beyond_loopback(path: Path) -> None:
    settings = load_settings(path, environ={})
    keys = {variable: f"key-{variable}" for variable in client_key_variables(settings)}
    assert keys, "beyond loopback relay needs [[clients]] (or allow_anonymous)"
    check_exposure(settings.server, Clients.from_settings(settings, environ=keys))
    assert settings.server.host == "0.0.0.0"


def test_compose_gives_relay_only_variables_it_reads_and_every_key_it_needs() -> None:
    settings = load_settings(IMAGE_CONFIG, environ={})
    for name, service in relay_services(compose()).items():
        given = set(service["environment"])
        assert given <= variables_read(settings), name
        assert required_variables(settings) <= given, name
        assert urlsplit(service["environment"]["RELAY_STORE_URL"]).hostname in compose()["services"]


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_kubernetes_gives_relay_only_variables_it_reads_and_every_key_it_needs(name: str) -> None:
    settings = load_settings(KUBERNETES_CONFIG, environ={})
    given = {variable["name"] for variable in kubernetes_container(name)["env"]}
    assert given <= variables_read(settings)
    assert required_variables(settings) <= given


def test_the_dockerfile_reads_only_variables_relay_reads() -> None:
    read = set(re.findall(r"os\.environ\.get\('(\w+)'", DOCKERFILE))
    assert read == {"RELAY_PORT"} <= set(ENV_OVERRIDES)


def test_every_port_is_the_configured_one() -> None:
    port = load_settings(IMAGE_CONFIG, environ={}).server.port
    assert re.search(r"^EXPOSE (\d+)$", DOCKERFILE, re.M).group(1) == str(port)  # type: ignore[union-attr]
    assert f"os.environ.get('RELAY_PORT', '{port}')" in DOCKERFILE
    document = compose()
    for service in relay_services(document).values():
        assert service["expose"] == [str(port)]
    relay_hosts = {f"{name}:{port}" for name in relay_services(document)}
    nginx_servers = set(
        re.findall(r"^\s*server (\S+:\d+) ", (DEPLOY / "nginx.conf").read_text(), re.M)
    )
    assert nginx_servers == relay_hosts
    (scrape,) = load_yaml(DEPLOY / "prometheus.yml")["scrape_configs"]
    assert set(scrape["static_configs"][0]["targets"]) == relay_hosts
    kubernetes_port = load_settings(KUBERNETES_CONFIG, environ={}).server.port
    (container_port,) = kubernetes_container()["ports"]
    assert container_port == {"name": "http", "containerPort": kubernetes_port}


def test_every_probed_path_is_a_relay_route() -> None:
    routes = relay_routes()
    container = kubernetes_container()
    assert container["readinessProbe"]["httpGet"]["path"] in routes
    assert container["livenessProbe"]["httpGet"]["path"] in routes
    assert (
        re.findall(r"/\w+", re.search(r"urlopen\('([^']+)'", DOCKERFILE).group(1))[-1] == "/healthz"
    )  # type: ignore[union-attr]
    assert "/healthz" in routes


def test_the_scraped_path_is_a_relay_route() -> None:
    """Passes once /metrics exists (issue 13 point 1)."""
    (scrape,) = load_yaml(DEPLOY / "prometheus.yml")["scrape_configs"]
    (monitor,) = objects_of_kind(kustomize(KUSTOMIZATIONS["base"]), "ServiceMonitor")
    paths = {scrape["metrics_path"], monitor["spec"]["endpoints"][0]["path"]}
    assert paths == {"/metrics"}
    assert "/metrics" in relay_routes()


def test_the_config_path_is_the_one_served() -> None:
    served = re.search(r'^CMD \["serve", "--config", "([^"]+)"\]$', DOCKERFILE, re.M)
    assert served is not None
    assert f"COPY deploy/relay.toml {served.group(1)}" in DOCKERFILE
    container = kubernetes_container()
    assert container["args"] == ["serve", "--config", served.group(1)]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert f"{mount['mountPath']}/{KUBERNETES_CONFIG.name}" == served.group(1)
    kustomization = load_yaml(KUBERNETES / "base" / "kustomization.yaml")
    assert kustomization["configMapGenerator"][0]["files"] == [KUBERNETES_CONFIG.name]


def test_the_images_are_this_relay() -> None:
    for service in relay_services(compose()).values():
        assert service["image"] == f"relay:{__version__}"
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert kubernetes_container()["image"] == f"relay:{__version__}"
    assert re.search(r"^FROM python:3\.11-slim$", DOCKERFILE, re.M)
    assert "RUN pip install '.[fast]'" in DOCKERFILE  # as the README installs it
    assert re.search(r"^USER \d+", DOCKERFILE, re.M)  # not root


def test_grafana_is_provisioned_with_the_datasource_the_dashboard_names() -> None:
    grafana = DEPLOY / "grafana" / "provisioning"
    (datasource,) = load_yaml(grafana / "datasources" / "prometheus.yml")["datasources"]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {datasource["uid"]}
    assert urlsplit(datasource["url"]).hostname in compose()["services"]
    (provider,) = load_yaml(grafana / "dashboards" / "relay.yml")["providers"]
    volumes = compose()["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in volumes
