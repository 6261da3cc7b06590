"""`create_app(settings)`: the one place that builds relay and owns its lifetime.

Its boundaries can be handed in, as httpx's `Client(transport=…)` takes a transport:
`store=` an event store, `providers=` a provider per upstream name (the rest are built
from the settings). Tests inject faults this way instead of patching; what is handed in
is owned by the app from then on and closed with it.

Startup opens the store and the providers; shutdown marks the instance as draining,
cancels running generations (each writes `cancelled`, reason `shutdown`), ends open
streams, and only then closes the providers and the store.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from relay.clients import Clients
from relay.config import Settings
from relay.frontdoors import (
    anthropic_messages,
    cors,
    health,
    models,
    native,
    openai_chat,
    openai_responses,
    producer,
    signals,
    static,
    ui_chat,
    websocket,
)
from relay.frontdoors.errors import error_middleware
from relay.frontdoors.hosts import AllowedHosts, host_refusal
from relay.leases import LeaseKeeper
from relay.logs import answer_prepared, request_context
from relay.openapi.routes import routes as openapi_routes
from relay.providers.base import Provider
from relay.providers.router import ModelRouter
from relay.runner import GenerationRunner
from relay.services import SERVICES, Services
from relay.store import Store, open_store
from relay.store.measured import MeasuredStore
from relay.takeover import Takeovers

log = logging.getLogger(__name__)

# How long streams get at shutdown to deliver the last events before they are cut.
SUBSCRIBER_GRACE_S = 1.0


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    providers: Mapping[str, Provider] | None = None,
) -> web.Application:
    clients = Clients.from_settings(settings)  # a key variable that is not set stops here
    app = web.Application(
        middlewares=[request_context, _checked(clients, AllowedHosts.of(settings.server))],
        client_max_size=settings.server.max_body_bytes,
    )
    app.add_routes(health.routes)
    app.add_routes(native.routes)
    app.add_routes(producer.routes)
    app.add_routes(signals.routes)
    app.add_routes(openai_chat.routes)
    app.add_routes(anthropic_messages.routes)
    app.add_routes(openai_responses.routes)
    app.add_routes(models.routes)
    app.add_routes(ui_chat.routes(settings.ui_chat.prefix))
    app.add_routes(websocket.routes)
    app.add_routes(openapi_routes)
    if settings.server.demo_page:
        app.add_routes([health.demo_page_route(), static.static_route()])
    if settings.server.metrics_port is None:
        app.add_routes([health.METRICS_ROUTE])
    app.cleanup_ctx.append(_services_context(settings, store, providers, clients))
    app.on_response_prepare.append(_prepared(clients))
    app.on_shutdown.append(drain)  # when embedded; `relay serve` drains before it stops
    return app


def create_metrics_app() -> web.Application:
    """The app of `[server] metrics_port`: `/metrics` alone."""
    app = web.Application()
    app.add_routes([health.METRICS_ROUTE])
    return app


# Every request passes these hooks, so each is one call rather than a chain: a middleware
# or a response hook more is a coroutine more on every request's (and every first
# token's) path.


def _checked(clients: Clients, hosts: AllowedHosts) -> Middleware:
    """Inside the log context: the Host check (421), CORS preflights, then the handler
    under the error middleware, in one middleware."""
    checks = (host_refusal(hosts), cors.preflight_answer(clients))

    @web.middleware
    async def checked(request: web.Request, handler: Handler) -> web.StreamResponse:
        for check in checks:
            if (answer := check(request)) is not None:
                return answer
        return await error_middleware(request, handler)

    return checked


def _prepared(clients: Clients) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """The `on_response_prepare` hook of every answer, a stream's too: which instance
    answered (for operators and tests behind a load balancer), the request id and the
    access log's record of it, the response count, the CORS headers."""
    cors_headers = cors.answer_headers(clients)

    async def prepared(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Relay-Instance"] = request.app[SERVICES].instance_id
        answer_prepared(request, response)
        health.count_response(request, response)
        cors_headers(request, response)

    return prepared


def _services_context(
    settings: Settings,
    given_store: Store | None,
    providers: Mapping[str, Provider] | None,
    clients: Clients,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def services_context(app: web.Application) -> AsyncIterator[None]:
        store = MeasuredStore(given_store or open_store(settings.store))
        router = ModelRouter(settings.upstreams, providers)
        instance_id = "i_" + secrets.token_hex(6)
        runner = GenerationRunner(store, settings.generation, settings.store, instance_id)
        services = app[SERVICES] = Services(settings, store, router, runner, instance_id, clients)
        log.info("relay instance %s started, store %s", instance_id, _safe_url(settings.store.url))
        log.log(*clients.access_mode(settings.server))
        takeovers = Takeovers(settings, store, runner, router, clients)
        leases = LeaseKeeper(store, runner, settings, takeovers)
        leases.start()
        services.sessions.start()
        try:
            yield
        finally:
            await services.sessions.stop()
            await services.feeds.close()
            await leases.stop()
            await router.close()
            await store.close()

    return services_context


async def drain(app: web.Application) -> None:
    """Stop taking work and finish what runs: `/readyz` and new sessions answer 503 at
    once; generations may finish for up to `drain_timeout_s`, then are cancelled (reason
    `shutdown`); open streams deliver what was written, then end, so their clients
    reconnect to another instance. Runs once; later calls return at once."""
    services = app[SERVICES]
    if services.draining:
        return
    services.draining = True
    log.info("draining: %d generations running", services.runner.running)
    await services.runner.drain(timeout=services.settings.server.drain_timeout_s)
    await services.end_subscribers(grace_s=SUBSCRIBER_GRACE_S)


def _safe_url(url: str) -> str:
    """The store URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}***@{host}" if at and credentials else url
