"""Redis Cluster: detection, the slot map, a client per node, and ``SPUBLISH`` routed by slot.

A toolkit given the address of any node asks it for ``CLUSTER SLOTS``: a standalone server
refuses ("cluster support disabled"), a cluster node answers with every slot range, its master
and its replicas. Clients for the other nodes are made from the first client's own connection
settings (credentials, TLS, RESP version), so ACL and TLS hold on every node.

The map is refreshed on demand: after a ``MOVED`` (one slot reassigned at once), and, when a
node is lost, by asking the other nodes (the lost one last) until one answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .exceptions import ToolkitError

Addr = tuple[str, int]
T = TypeVar("T")

# Map refreshes must not hang on a dead node: a short connect and reply timeout for them.
_PROBE_TIMEOUT = 0.5


def addr_text(addr: Addr) -> str:
    return f"{addr[0]}:{addr[1]}"


def _version(client: redis.Redis) -> tuple[int, ...] | None:
    try:
        info = client.info("server")
    except redis.ResponseError:
        return None  # INFO refused (an ACL user): let the server's own answer speak
    raw = str(info.get("redis_version", "0"))
    try:
        return tuple(int(p) for p in raw.split(".")[:2])
    except ValueError:
        return None


def require_sharded(client: redis.Redis, error: type[ToolkitError] = ToolkitError) -> None:
    """Raise ``error`` if the server is older than Redis 7.0 (no sharded Pub/Sub)."""
    version = _version(client)
    if version is not None and version < (7, 0):
        found = ".".join(str(p) for p in version)
        raise error(
            f"sharded Pub/Sub (SSUBSCRIBE/SPUBLISH) needs Redis 7.0 or newer; this server is "
            f"{found}: use classic channels (sharded=False)"
        )


class SlotMap:
    """Which master owns each of the 16384 slots, and the nodes of the cluster."""

    def __init__(self, reply: list[Any], default_host: str) -> None:
        self.owners: list[Addr | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self.masters: list[Addr] = []
        self.replicas: list[Addr] = []
        for entry in reply:
            start, end, master, *replicas = entry
            owner = self._addr(master, default_host)
            if owner not in self.masters:
                self.masters.append(owner)
            self.owners[int(start) : int(end) + 1] = [owner] * (int(end) - int(start) + 1)
            for replica in replicas:
                addr = self._addr(replica, default_host)
                if addr not in self.replicas:
                    self.replicas.append(addr)

    @staticmethod
    def _addr(node: list[Any], default_host: str) -> Addr:
        host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
        # An empty host means "the address you reached me on".
        return (host or default_host, int(node[1]))

    def owner(self, slot: int) -> Addr | None:
        return self.owners[slot]

    def assign(self, slot: int, addr: Addr) -> None:
        """A ``MOVED`` said where ``slot`` lives now."""
        self.owners[slot] = addr
        if addr not in self.masters:
            self.masters.append(addr)

    @property
    def nodes(self) -> list[Addr]:
        """Masters first, then replicas."""
        return self.masters + [r for r in self.replicas if r not in self.masters]


def discover(client: redis.Redis) -> SlotMap | None:
    """The cluster's slot map, or None when ``client`` talks to a standalone server.

    Asked on a connection of its own, closed after: the client's pool keeps only the
    connections its user opened (a test counting connections through a proxy sees no more)."""
    pool = client.connection_pool
    probe = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **pool.connection_kwargs
        )
    )
    try:
        return _discover(probe)
    finally:
        # Redis.close() leaves a pool it was given open: the socket would wait for the GC.
        probe.connection_pool.disconnect()


def _discover(client: redis.Redis) -> SlotMap | None:
    try:
        reply = client.execute_command("CLUSTER SLOTS")
    except redis.exceptions.NoPermissionError as exc:
        # An ACL user without CLUSTER SLOTS: is it a cluster at all?
        try:
            enabled = client.info("cluster").get("cluster_enabled") == 1
        except redis.ResponseError:
            return None
        if enabled:
            raise ToolkitError(
                "this server is a Redis Cluster node, but the user may not run CLUSTER SLOTS "
                "(grant +cluster|slots): the toolkit needs the slot map"
            ) from exc
        return None
    except redis.ResponseError as exc:
        text = str(exc).lower()
        if "cluster support disabled" in text or "unknown" in text:
            return None  # a standalone server (or one older than cluster support)
        raise
    host = client.connection_pool.connection_kwargs.get("host", "localhost")
    return SlotMap(reply, host)


def probe(conn: Any) -> list[Any] | None:
    """``CLUSTER SLOTS`` on a redis-py connection just opened (blocking): the reply, or None
    on a standalone server or when the user may not ask."""
    conn.send_command("CLUSTER", "SLOTS")
    try:
        reply = conn.read_response()
    except redis.ResponseError:
        return None
    return reply or None


class Cluster:
    """The slot map of a cluster and a redis-py client per node, made like ``seed``."""

    def __init__(self, seed: redis.Redis, slots: SlotMap) -> None:
        self.seed = seed
        pool = seed.connection_pool
        self._conn_class = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)
        self.seed_addr: Addr = (
            self._kwargs.get("host", "localhost"),
            self._kwargs.get("port", 6379),
        )
        self.map = slots
        self._lock = threading.Lock()
        self._clients: dict[Addr, redis.Redis] = {self.seed_addr: seed}
        self._probes: dict[Addr, redis.Redis] = {}

    def client(self, addr: Addr) -> redis.Redis:
        """The publishing client of node ``addr`` (the seed's own client for the seed)."""
        with self._lock:
            client = self._clients.get(addr)
            if client is None:
                client = self._clients[addr] = self._make(addr)
            return client

    def _make(self, addr: Addr, **extra: Any) -> redis.Redis:
        kwargs = dict(self._kwargs, host=addr[0], port=addr[1], **extra)
        pool = redis.ConnectionPool(connection_class=self._conn_class, **kwargs)
        return redis.Redis(connection_pool=pool)

    def owner(self, channel: bytes) -> Addr:
        """The master owning ``channel``'s slot (the seed while the map has a hole)."""
        return self.map.owner(key_slot(channel)) or self.seed_addr

    def refresh(self, avoid: Addr | None = None) -> bool:
        """Ask the known nodes (``avoid`` last) for the slot map; True if one answered."""
        nodes = [a for a in [*self.map.nodes, self.seed_addr] if a != avoid]
        if avoid is not None:
            nodes.append(avoid)
        for addr in dict.fromkeys(nodes):
            with self._lock:
                probe = self._probes.get(addr)
                if probe is None:
                    probe = self._probes[addr] = self._make(
                        addr, socket_timeout=_PROBE_TIMEOUT, socket_connect_timeout=_PROBE_TIMEOUT
                    )
            try:
                reply = probe.execute_command("CLUSTER SLOTS")
            except (redis.RedisError, OSError):
                continue
            if reply:
                self.map = SlotMap(reply, addr[0])
                return True
        return False

    def spublish(self, channel: bytes, payload: bytes) -> int:
        """``SPUBLISH`` on the owner of ``channel``'s slot; after a ``MOVED``, where it says;
        after a lost node, the owner a refreshed map names. Returns the owner's receivers."""
        for attempt in range(5):
            addr = self.owner(channel)
            try:
                return int(self.client(addr).execute_command("SPUBLISH", channel, payload))
            except redis.exceptions.MovedError as exc:
                self.map.assign(exc.slot_id, (exc.host or addr[0], int(exc.port)))
                if attempt == 4:
                    raise
            except (redis.ConnectionError, redis.TimeoutError):
                if attempt >= 1 or not self.refresh(avoid=addr) or self.owner(channel) == addr:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def fail_over(self, lost: Addr, attempt: Callable[[redis.Redis], T]) -> tuple[Addr, T]:
        """Classic commands (``PUBLISH``) work on any node: after ``lost`` failed, refresh the
        map from the other nodes and run ``attempt`` on each of them in turn (masters first)
        until one answers. Returns that node and its answer; raises the last link error when
        no node answers."""
        self.refresh(avoid=lost)
        last: BaseException | None = None
        for addr in dict.fromkeys([*self.map.nodes, self.seed_addr]):
            if addr == lost:
                continue
            try:
                return addr, attempt(self.client(addr))
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                last = exc
        raise last or redis.ConnectionError("no other node of the cluster is known")

    def close(self) -> None:
        with self._lock:
            clients = [c for a, c in self._clients.items() if a != self.seed_addr]
            clients += list(self._probes.values())
            self._clients = {self.seed_addr: self.seed}
            self._probes.clear()
        for client in clients:
            client.close()
