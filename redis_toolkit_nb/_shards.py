"""A subscriber's connections on a Redis Cluster, and the thread that keeps them homed.

Sharded channels (``SSUBSCRIBE``) live on the shard owning their slot: one reader per node
that holds any, all feeding the subscriber's one dispatcher. Classic channels and patterns
ride on one reader connected to any node (the subscriber's own), moved to another node when
that one is lost.

Moves, fastest first:
1. A node lets a sharded channel go on its own (a slot migration, a failover): the reader asks
   again on the same connection at once (``Subscriptions``); the node confirms (it still
   serves the shard) or answers ``MOVED``, and this module subscribes on the named node.
2. A node is lost: its readers keep retrying it (a restart is faster than a failover) while
   the watcher asks the other nodes for the slot map every ``POLL`` seconds and moves each
   channel whose slot has a new owner there.
3. Every ``RECONCILE`` seconds, wanted vs confirmed: a channel neither confirmed nor in flight
   (a missed push) is asked for again where the map says it lives, and one held by a node
   that no longer owns its slot (Redis 7.0 keeps a demoted master's sharded subscribers: it
   still serves the shard, as a replica) is moved to the slot's owner.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from ._cluster import Addr, Cluster, addr_text
from ._reader import SHARD, Reader
from ._subscriptions import MoveClock, text

logger = logging.getLogger("redis_toolkit_nb")

#: Seconds between two slot-map polls while a node is lost.
POLL = 0.15
#: Seconds between two reconciliations of wanted vs confirmed sharded subscriptions.
RECONCILE = 3.0

MakeReader = Callable[..., Reader]


class ShardReaders:
    """The per-node readers of sharded channels and the watcher thread (see the module)."""

    def __init__(
        self,
        cluster: Cluster,
        make_reader: MakeReader,
        clock: MoveClock,
        classic: Reader,
        name: str,
    ) -> None:
        self.cluster = cluster
        self._make_reader = make_reader
        self.clock = clock
        self.classic = classic
        self.name = name
        #: Shared by every sharded reader's subscription state: ``wait`` sleeps on it.
        self.cv = threading.Condition()
        self.readers: dict[Addr, Reader] = {}
        #: Sharded channels the user asked for, wherever they live now.
        self.wanted: dict[bytes, None] = {}
        #: (disconnects, reconnects, truncated) of readers already closed.
        self.retired = [0, 0, 0]
        self._lock = threading.RLock()
        self._redirects: deque[tuple[list[bytes], int, Addr]] = deque()
        self._event = threading.Event()
        self._stopping = False
        self._started = False
        self._last_refresh = 0.0
        self._thread = threading.Thread(target=self._run, name=f"{name}-cluster", daemon=True)

    # ---- other threads -------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()

    def stop(self, timeout: float) -> bool:
        self._stopping = True
        self._event.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            readers = list(self.readers.values())
        return all([r.stop(timeout) for r in readers]) and not self._thread.is_alive()

    def request(self, action: str, names: list[bytes]) -> None:
        """Subscribe ``names`` on their owners, or unsubscribe them wherever they are."""
        with self._lock:
            if action == "sub":
                groups: dict[Addr, list[bytes]] = {}
                for name in names:
                    self.wanted[name] = None
                    groups.setdefault(self.cluster.owner(name), []).append(name)
                for addr, group in groups.items():
                    self._reader(addr).subs.request("sub", SHARD, group)
                return
            for name in names:
                self.wanted.pop(name, None)
            for reader in self.readers.values():
                mine = [n for n in names if n in reader.subs.wanted[SHARD]]
                if mine:
                    reader.subs.request("unsub", SHARD, mine)
            for name in names:
                self.clock.forget(name)

    def _reader(self, addr: Addr) -> Reader:
        reader = self.readers.get(addr)
        if reader is None:
            reader = self.readers[addr] = self._make_reader(
                address=addr, cv=self.cv, on_redirect=self._redirected
            )
            reader.start()
        return reader

    def confirmed(self) -> set[bytes]:
        with self.cv:
            return {n for r in list(self.readers.values()) for n in r.subs.confirmed[SHARD]}

    def wait(
        self, names: list[bytes], *, subscribed: bool, timeout: float
    ) -> tuple[list[bytes], dict[bytes, str]]:
        """Wait until every name is confirmed (or released) on some node, or one is refused;
        returns the names still not there and the refused ones with the server's reason."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                readers = list(self.readers.values())
                confirmed = {n for r in readers for n in r.subs.confirmed[SHARD]}
                late = [n for n in names if (n in confirmed) != subscribed]
                refused = {
                    n: r.subs.refused[n] for r in readers for n in late if n in r.subs.refused
                }
                left = deadline - time.monotonic()
                if not late or refused or left <= 0:
                    return late, refused
                # Short waits: a redirect re-homes a name on another thread's reader.
                self.cv.wait(min(left, 0.05))

    def refusal(self, name: bytes) -> BaseException | None:
        """The server's refusal of ``name`` on whichever node refused it."""
        with self._lock:
            readers = list(self.readers.values())
        return next((e for r in readers if (e := r.subs.refusal(name)) is not None), None)

    def last_error(self) -> str | None:
        errors = [r.subs.last_error for r in list(self.readers.values()) if r.subs.last_error]
        return errors[-1] if errors else None

    @property
    def awaiting(self) -> bool:
        return any(r.subs.awaiting for r in list(self.readers.values()))

    @property
    def connected(self) -> bool:
        readers = list(self.readers.values())
        return all(r.subs.connected for r in readers) and not self.clock.homeless

    # ---- the reader threads' callback ------------------------------------------------------------
    def _redirected(self, names: list[bytes], slot: int, host: str, port: int) -> None:
        # Called with the shared cv held on a reader's thread: hand over, do not block.
        self._redirects.append((names, slot, (host, port)))
        self._event.set()

    # ---- the watcher thread --------------------------------------------------------------------
    def _run(self) -> None:
        next_reconcile = time.monotonic() + RECONCILE
        while not self._stopping:
            troubled = self._troubled()
            wait = POLL if troubled else max(0.0, next_reconcile - time.monotonic())
            self._event.wait(wait)
            self._event.clear()
            if self._stopping:
                break
            try:
                self._follow_redirects()
                if self._troubled():
                    self._rescue()
                if time.monotonic() >= next_reconcile:
                    next_reconcile = time.monotonic() + RECONCILE
                    self._reconcile()
                self._retire_idle()
            except Exception:  # noqa: BLE001 - the watcher must outlive any one failure
                logger.exception("subscriber %s: the cluster watcher failed; retrying", self.name)

    def _down(self, reader: Reader) -> bool:
        subs = reader.subs
        return not subs.link_up and subs.last_error is not None and reader.alive

    def _troubled(self) -> bool:
        if self._redirects or self.clock.homeless:
            return True
        if self._down(self.classic):
            return True
        return any(self._down(r) for r in list(self.readers.values()))

    def _follow_redirects(self) -> None:
        while self._redirects:
            names, slot, addr = self._redirects.popleft()
            self.cluster.map.assign(slot, addr)
            with self._lock:
                names = [n for n in names if n in self.wanted]
                if names:
                    self._reader(addr).subs.request("sub", SHARD, names)

    def _refresh(self, avoid: Addr | None) -> bool:
        now = time.monotonic()
        if now - self._last_refresh < POLL:
            return False
        self._last_refresh = now
        return self.cluster.refresh(avoid=avoid)

    def _rescue(self) -> None:
        """Lost nodes: move the classic reader to another node, and each sharded channel of
        a lost node to its slot's new owner once the map names one."""
        if self._down(self.classic):
            here = self.classic.address
            self._refresh(avoid=here)
            nodes = [a for a in self.cluster.map.nodes if a != here]
            if nodes:
                logger.warning(
                    "subscriber %s: node %s lost; moving channels and patterns to %s",
                    self.name,
                    addr_text(here),
                    addr_text(nodes[0]),
                )
                self.classic.retarget(nodes[0])
        with self._lock:
            lost = [r for r in self.readers.values() if self._down(r) and r.subs.wanted[SHARD]]
        for reader in lost:
            self._refresh(avoid=reader.address)
            self._rehome(reader, list(reader.subs.wanted[SHARD]))

    def _rehome(self, reader: Reader, names: list[bytes]) -> None:
        """Move each of ``names`` whose slot the map gives to another node there."""
        moves: dict[Addr, list[bytes]] = {}
        for name in names:
            owner = self.cluster.owner(name)
            if owner != reader.address:
                moves.setdefault(owner, []).append(name)
        with self._lock:
            for addr, group in moves.items():
                reader.subs.release(SHARD, group)
                group = [n for n in group if n in self.wanted]
                if group:
                    self._reader(addr).subs.request("sub", SHARD, group)

    def _reconcile(self) -> None:
        self._refresh(avoid=None)
        with self._lock:
            readers = list(self.readers.values())
            placed = {n for r in readers for n in r.subs.wanted[SHARD]}
            orphans = [n for n in self.wanted if n not in placed]
        queued = {n for names, _, _ in list(self._redirects) for n in names}
        orphans = [n for n in orphans if n not in queued]
        if orphans:
            logger.warning(
                "subscriber %s: reconcile found sharded channels on no node: %s",
                self.name,
                ", ".join(text(n) for n in orphans),
            )
            self.request("sub", orphans)
        for reader in readers:
            if not reader.subs.link_up:
                continue
            misplaced = [
                n
                for n in list(reader.subs.wanted[SHARD])
                if self.cluster.owner(n) != reader.address
            ]
            if misplaced:
                logger.info(
                    "subscriber %s: %s no longer owns the slot of %s; moving to the owner",
                    self.name,
                    addr_text(reader.address),
                    ", ".join(text(n) for n in misplaced),
                )
                self._rehome(reader, misplaced)
            stray = reader.subs.unsettled(SHARD)
            if stray:
                logger.warning(
                    "subscriber %s: reconcile found sharded channels unconfirmed on %s: %s",
                    self.name,
                    addr_text(reader.address),
                    ", ".join(text(n) for n in stray),
                )
                reader.subs.release(SHARD, stray)
                self.request("sub", [n for n in stray if n in self.wanted])

    def _retire_idle(self) -> None:
        with self._lock:
            idle = [
                a
                for a, r in self.readers.items()
                if not r.subs.wanted[SHARD] and not r.subs.awaiting
            ]
            readers = [self.readers.pop(a) for a in idle]
        for reader in readers:
            reader.stop(1.0)
            self.retired[0] += reader.disconnects
            self.retired[1] += reader.reconnects
            self.retired[2] += reader.truncated
