"""The soak deployment's configuration files: each relay's TOML, nginx's, redis-server's
command line.

nginx's proxy settings are deploy/nginx.conf's (what SSE needs; a request whose instance
refuses the connection goes to the next one; a POST that was sent is never retried).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

# Short enough that faults show within a soak, long enough that a 3 s Redis freeze does
# not lapse a lease: a kill ends its generations within LEASE_TTL_S and a reaper round.
LEASE_TTL_S = 6.0
DRAIN_TIMEOUT_S = 5.0
HEARTBEAT_S = 5.0
SEND_TIMEOUT_S = 10.0  # a client that reads nothing is cut after this
SUBSCRIBER_BUFFER_BYTES = 65536


def relay_toml(port: int, redis_port: int, upstream_port: int) -> str:
    return f"""\
[server]
host = "127.0.0.1"
port = {port}
drain_timeout_s = {DRAIN_TIMEOUT_S}
heartbeat_s = {HEARTBEAT_S}
demo_page = false

[store]
url = "redis://127.0.0.1:{redis_port}/0"
lease_ttl_s = {LEASE_TTL_S}

[log]
level = "info"

[limits]
# Every connection comes from nginx on 127.0.0.1.
max_connections_per_ip = 10000
send_timeout_s = {SEND_TIMEOUT_S}
subscriber_buffer_bytes = {SUBSCRIBER_BUFFER_BYTES}

[[upstreams]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:{upstream_port}/v1"
models = ["mock", "mock:*"]
"""


NGINX_CONF = """\
daemon off;
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # relay answers an oversized body itself (413 body_too_large).
    client_max_body_size 4m;
    upstream relay {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://relay;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_cache off;
            gzip off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
        }}
    }}
}}
"""


def nginx_conf(directory: Path, port: int, relay_ports: Sequence[int]) -> str:
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in relay_ports
    )
    user = "user root;" if os.geteuid() == 0 else ""  # workers must reach the temp dirs
    return NGINX_CONF.format(user=user, dir=directory, port=port, servers=servers)


def redis_command(binary: str, port: int, data_dir: Path) -> list[str]:
    """redis-server with its append-only file in `data_dir`: a restart keeps every session."""
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxclients", "10000",
    ]  # fmt: skip
