"""Model name → upstream. `NAME/MODEL` picks upstream NAME explicitly and sends MODEL;
any other name goes to the first upstream with a matching glob pattern.

A route also names its model for metrics (`label`), from the config only, so that the
values are bounded: the name when the upstream lists it, else the glob pattern of the
upstream's that matches it (`mock:*`), else `unrouted` (an explicit `NAME/MODEL` whose
MODEL the upstream does not list)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

import msgspec

from relay.config import UpstreamSettings, read_api_key, upstream_proxy
from relay.errors import ConfigError, UnknownModel
from relay.metrics import UNROUTED
from relay.providers.anthropic import AnthropicProvider
from relay.providers.base import Provider
from relay.providers.mock import MockProvider
from relay.providers.openai import OpenAIProvider


class Route(msgspec.Struct, frozen=True):
    upstream: str
    model: str  # the name the upstream is sent
    provider: Provider
    label: str = UNROUTED  # the model, as metrics name it


class ModelEntry(msgspec.Struct, frozen=True):
    """A model a client can name, and the upstream that serves it."""

    id: str
    upstream: str


def build_provider(
    upstream: UpstreamSettings, environ: Mapping[str, str] | None = None
) -> Provider:
    """The provider for one upstream; ConfigError when its API key variable is unset."""
    if upstream.kind == "mock":
        continues = upstream.continuation_style != "none"
        return MockProvider(upstream.mock_max_tokens, continues=continues)
    api_key = read_api_key(upstream, environ)
    if upstream.api_key_env and api_key is None:
        raise ConfigError(
            f"upstream {upstream.name!r}: the environment variable {upstream.api_key_env!r} "
            "named by api_key_env is not set"
        )
    proxy = upstream_proxy(upstream, environ)
    if upstream.kind == "openai":
        return OpenAIProvider(upstream, api_key, proxy=proxy)
    return AnthropicProvider(upstream, api_key, proxy=proxy)


class ModelRouter:
    def __init__(
        self, upstreams: list[UpstreamSettings], providers: Mapping[str, Provider] | None = None
    ) -> None:
        """`providers`: the provider of an upstream, by its name, instead of building one."""
        given = providers or {}
        self._upstreams = upstreams
        self._providers = {
            upstream.name: given.get(upstream.name) or build_provider(upstream)
            for upstream in upstreams
        }

    def resolve(self, model: str) -> Route:
        """The route for `model`; `UnknownModel` names what is routable when none fits."""
        route = self._explicit(model) or self._by_pattern(model)
        if route is None:
            raise UnknownModel(
                "unknown_model", f"model {model!r} is not routable; {self._routable()}"
            )
        try:
            route.provider.check_model(route.model)
        except ValueError as exc:
            raise UnknownModel("invalid_model", f"model {model!r}: {exc}") from exc
        return route

    def _explicit(self, model: str) -> Route | None:
        name, sep, upstream_model = model.partition("/")
        if sep and name in self._providers and upstream_model:
            upstream = next(u for u in self._upstreams if u.name == name)
            label = _listed_as(upstream_model, upstream) or UNROUTED
            return Route(name, upstream_model, self._providers[name], label)
        return None

    def _by_pattern(self, model: str) -> Route | None:
        for upstream in self._upstreams:
            label = _listed_as(model, upstream)
            if label is not None:
                return Route(upstream.name, model, self._providers[upstream.name], label)
        return None

    def list_models(self) -> list[ModelEntry]:
        """Every model name that is a literal pattern (globs cannot be listed), each with
        the upstream a request for it reaches; in routing order, without repeats."""
        names = [p for upstream in self._upstreams for p in upstream.models if _is_literal(p)]
        entries: list[ModelEntry] = []
        for name in dict.fromkeys(names):
            route = self._by_pattern(name)
            if route is not None:
                entries.append(ModelEntry(name, route.upstream))
        return entries

    def _routable(self) -> str:
        patterns = [p for upstream in self._upstreams for p in upstream.models]
        names = [f"{upstream.name}/MODEL" for upstream in self._upstreams]
        return "routable: " + ", ".join(patterns + names)

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()


def _listed_as(model: str, upstream: UpstreamSettings) -> str | None:
    """The first of the upstream's `models` that `model` matches: the name itself when
    listed, or the glob pattern; None when none does."""
    for pattern in upstream.models:
        if fnmatch.fnmatchcase(model, pattern):
            return pattern
    return None


def _is_literal(pattern: str) -> bool:
    return not any(char in pattern for char in "*?[")
