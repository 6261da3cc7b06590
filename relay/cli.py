"""The `relay` command line: serve, check-config, mock-upstream."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from aiohttp import web

from relay import __version__, mock_upstream
from relay.app import create_app, drain
from relay.config import Settings, dump_settings, load_settings
from relay.errors import ConfigError
from relay.logs import configure_logging
from relay.store import check_store_url
from relay.workers import check_workers, supervise

log = logging.getLogger(__name__)

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"relay: configuration error: {exc}", file=sys.stderr)
        return 2


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
    mock.set_defaults(run=_mock_upstream)
    return parser


def _serve(args: argparse.Namespace) -> int:
    flags = {key: getattr(args, key) for key in ("host", "port", "workers")}
    overrides = {"server": {key: value for key, value in flags.items() if value is not None}}
    settings = load_settings(args.config, overrides=overrides)
    check_store_url(settings.store.url)
    check_workers(settings)
    configure_logging(settings.log)
    if settings.server.workers > 1:
        return supervise(settings.server.workers, _worker_argv(args, settings))
    run_event_loop(_serve_until_signalled(settings, reuse_port=args.reuse_port))
    return 0


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop when it is installed (`pip install relay[fast]`), else asyncio."""
    try:
        import uvloop
    except ImportError:
        log.info("event loop: asyncio (install relay[fast] for uvloop)")
        asyncio.run(main)
        return
    log.info("event loop: uvloop")
    uvloop.run(main)


async def _serve_until_signalled(settings: Settings, *, reuse_port: bool) -> None:
    """Serve until SIGTERM or SIGINT, then drain while still listening, so that
    `/readyz` can tell the load balancer, and only then stop."""
    app = create_app(settings)
    runner = web.AppRunner(
        app, handle_signals=False, access_log_format=ACCESS_LOG_FORMAT, shutdown_timeout=5.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, settings.server.host, settings.server.port, reuse_port=reuse_port
        )
        await site.start()
        freeze_startup_objects()
        await _signalled()
        await drain(app)
    finally:
        await runner.cleanup()


def freeze_startup_objects() -> None:
    """Put what startup made (modules, the app and its services) out of the cycle
    collector's reach: it lives as long as the process, and every full collection would
    walk it again while every stream waits (about 10 ms per 50,000 objects here)."""
    gc.collect()
    gc.freeze()


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
    mock_upstream.serve(args.host, args.port)
    return 0
