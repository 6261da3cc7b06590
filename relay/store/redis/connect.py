"""The Redis client for each shape a store URL names: one server (`redis://`,
`rediss://`, `unix://`), a master watched by Sentinels (`redis+sentinel://`) or a Redis
Cluster (`redis+cluster://`). relay/store/redis_url.py parses the URL; everything past
the client is the same for all three.

A Cluster client splits a pipeline by node and sends each node its part at once. A
Sentinel client asks the Sentinels for the master whenever it connects, so a failover
is followed. Each client's pool (per node, on a Cluster) holds `max_connections`, and
never opens more.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple, Protocol, TypeAlias, TypeGuard

import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff

from relay.store.redis_url import RedisAddress, Topology

__all__ = [
    "POOL_TIMEOUT_S",
    "RECONNECTS",
    "RECONNECT_BACKOFF",
    "SOCKET_TIMEOUT_S",
    "Closeable",
    "CommandBatch",
    "Commands",
    "OwnConnection",
    "Pipeline",
    "RedisClient",
    "RedisConnection",
    "connect",
    "drives_own_socket",
    "pack_commands",
    "raw_stream_replies",
]

RedisClient: TypeAlias = redis.asyncio.Redis | RedisCluster
Pipeline: TypeAlias = redis.asyncio.client.Pipeline | ClusterPipeline

# Together they bound how long a command can take before the store counts as
# unavailable (a frozen or unreachable Redis): up to POOL_TIMEOUT_S waiting for its turn
# on a connection (tails wait for theirs without limit: their waiters time out on their
# own), then SOCKET_TIMEOUT_S to connect and as long for each reply. Redis answers in
# well under a millisecond; a reply this late means an outage, and a request that waits
# on one (creating a session) answers 503 `store_unavailable` within seconds.
POOL_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 2.0
# A couple of quick reconnects ride out a dropped connection; anything longer is an
# outage, which callers should hear about as `StoreUnavailable` rather than wait out. A
# timeout is not retried: a server that did not answer in SOCKET_TIMEOUT_S will not
# answer the next attempt sooner (three attempts made a frozen Redis take 15 s).
RECONNECTS = 2
RECONNECT_BACKOFF = ExponentialWithJitterBackoff(base=0.01, cap=0.2)
RETRY = Retry(
    RECONNECT_BACKOFF, retries=RECONNECTS, supported_errors=(redis.exceptions.ConnectionError,)
)


class Commands(Protocol):
    """Where commands are queued for one round trip: a pipeline, or a `CommandBatch`."""

    def execute_command(self, *args: Any, **options: Any) -> Any: ...


class CommandBatch:
    """Commands queued for an `OwnConnection`'s next round trip."""

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any, **options: Any) -> None:
        self.commands.append(args)


class OwnConnection:
    """One connection of a client's pool, held by one user from its first `open` to
    `aclose`, whose socket the user drives itself: `open` connects as the client does
    (its handshake: AUTH, SELECT; a Sentinel's asks for the master), then hands the
    socket's transport to the user's protocol, which reads every reply from then on. A
    dropped connection is opened again by the next `open`."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._pool = client.connection_pool
        self._connection: Any = None

    async def open(self, protocol: asyncio.Protocol) -> asyncio.Transport:
        """Connect (again), and make `protocol` the socket's: from now on it hears every
        `data_received` and the `connection_lost`. The client closes its connections
        without waiting on the protocol it replaced (`disconnect(nowait=True)`)."""
        if self._connection is None:
            self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        connection = self._connection
        if connection.is_connected:
            await connection.disconnect(nowait=True)
        await connection.connect()
        transport: asyncio.Transport = connection._writer.transport
        transport.set_protocol(protocol)
        return transport

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)  # replies may still be due on it
            await self._pool.release(connection)


def drives_own_socket(client: RedisClient) -> TypeGuard[redis.asyncio.Redis]:
    """Whether an `OwnConnection` can drive this client's connections' sockets: those of
    one server or a Sentinel's master, opened by redis-py's own connection classes (not
    a Cluster, whose pipelines are split by node; not an in-process fake)."""
    if isinstance(client, RedisCluster):
        return False
    kind = client.connection_pool.connection_class
    return issubclass(kind, _SOCKET_CONNECTIONS) and kind.__module__.startswith("redis.")


_SOCKET_CONNECTIONS = (Connection, UnixDomainSocketConnection)


def pack_commands(commands: list[tuple[Any, ...]]) -> bytes:
    """The commands as Redis's protocol sends them (RESP arrays of bulk strings), in one
    buffer: what redis-py's `pack_commands` makes for the argument types the store sends
    (bytes, memoryview, str, int, float), in 40% of its time (an append's command, 18
    arguments, in 4.7 µs rather than 11.8). Any other type is the store's bug: `TypeError`."""
    parts: list[bytes] = []
    for args in commands:
        parts.append(b"*%d\r\n" % len(args))
        parts += [_bulk(arg) for arg in args]
    return b"".join(parts)


