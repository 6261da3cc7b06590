"""Model name → upstream. `NAME/MODEL` picks upstream NAME explicitly and sends MODEL;
any other name goes to the first upstream with a matching glob pattern."""

from __future__ import annotations

import fnmatch

import msgspec

from relay.config import UpstreamSettings
from relay.errors import ApiError, ConfigError
from relay.providers.base import Provider
from relay.providers.mock import MockProvider


class Route(msgspec.Struct, frozen=True):
    upstream: str
    model: str  # the name the upstream is sent
    provider: Provider


def build_provider(upstream: UpstreamSettings) -> Provider:
    if upstream.kind == "mock":
        return MockProvider()
    raise ConfigError(f"upstream {upstream.name!r}: kind {upstream.kind!r} is not available yet")


class ModelRouter:
    def __init__(self, upstreams: list[UpstreamSettings]) -> None:
        self._upstreams = upstreams
        self._providers = {upstream.name: build_provider(upstream) for upstream in upstreams}

    def resolve(self, model: str) -> Route:
        """The route for `model`; ApiError 400 names what is routable when none fits."""
        route = self._explicit(model) or self._by_pattern(model)
        if route is None:
            raise ApiError(
                400, "unknown_model", f"model {model!r} is not routable; {self._routable()}"
            )
        try:
            route.provider.check_model(route.model)
        except ValueError as exc:
            raise ApiError(400, "invalid_model", f"model {model!r}: {exc}") from exc
        return route

    def _explicit(self, model: str) -> Route | None:
        name, sep, upstream_model = model.partition("/")
        if sep and name in self._providers and upstream_model:
            return Route(name, upstream_model, self._providers[name])
        return None

    def _by_pattern(self, model: str) -> Route | None:
        for upstream in self._upstreams:
            if any(fnmatch.fnmatchcase(model, pattern) for pattern in upstream.models):
                return Route(upstream.name, model, self._providers[upstream.name])
        return None

    def _routable(self) -> str:
        patterns = [p for upstream in self._upstreams for p in upstream.models]
        names = [f"{upstream.name}/MODEL" for upstream in self._upstreams]
        return "routable: " + ", ".join(patterns + names)

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
