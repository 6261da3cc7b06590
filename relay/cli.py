"""The `relay` command line: serve, check-config, mock-upstream."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from types import ModuleType
from typing import Any

from aiohttp import web
from yarl import URL

from relay import __version__, mock_upstream
from relay.app import create_app, create_metrics_app, drain
from relay.clients import Clients, check_exposure
from relay.config import MOCK_MAX_TOKENS, Settings, dump_settings, load_settings
from relay.errors import CannotListen, ConfigError
from relay.frontdoors import hosts
from relay.frontdoors.connections import (
    LISTEN_BACKLOG,
    ConnectionGate,
    LimitedRequestHandler,
    OutOfDescriptors,
)
from relay.logs import AccessLog, configure_logging
from relay.services import SERVICES
from relay.store import check_store_url
from relay.workers import check_workers, supervise

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"relay: configuration error: {exc}", file=sys.stderr)
        return 2
    except CannotListen as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="Durable, resumable LLM streams.")
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the relay server")
    serve.add_argument("--config", help="TOML configuration file")
    serve.add_argument("--host", help="listen address (overrides [server] host)")
    serve.add_argument("--port", type=int, help="listen port (overrides [server] port)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (needs Redis)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # workers
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate a config file and print it")
    check.add_argument("file")
    check.set_defaults(run=_check_config)

    mock = commands.add_parser("mock-upstream", help="run the fake OpenAI/Anthropic provider")
    mock.add_argument("--host", default=mock_upstream.DEFAULT_HOST, help="listen address")
    mock.add_argument("--port", type=int, default=mock_upstream.DEFAULT_PORT, help="listen port")
    mock.add_argument(
        "--max-tokens",
        type=int,
        default=MOCK_MAX_TOKENS,
        help="the most tokens (and reasoning words) a model may ask for; more is a 400",
    )
    mock.set_defaults(run=_mock_upstream)
    return parser


def _serve(args: argparse.Namespace) -> int:
    flags = {key: getattr(args, key) for key in ("host", "port", "workers")}
    overrides = {"server": {key: value for key, value in flags.items() if value is not None}}
    settings = load_settings(args.config, overrides=overrides)
    check_store_url(settings.store.url)
    check_workers(settings)
    check_exposure(settings.server, Clients.from_settings(settings))
    configure_logging(settings.log)
    if settings.server.workers > 1:
        check_can_listen(settings.server.host, settings.server.port)
        if settings.server.metrics_port is not None:
            check_can_listen(settings.server.host, settings.server.metrics_port)
        return supervise(settings.server.workers, _worker_argv(args, settings))
    run_event_loop(_serve_until_signalled(settings, reuse_port=args.reuse_port))
    return 0


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop when it is installed (`pip install relay[fast]`), else asyncio."""
    uvloop = _uvloop()
    if uvloop is None:
        log.info("event loop: asyncio (install relay[fast] for uvloop)")
        asyncio.run(main)
        return
    log.info("event loop: uvloop")
    uvloop.run(main)