def _bulk(arg: Any) -> bytes:
    """One argument as a bulk string, its length and its bytes in one piece: one object
    for the join rather than three. Exact types first: they are what the store sends."""
    kind = type(arg)
    if kind is str:
        value = arg.encode()
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if kind is memoryview:
        return b"$%d\r\n%b\r\n" % (arg.nbytes, arg)
    if kind is int:
        value = b"%d" % arg
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if kind is bytes:
        return b"$%d\r\n%b\r\n" % (len(arg), arg)
    if kind is float:
        value = repr(arg).encode()
        return b"$%d\r\n%b\r\n" % (len(value), value)
    raise TypeError(f"a Redis command argument must be bytes, str, int or float, not {arg!r}")


class Closeable(Protocol):
    async def aclose(self) -> None: ...


class RedisConnection(NamedTuple):
    """A client, and what else its store must close with it (a Sentinel's connections)."""

    client: RedisClient
    also_close: tuple[Closeable, ...] = ()


def connect(address: RedisAddress, max_connections: int) -> RedisConnection:
    """A client for the address's shape, with at most `max_connections` per server."""
    if address.topology is Topology.CLUSTER:
        return RedisConnection(_cluster_client(address, max_connections))
    if address.topology is Topology.SENTINEL:
        return _sentinel_client(address, max_connections)
    return RedisConnection(_server_client(address, max_connections))


# Stream commands whose replies the store decodes itself (relay.store.redis.codec).
RAW_REPLY_COMMANDS = ("XRANGE", "XREAD")


def raw_stream_replies(client: RedisClient) -> None:
    """Make `client` return stream replies as the server sent them (lists, as hiredis
    parses them), for every command and pipeline on it: redis-py's own parsing builds a
    dict per entry, most of the cost of a long replay."""
    for command in RAW_REPLY_COMMANDS:
        client.set_response_callback(command, _as_sent)


def _as_sent(response: Any, **options: Any) -> Any:
    return response


def _connection_options(address: RedisAddress) -> dict[str, Any]:
    """What every connection to a Redis server takes, whatever the shape."""
    return {
        "username": address.username,
        "password": address.password,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": SOCKET_TIMEOUT_S,
        "decode_responses": False,
        **address.tls_options,
    }


def _server_client(address: RedisAddress, max_connections: int) -> redis.asyncio.Redis:
    where: dict[str, Any]
    if address.socket_path is not None:
        where = {"connection_class": UnixDomainSocketConnection, "path": address.socket_path}
    else:
        host, port = address.hosts[0]
        connection_class = SSLConnection if address.tls else Connection
        where = {"connection_class": connection_class, "host": host, "port": port}
    pool = redis.asyncio.BlockingConnectionPool(
        max_connections=max_connections,
        timeout=POOL_TIMEOUT_S,
        db=address.db,
        retry=RETRY,
        **where,
        **_connection_options(address),
    )
    return redis.asyncio.Redis.from_pool(pool)


def _cluster_client(address: RedisAddress, max_connections: int) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in address.hosts],
        max_connections=max_connections,  # per node
        retry=RETRY,  # here: how often a command is retried after refreshing the slot map
        ssl=address.tls,
        **_connection_options(address),
    )


def _sentinel_client(address: RedisAddress, max_connections: int) -> RedisConnection:
    sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]  # untyped before redis 8.2
        list(address.hosts),
        sentinel_kwargs={
            "password": address.sentinel_password,
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": SOCKET_TIMEOUT_S,
            "retry": RETRY,
            "ssl": address.tls,
            **address.tls_options,
        },
    )
    assert address.master_name is not None  # parse_redis_url requires one
    client = sentinel.master_for(
        address.master_name,
        redis_class=redis.asyncio.Redis,
        max_connections=max_connections,
        db=address.db,
        retry=RETRY,
        ssl=address.tls,
        **_connection_options(address),
    )
    return RedisConnection(client, (sentinel,))
