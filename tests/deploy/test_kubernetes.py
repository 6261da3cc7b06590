"""The kustomize base and the Redis Cluster overlay build with `kubectl kustomize`, and
every object they make is valid against the Kubernetes API schemas (kubernetes-validate,
strict: an unknown field is an error); the drain fits in the grace period."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from relay.app import SUBSCRIBER_GRACE_S
from relay.config import load_settings
from relay.runner import CANCEL_GRACE_S
from tests.deploy.files import (
    KUBERNETES,
    KUSTOMIZATIONS,
    kustomize,
    objects_of_kind,
    require_kubernetes_validate,
)

# The Kubernetes versions checked: the oldest and the newest kubernetes-validate has
# schemas for.
VERSIONS = ["oldest", "latest"]
# What relay/cli.py gives aiohttp's runner to close connections (`shutdown_timeout`).
RUNNER_SHUTDOWN_S = 5.0
CUSTOM_KINDS = {"ServiceMonitor"}


def validate(document: dict[str, Any], version: str) -> None:
    kubernetes_validate = require_kubernetes_validate()
    known = sorted(
        set(kubernetes_validate.utils.all_versions()), key=kubernetes_validate.utils.major_minor
    )
    version = {"oldest": known[0], "latest": known[-1]}[version]
    kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_every_object_is_valid_against_the_kubernetes_schemas(name: str, version: str) -> None:
    objects = kustomize(KUSTOMIZATIONS[name])
    kinds = {o["kind"] for o in objects}
    assert kinds == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                     "HorizontalPodAutoscaler", "ServiceMonitor"}  # fmt: skip
    for document in objects:
        if document["kind"] not in CUSTOM_KINDS:
            validate(document, version)


def test_the_validator_refuses_a_misspelled_field() -> None:
    kubernetes_validate = require_kubernetes_validate()
    (deployment,) = objects_of_kind(kustomize(KUSTOMIZATIONS["base"]), "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, "latest")


def test_the_service_monitor_scrapes_the_service_port_of_relay_pods() -> None:
    """The Prometheus Operator's CRD has no schema in the packages above: checked here
    against the objects it refers to."""
    objects = kustomize(KUSTOMIZATIONS["base"])
    (monitor,) = objects_of_kind(objects, "ServiceMonitor")
    (service,) = objects_of_kind(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) == {"port", "path", "interval"}
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


def test_the_overlay_points_the_store_at_a_redis_cluster() -> None:
    (deployment,) = objects_of_kind(
        kustomize(KUSTOMIZATIONS["overlays/redis-cluster"]), "Deployment"
    )
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RELAY_STORE_URL"]["value"].startswith("redis+cluster://")
    assert {"RELAY_CLIENT_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= set(env)  # kept
    url = env["RELAY_STORE_URL"]["value"]
    settings = load_settings(KUBERNETES / "base" / "relay.toml", environ={"RELAY_STORE_URL": url})
    assert settings.store.url == url


def test_the_grace_period_covers_the_prestop_pause_and_the_whole_drain() -> None:
    settings = load_settings(KUBERNETES / "base" / "relay.toml")
    (deployment,) = objects_of_kind(kustomize(KUSTOMIZATIONS["base"]), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = settings.server.drain_timeout_s + CANCEL_GRACE_S + SUBSCRIBER_GRACE_S
    assert pod["terminationGracePeriodSeconds"] >= pause + drain + RUNNER_SHUTDOWN_S
    assert pod["terminationGracePeriodSeconds"] <= pause + drain + RUNNER_SHUTDOWN_S + 10


def test_probes_readiness_on_readyz_and_liveness_on_healthz() -> None:
    (deployment,) = objects_of_kind(kustomize(KUSTOMIZATIONS["base"]), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # /readyz answers within 0.5 s whatever the store does (relay.frontdoors.health).
    assert container["readinessProbe"]["timeoutSeconds"] >= 1