def _uvloop() -> ModuleType | None:
    """The uvloop module, or None. Not imported where the loop runs: everything run
    inside an `except ImportError` would carry that ImportError, chained into every
    traceback it logs."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


async def _serve_until_signalled(settings: Settings, *, reuse_port: bool) -> None:
    """Bind first (a busy port stops everything before it starts), start the app, accept,
    and serve until SIGTERM or SIGINT; then drain while still listening, so that `/readyz`
    can tell the load balancer, and only then stop."""
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0)
    server, limits = settings.server, settings.limits
    gate = ConnectionGate(limits.max_connections, limits.max_connections_per_ip)
    asyncio.get_running_loop().set_exception_handler(OutOfDescriptors(gate))
    listener = await listen(
        lambda: connection_handler(runner, settings, gate), server.host, server.port, reuse_port
    )
    metrics_site = None
    try:
        await runner.setup()
        metrics_site = await serve_metrics(server.host, server.metrics_port, reuse_port)
        await listener.start_serving()
        _log_ready(app, listener)
        log.log(*hosts.exposure(server))  # beyond loopback, and to which Host names
        tune_garbage_collector()
        await _signalled()
        await drain(app)
    finally:
        listener.close()
        await runner.cleanup()
        if metrics_site is not None:
            await metrics_site.cleanup()


async def serve_metrics(host: str, port: int | None, reuse_port: bool) -> web.AppRunner | None:
    """`/metrics` on its own port (`[server] metrics_port`), when one is set. Workers
    share it as they share the public port: any of them answers for all."""
    if port is None:
        return None
    runner = web.AppRunner(create_metrics_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
    except OSError as exc:
        await runner.cleanup()
        raise CannotListen(host, port, _os_reason(exc)) from exc
    log.info("metrics on %s", URL.build(scheme="http", host=host, port=port) / "metrics")
    return runner


async def listen(
    connection: Callable[[], asyncio.Protocol], host: str, port: int, reuse_port: bool = False
) -> asyncio.Server:
    """A socket bound to host:port, not yet accepting (`start_serving()` does that)."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(
            connection, host, port,
            reuse_port=reuse_port or None, backlog=LISTEN_BACKLOG, start_serving=False,
        )  # fmt: skip
    except OSError as exc:
        raise CannotListen(host, port, _os_reason(exc)) from exc


def check_can_listen(host: str, port: int) -> None:
    """Bind the address once and let it go, so that a busy port is named once, before the
    processes that will listen on it (workers, the mock upstream) start."""

    async def bind_and_release() -> None:
        (await listen(asyncio.Protocol, host, port)).close()

    asyncio.run(bind_and_release())


def _os_reason(exc: OSError) -> str:
    """`address already in use`, without the event loop's wording around it."""
    if exc.errno and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno).lower()
    return str(exc.strerror or exc).lower()


def connection_handler(
    runner: web.AppRunner, settings: Settings, gate: ConnectionGate
) -> web.RequestHandler:
    """The handler of one accepted connection: aiohttp's, answering the requests its parser
    refuses in relay's JSON error shape, within the `[limits]` on connections (`gate`
    counts them), with the access log that redacts read tokens."""
    server = runner.server
    assert server is not None, "connections are accepted only once the runner is set up"
    loop = asyncio.get_running_loop()
    return LimitedRequestHandler(
        server, limits=settings.limits, gate=gate, loop=loop, access_log_class=AccessLog
    )


def _log_ready(app: web.Application, listener: asyncio.Server) -> None:
    addresses = (sock.getsockname() for sock in listener.sockets)
    urls = ", ".join(str(URL.build(scheme="http", host=a[0], port=a[1])) for a in addresses)
    log.info("relay instance %s ready on %s", app[SERVICES].instance_id, urls)


# The youngest generation is collected after this many more allocations than frees
# (Python's default: 700). A stream's objects (its events, frames, buffers) live for tens
# of milliseconds; at 700 a collection every few hundred of them finds them alive, so
# they are promoted, and the old generation grows until a full collection walks every
# object in the process while every stream waits (with 10,000 idle subscribers open:
# 540-570 ms, every 5 s under 100 streams; docs/performance.md, round nine). At 50,000
# most die young, by reference counting, before any collection looks at them; relay
# leaves no garbage in cycles on its request and stream paths, so little waits longer.
YOUNGEST_GENERATION_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Put what startup made (modules, the app and its services) out of the cycle
    collector's reach: it lives as long as the process, and every full collection would
    walk it again while every stream waits (about 10 ms per 50,000 objects here). And
    collect the youngest generation less often (YOUNGEST_GENERATION_THRESHOLD)."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_GENERATION_THRESHOLD, middle, oldest)


async def _signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def _worker_argv(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The command line of one worker: the same settings, one process, a shared port."""
    config = ["--config", args.config] if args.config else []
    server = settings.server
    return ["serve", *config, "--host", server.host, "--port", str(server.port),
            "--workers", "1", "--reuse-port"]  # fmt: skip


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    check_store_url(settings.store.url)
    print(dump_settings(settings))
    return 0


def _mock_upstream(args: argparse.Namespace) -> int:
    check_can_listen(args.host, args.port)
    mock_upstream.serve(args.host, args.port, args.max_tokens)
    return 0
