"""A private Redis Cluster on loopback, for teaching and demos: ``start_cluster()``.

Each node is a ``RedisServer`` (the bundled Valkey by default) started with
``--cluster-enabled yes`` on a free port and a free bus port. The cluster is joined with
CLUSTER commands over redis-py, no ``redis-cli`` needed: a distinct config epoch per node,
``ADDSLOTSRANGE`` on the masters, ``MEET``, then ``REPLICATE`` on the replicas; ``start()``
returns once every node agrees on the slot map and every replica is in sync (about 2-3 s: a
fresh master waits 2 s before it reports ``cluster_state:ok``).

Nothing outlives its owner: ``stop()`` at interpreter exit (atexit), and each node has the
``watch_parent`` watchdog that stops it when the owning process dies without running atexit
(a SIGKILLed kernel).
"""

from __future__ import annotations

import atexit
import time
from typing import Any

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from ..exceptions import EmbeddedServerError
from ._server import RedisServer, free_port

#: The cluster's node timeout: how long a master must be unreachable before its replica is
#: promoted (short, so a teaching failover after a kill takes seconds).
NODE_TIMEOUT_MS = 2000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class EmbeddedCluster:
    """``masters`` masters with ``replicas`` replicas each, on free loopback ports.

    ``url`` is a master's URL (the toolkit finds the other nodes from any one); ``nodes``
    the ``RedisServer`` of every node (masters first, as started); ``stop()`` stops them all.
    ``move_slot()`` and ``failover()`` change the topology live, for demos.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        *,
        binary: str | None = None,
        host: str = "127.0.0.1",
        node_timeout_ms: int = NODE_TIMEOUT_MS,
        watch_parent: bool = True,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError(f"need masters >= 1 and replicas >= 0, not {masters}, {replicas}")
        self.host = host
        self.n_masters = masters
        self.n_replicas = replicas
        self.nodes: list[RedisServer] = []
        self._binary = binary
        self._node_timeout_ms = node_timeout_ms
        self._watch_parent = watch_parent
        for _ in range(masters * (1 + replicas)):
            self.nodes.append(self._new_node())
        self._started = False

    def _new_node(self) -> RedisServer:
        """A node on free ports (its client port, and its cluster bus port)."""
        bus = free_port(self.host)
        args = [
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(bus),
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self._node_timeout_ms),
            # Replicas sync at once (the default waits 5 s for more replicas).
            "--repl-diskless-sync-delay",
            "0",
        ]
        node = RedisServer(
            self._binary, host=self.host, extra_args=args, watch_parent=self._watch_parent
        )
        return node

    def _start_node(self, index: int) -> None:
        """Start node ``index``; a port taken meanwhile by another process (its bus port: the
        client port is retried by RedisServer itself) gets the node new ports."""
        for attempt in range(3):
            node = self.nodes[index]
            try:
                node.start()
                return
            except EmbeddedServerError as exc:
                if attempt == 2 or "Address already in use" not in str(exc):
                    raise
                node.cleanup()
                self.nodes[index] = self._new_node()

    # ---- looking ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The URL of a master (the first one that answers)."""
        return f"redis://{self.host}:{self.masters()[0]}/0"

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def client(self, port: int) -> redis.Redis:
        """A short-lived client of node ``port`` (use it in a ``with``)."""
        return redis.Redis(host=self.host, port=port, socket_timeout=2, socket_connect_timeout=1)

    def _slots(self) -> list[Any]:
        for node in self.nodes:
            if not node.running:
                continue
            try:
                with self.client(node.port) as c:
                    return list(c.execute_command("CLUSTER SLOTS"))
            except (redis.RedisError, OSError):
                continue
        raise EmbeddedServerError("no node of the embedded cluster answers")

    def masters(self) -> list[int]:
        """The ports of the masters serving slots now, sorted."""
        return sorted({int(entry[2][1]) for entry in self._slots()})

    def owner(self, channel_or_slot: str | int) -> int:
        """The port of the master owning a channel's (or a slot's) slot."""
        slot = self.slot(channel_or_slot)
        for start, end, master, *_ in self._slots():
            if int(start) <= slot <= int(end):
                return int(master[1])
        raise EmbeddedServerError(f"no master serves slot {slot}")

    @staticmethod
    def slot(channel_or_slot: str | int) -> int:
        """The hash slot of a channel name (what ``{...}`` hash tags choose), or the slot."""
        if isinstance(channel_or_slot, int):
            return channel_or_slot
        return int(key_slot(channel_or_slot.encode()))

    def node_id(self, port: int) -> str:
        with self.client(port) as c:
            return _text(c.execute_command("CLUSTER MYID"))

    def replicas_of(self, master: int) -> list[int]:
        """The ports of ``master``'s replicas (as they say themselves)."""
        out = []
        for node in self.nodes:
            if node.running and node.port != master:
                try:
                    with self.client(node.port) as c:
                        info = c.info("replication")
                except (redis.RedisError, OSError):
                    continue
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == master:
                    out.append(node.port)
        return out

    def __repr__(self) -> str:
        state = "running" if self._started else "stopped"
        return (
            f"<EmbeddedCluster {self.n_masters} masters x {self.n_replicas} replicas on "
            f"{self.host}:{','.join(str(p) for p in self.ports)} {state}>"
        )

    # ---- life --------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        """Start the nodes, join them into a cluster and wait until it is ready."""
        if self._started:
            return self
        atexit.register(self.stop)
        self._started = True
        try:
            for index in range(len(self.nodes)):
                self._start_node(index)
            self._join()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _join(self) -> None:
        masters = self.nodes[: self.n_masters]
        ids = [self.node_id(n.port) for n in self.nodes]
        share = REDIS_CLUSTER_HASH_SLOTS // self.n_masters
        for i, node in enumerate(self.nodes):
            with self.client(node.port) as c:
                # Distinct epochs up front: no epoch collision to resolve after MEET.
                c.execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
                if i < self.n_masters:
                    first = i * share
                    last = first + share - 1
                    if i == self.n_masters - 1:
                        last = REDIS_CLUSTER_HASH_SLOTS - 1
                    c.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
        with self.client(self.nodes[0].port) as c:
            for node in self.nodes[1:]:
                c.execute_command("CLUSTER MEET", self.host, node.port, _bus_port(node))
        self._until(lambda: all(self._knows_all(n.port, ids) for n in self.nodes), 10, "meet")
        for k, node in enumerate(self.nodes[self.n_masters :]):
            master = masters[k % self.n_masters]
            with self.client(node.port) as c:
                c.execute_command("CLUSTER REPLICATE", ids[self.nodes.index(master)])

    def _knows_all(self, port: int, ids: list[str]) -> bool:
        with self.client(port) as c:
            view = c.execute_command("CLUSTER NODES")
        known = {info["node_id"] for info in view.values() if info.get("connected", True)}
        return set(ids) <= known

    @staticmethod
    def _until(predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (redis.RedisError, OSError) as exc:
                last = f": {exc}"
            time.sleep(0.05)
        raise EmbeddedServerError(f"the embedded cluster did not {what} within {timeout:g} s{last}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every running node says ``cluster_state:ok`` with the same slot map of
        ``masters`` masters, has a bus link to every other running node, and every replica's
        link to its master is up."""
        self._until(self._ready, timeout, "become ready")

    def _ready(self) -> bool:
        maps = set()
        running = [n for n in self.nodes if n.running]
        for node in running:
            with self.client(node.port) as c:
                if c.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    return False
                # Every bus link up: a message to a node whose link is down is not sent.
                view = c.execute_command("CLUSTER NODES").values()
                linked = [i for i in view if i.get("connected") and "fail" not in i["flags"]]
                if len(linked) < len(running):
                    return False
                slots = c.execute_command("CLUSTER SLOTS")
                maps.add(tuple(sorted((int(s), int(e), int(m[1])) for s, e, m, *_ in slots)))
                info = c.info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return False
        if len(maps) != 1:
            return False
        (only,) = maps
        return len({m for _, _, m in only}) == self.n_masters

    def stop(self) -> None:
        """Stop every node and remove its files. Idempotent."""
        atexit.unregister(self.stop)
        self._started = False
        for node in self.nodes:
            node.cleanup()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- changing, live ----------------------------------------------------------------------
    def move_slot(self, channel_or_slot: str | int, to: int) -> int:
        """Migrate a channel's slot (or a slot) to master ``to``, as ``redis-cli --cluster
        reshard`` does; the slot must hold no keys (Pub/Sub channels are not keys). Returns
        the port it moved from."""
        slot = self.slot(channel_or_slot)
        src = self.owner(slot)
        if src == to:
            return src
        src_id, dst_id = self.node_id(src), self.node_id(to)
        with self.client(src) as s:
            if int(s.execute_command("CLUSTER COUNTKEYSINSLOT", slot)):
                raise EmbeddedServerError(f"slot {slot} holds keys: move_slot moves empty slots")
        with self.client(to) as d, self.client(src) as s:
            d.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            s.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
            d.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
            s.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        for port in self.masters():
            if port not in (src, to):
                with self.client(port) as c:
                    c.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        return src

    def failover(self, master: int, timeout: float = 15.0) -> int:
        """Promote a replica of ``master`` (``CLUSTER FAILOVER`` on it, once it is in sync);
        returns the new master's port once it serves the slots."""
        deadline = time.monotonic() + timeout
        replicas: list[int] = []
        while not replicas:
            replicas = [p for p in self.replicas_of(master) if self._in_sync(p)]
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"{master} has no replica in sync to fail over to")
            time.sleep(0.02)
        replica = replicas[0]
        rid = self.node_id(replica)
        # The master must know it as its replica over the bus, or it ignores the request.
        self._until(lambda: self._sees_replica(master, rid), timeout, f"see {replica} replicate")
        with self.client(replica) as c:
            c.execute_command("CLUSTER FAILOVER")
        try:
            # A manual failover the master did not take up times out after 5 s.
            self._until(lambda: replica in self.masters(), 6.0, f"promote {replica}")
        except EmbeddedServerError:
            with self.client(replica) as c:
                c.execute_command("CLUSTER FAILOVER", "FORCE")
            self._until(lambda: replica in self.masters(), timeout, f"promote {replica}")
        return replica

    def _sees_replica(self, master: int, rid: str) -> bool:
        with self.client(master) as c:
            view = c.execute_command("CLUSTER NODES")
        return any(i["node_id"] == rid and "slave" in i["flags"] for i in view.values())

    def _in_sync(self, port: int) -> bool:
        with self.client(port) as c:
            info = c.info("replication")
        return info.get("master_link_status") == "up"


def start_cluster(
    masters: int = 3,
    replicas: int = 0,
    *,
    binary: str | None = None,
    timeout: float = 30.0,
) -> EmbeddedCluster:
    """Start a private Redis Cluster of ``masters`` masters (and ``replicas`` replicas each)
    on free loopback ports, with the bundled Valkey (else ``redis-server`` on PATH), and
    return it once ready (a few seconds). It stops with this process (atexit, and a watchdog
    if the process is killed); ``stop()`` stops it sooner.

    ::

        cluster = start_cluster(masters=3, replicas=1)
        tk = RedisToolkit(url=cluster.url, sharded_channels=["orders:{eu}"], message_handler=h)
        cluster.move_slot("orders:{eu}", to=cluster.masters()[-1])  # a live migration
        cluster.failover(cluster.owner("orders:{eu}"))  # its replica takes over
        cluster.stop()
    """
    return EmbeddedCluster(masters, replicas, binary=binary).start(timeout)


def _bus_port(node: RedisServer) -> int:
    """A node's cluster bus port, as given on its command line."""
    args = node.extra_args
    return int(args[args.index("--cluster-port") + 1])
