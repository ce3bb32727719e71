"""A loopback Redis Cluster for the tests: 3 masters + 3 replicas on free ports.

Every node is a ``RedisServer`` (its own temp dir, stopped by PID at the end). The cluster is
built with ``<engine>-cli --cluster create``; ``ready()`` waits until every node agrees on 3
slot-serving masters and every replica's link is up (a fresh replica is gossiped as an empty
master for a moment). Helpers move a slot, fail over and find nodes, for tests that change
the topology and must put it back.
"""

from __future__ import annotations

import os
import subprocess
import time

import redis

from redis_toolkit_nb import EmbeddedServerError, RedisServer
from redis_toolkit_nb.embedded import free_port

NODE_TIMEOUT_MS = 2000


class LoopbackCluster:
    """Six nodes (three with ``replicas=0``); ``nodes[port]`` is the ``RedisServer``.

    ``tls=(cert, key)``: every node also serves TLS on ``tls_ports[port]``, and the cluster bus
    and replication speak TLS; the helpers below keep using the plain ports."""

    def __init__(
        self, binary: str, cli: str, replicas: int = 1, tls: tuple[str, str] | None = None
    ) -> None:
        self.binary = binary
        self.cli = cli
        self.replicas = replicas
        self.tls = tls
        self.nodes: dict[int, RedisServer] = {}
        self.tls_ports: dict[int, int] = {}

    def _start_node(self) -> RedisServer:
        """A node on free ports; ports taken before the node binds them (client sockets draw
        from the same range) are replaced, twice at most."""
        for attempt in range(3):
            port, bus = free_port(), free_port()
            node = RedisServer(
                self.binary,
                port=port,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    str(bus),
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(NODE_TIMEOUT_MS),
                    "--repl-diskless-sync-delay",
                    "0",
                    *self._tls_args(port),
                ],
            )
            try:
                return node.start()
            except EmbeddedServerError as exc:
                node.cleanup()
                if attempt == 2 or "Address already in use" not in str(exc):
                    raise
        raise AssertionError("unreachable")

    def _tls_args(self, port: int) -> list[str]:
        if self.tls is None:
            return []
        cert, key = self.tls
        self.tls_ports[port] = free_port()
        return [
            "--tls-port", str(self.tls_ports[port]), "--tls-cert-file", cert,
            "--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no",
            "--tls-cluster", "yes", "--tls-replication", "yes",
        ]  # fmt: skip

    def start(self) -> LoopbackCluster:
        for _ in range(3 * (1 + self.replicas)):
            node = self._start_node()
            self.nodes[node.port] = node
        addrs = [f"127.0.0.1:{p}" for p in self.nodes]
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *addrs,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        self.ready()
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            node.cleanup()

    # ---- looking ---------------------------------------------------------------------------
    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.any_master()}/0"

    def view(self, port: int) -> dict[str, tuple[str, int, str]]:
        """node id -> (role, port, master id) as node ``port`` sees the cluster."""
        out: dict[str, tuple[str, int, str]] = {}
        with self.client(port) as c:
            nodes = c.execute_command("CLUSTER NODES")  # parsed by redis-py into a dict
        for addr, info in nodes.items():
            role = "master" if "master" in info["flags"] else "slave"
            if "fail" in info["flags"] or not info.get("connected", True):
                role += "?"  # not reachable over the bus from here
            nport = int(addr.split(":")[1].split("@")[0] or port)
            out[info["node_id"]] = (role, nport, info.get("master_id", "-"))
        return out

    def slot_owner(self, slot: int, port: int | None = None) -> int:
        """The port of the master serving ``slot``, as node ``port`` sees it."""
        with self.client(port or self.any_master()) as c:
            for start, end, master, *_ in c.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return int(master[1])
        raise LookupError(slot)

    def masters(self) -> list[int]:
        port = next(p for p, n in self.nodes.items() if n.running)
        with self.client(port) as c:
            return sorted({int(e[2][1]) for e in c.execute_command("CLUSTER SLOTS")})

    def any_master(self) -> int:
        return self.masters()[0]

    def node_id(self, port: int) -> str:
        with self.client(port) as c:
            raw = c.execute_command("CLUSTER MYID")
        return raw.decode() if isinstance(raw, bytes) else raw

    def replica_of(self, master: int) -> int:
        mid = self.node_id(master)
        for port, node in self.nodes.items():
            if node.running and port != master:
                with self.client(port) as c:
                    info = c.info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == master:
                    return port
        raise LookupError(f"no replica of {master} ({mid})")

    def _port_of(self, asked: int, node_id: str) -> int:
        return self.view(asked)[node_id][1]

    def replica_up(self, port: int) -> bool:
        try:
            with self.client(port) as c:
                info = c.info("replication")
        except redis.RedisError:
            return False
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def ready(self, timeout: float = 30.0) -> None:
        """Every running node: cluster_state ok, 3 slot-serving masters in every view, the
        same owners, every replica's link up."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                if self._converged():
                    return
            except (redis.RedisError, OSError) as exc:
                last = str(exc)
            time.sleep(0.05)
        raise TimeoutError(f"the cluster did not settle within {timeout} s {last}")

    def _converged(self) -> bool:
        maps = set()
        for port, node in self.nodes.items():
            if not node.running:
                continue
            with self.client(port) as c:
                if c.info("cluster").get("cluster_enabled") != 1:
                    return False
                if c.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    return False
                slots = c.execute_command("CLUSTER SLOTS")
                maps.add(tuple(sorted((s, e, int(m[1])) for s, e, m, *_ in slots)))
                info = c.info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return False
        if len(maps) != 1:
            return False
        # Every view: every running node known, connected, with one role for each.
        views = [self.view(p) for p, n in self.nodes.items() if n.running]
        roles = {tuple(sorted((i, r) for i, (r, _, _) in v.items())) for v in views}
        if len(roles) != 1 or any(len(v) != len(self.nodes) for v in views):
            return False
        (only,) = maps
        return len({m for _, _, m in only}) == 3

    # ---- changing ----------------------------------------------------------------------------
    def move_slot(self, slot: int, dst: int) -> None:
        """Migrate ``slot`` (no keys in it) to master ``dst``, the order redis-cli uses."""
        src = self.slot_owner(slot)
        src_id, dst_id = self.node_id(src), self.node_id(dst)
        with self.client(dst) as d, self.client(src) as s:
            d.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            s.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
            d.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
            s.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)
        for port in self.masters():
            if port not in (src, dst):
                with self.client(port) as c:
                    c.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)

    def reshard(self, src: int, dst: int, count: int) -> None:
        """``<cli> --cluster reshard``: move ``src``'s ``count`` lowest slots to ``dst``, then
        wait until every node agrees (the next reshard checks that they do)."""
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "reshard",
                f"127.0.0.1:{src}",
                "--cluster-from",
                self.node_id(src),
                "--cluster-to",
                self.node_id(dst),
                "--cluster-slots",
                str(count),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=30,
        )
        self.ready()

    def acl_user(self, *rules: str) -> None:
        """``ACL SETUSER`` on every running node (a cluster does not propagate ACLs)."""
        for port, node in self.nodes.items():
            if node.running:
                with self.client(port) as c:
                    c.execute_command("ACL", "SETUSER", *rules)

    def failover(self, replica: int, takeover: bool = False) -> None:
        """``CLUSTER FAILOVER`` on ``replica`` (once its link to its master is up: a manual
        failover waits for the replica to be in sync); returns once it serves slots.

        ``takeover``: without the masters' votes. A master votes for one failover of a given
        shard per 2 x node timeout (4 s here): a failback right after a failover needs it."""
        deadline = time.monotonic() + 15
        while not self.replica_up(replica):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{replica} is not a replica in sync")
            time.sleep(0.02)
        rid = self.node_id(replica)
        mine = self.view(replica)
        master = mine[mine[rid][2]][1]
        # The master must know it as its replica over the bus, or it ignores the request.
        while self.view(master).get(rid, ("", 0, ""))[0] != "slave":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{master} does not see {replica} as its replica")
            time.sleep(0.02)
        with self.client(replica) as c:
            c.execute_command("CLUSTER FAILOVER", *(["TAKEOVER"] if takeover else []))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if replica in self.masters():
                return
            time.sleep(0.02)
        raise TimeoutError(f"{replica} did not become a master")


def cluster_cli(engine: str, binary: str) -> str:
    if engine == "valkey":
        return os.path.join(os.path.dirname(binary), "valkey-cli")
    return "redis-cli"
