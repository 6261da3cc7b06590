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

from typing import Any, NamedTuple, Protocol, TypeAlias

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
    "Closeable",
    "CommandBatch",
    "Commands",
    "OwnConnection",
    "Pipeline",
    "RedisClient",
    "RedisConnection",
    "connect",
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
    """One connection of a client's pool, held by one user from its first write to
    `aclose`: its round trips skip the pool's checkout and a pipeline's machinery, and
    a batch can be written before the replies of those before it are read (its user
    reads them in the order written, from one task). `epoch` tells its user which
    connection a batch went out on: after a drop the next write connects again (a
    Sentinel's asks for the master again), and batches written before are not answered
    on the new one."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._pool = client.connection_pool
        self._connection: Any = None
        self._connects = 0

    @property
    def epoch(self) -> int | None:
        """Which connection is open (one more at every connect); None: none is."""
        connection = self._connection
        return self._connects if connection is not None and connection.is_connected else None

    async def write(self, batch: CommandBatch) -> int:
        """Send the batch's commands, connecting first if need be; the epoch it went on."""
        if self._connection is None:
            self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        connection = self._connection
        if not connection.is_connected:  # its own `connect`: a Sentinel's asks for the master
            await connection.connect()
            self._connects += 1
        epoch = self._connects
        await connection.send_packed_command(pack_commands(batch.commands), check_health=False)
        return epoch

    async def read(self, batch: CommandBatch) -> list[Any]:
        """The replies of a batch written on this epoch, once those of every batch
        written before it have been read: each command's reply in order, an error reply
        (`ResponseError`) as its reply. A dropped connection raises `ConnectionError`."""
        connection = self._connection
        if connection is None or not connection.is_connected:
            raise redis.exceptions.ConnectionError("the connection closed before its replies")
        replies: list[Any] = []
        for _ in batch.commands:
            try:
                replies.append(await connection.read_response())
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
        return replies

    async def drop(self) -> None:
        """Close the connection (replies still due on it are never read); the next
        write opens a new one."""
        if self._connection is not None:
            await self._connection.disconnect()

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()  # replies may still be due on it
            await self._pool.release(connection)


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
