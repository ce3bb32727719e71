"""``Subscriber``: a background subscription, its reader, dispatcher, buffer and figures.

A ``Subscriber`` runs until ``stop()``. It keeps itself alive through a module registry
(the guide creates subscribers inside functions and drops the reference), and every one
still running is stopped when the interpreter exits.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import redis

from ._buffer import MessageBuffer
from ._cluster import Cluster, SlotMap, addr_text, discover, probe, require_sharded
from ._dispatch import Dispatcher, Handler, Record
from ._health import SEVERITY, BufferGauge, ServerBuffer
from ._latency import LatencyTracker
from ._options import RedisOptions
from ._reader import CHANNEL, PATTERN, SHARD, Reader, is_pattern, to_bytes
from ._schema import SchemaTracker
from ._sequence import SequenceTracker
from ._shards import ShardReaders
from ._stats import NodeState, SubscriberStats
from ._subscriptions import MoveClock
from ._subscriptions import text as _text
from .exceptions import SubscriptionError

logger = logging.getLogger("redis_toolkit_nb")

_registry: set[Subscriber] = set()
_registry_lock = threading.Lock()
_ids = itertools.count(1)


def active_subscribers() -> list[Subscriber]:
    """Every subscriber of this process that has not been stopped."""
    with _registry_lock:
        return list(_registry)


@atexit.register
def _stop_all() -> None:
    for sub in active_subscribers():
        sub.stop(timeout=1.0)


def _split(names: Iterable[str | bytes]) -> tuple[list[bytes], list[bytes]]:
    if isinstance(names, (str, bytes)):
        names = [names]
    channels: list[bytes] = []
    patterns: list[bytes] = []
    for name in names:
        if not isinstance(name, (str, bytes)) or not name:
            raise SubscriptionError(
                f"a channel name must be a non-empty str or bytes, not {name!r}"
            )
        (patterns if is_pattern(name) else channels).append(to_bytes(name))
    return channels, patterns


def _sharded(names: Iterable[str | bytes]) -> list[bytes]:
    """Sharded channel names, taken literally (there are no sharded patterns)."""
    if isinstance(names, (str, bytes)):
        names = [names]
    out: list[bytes] = []
    for name in names:
        if not isinstance(name, (str, bytes)) or not name:
            raise SubscriptionError(
                f"a channel name must be a non-empty str or bytes, not {name!r}"
            )
        out.append(to_bytes(name))
    return out


class Subscriber:
    """Receives messages on a background thread and hands them to ``handler(channel, data)``.

    Built by ``RedisToolkit(channels=..., message_handler=...)``; use it directly for more
    control. ``on_message`` receives each message as a ``(time, channel, pattern, data,
    size)`` tuple (see ``Message``) before the handler. With ``external``, in place of both,
    no dispatcher thread runs: a consumer on its own thread takes batches of replies undecoded
    with ``take()`` and is told by ``external()`` when new ones may wait (``aio`` ``listen()``).

    With ``cluster`` (a Redis Cluster's slot map, see ``_cluster``), sharded channels are read
    from the node owning their slot, one connection per node, and follow their slot when it
    moves; channels and patterns move to another node when theirs is lost.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        handler: Handler | None = None,
        options: RedisOptions | None = None,
        name: str | None = None,
        on_message: Callable[[Record], object] | None = None,
        cluster: Cluster | None | bool = False,
        external: Callable[[], object] | None = None,
    ) -> None:
        self.options = options or RedisOptions()
        self.name = name or f"rtk-sub-{next(_ids)}"
        size = self.options.buffer_size
        self.buffer: MessageBuffer | None = MessageBuffer(size) if size else None
        #: Gaps, duplicates and reordering of ``options.seq_field`` per channel (None: off).
        self.sequence: SequenceTracker | None = None
        if self.options.seq_field:
            self.sequence = SequenceTracker(self.options.seq_field, self.loss_times)
        #: Latency per channel from ``options.latency_field``'s stamps (None: off).
        self.latency: LatencyTracker | None = None
        if self.options.latency_field:
            self.latency = LatencyTracker(self.options.latency_field)
        #: Fields, types and drift of the payloads per channel (``options.track_schema``).
        self.schema = SchemaTracker() if self.options.track_schema else None
        # Trackers see each batch of delivered messages, only when asked for: no cost per
        # message otherwise.
        trackers = [t for t in (self.sequence, self.latency, self.schema) if t is not None]
        self._dispatcher = Dispatcher(
            handler=handler,
            buffer=self.buffer,
            options=self.options,
            name=self.name,
            on_message=on_message,
            observe=[t.observe_batch for t in trackers],
            awaiting=self._awaiting,
            on_fatal=self._fatal,
            pull=self._pull,
            external=external,
        )
        self._pull_next = 0
        self._client = client
        self._clock = MoveClock()
        # ``cluster``: the cluster, None for a standalone server, False if not known yet (the
        # first connection asks, so a subscriber opens no connection of its own for that).
        self._cluster_known = cluster is not False
        self._cluster_lock = threading.Lock()
        #: Reads channels and patterns (and, on one server, sharded channels too).
        self._reader = self._new_reader(probe=None if self._cluster_known else self._probed)
        self._shards: ShardReaders | None = None
        if isinstance(cluster, Cluster):
            self._adopt(cluster)
        self._sharded_checked = False
        self._started_at = 0.0
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._gauge = BufferGauge()

    def _new_reader(self, **cluster: Any) -> Reader:
        address = cluster.get("address")
        return Reader(
            self._client,
            on_batch=self._dispatcher.put,
            room=self._dispatcher.room,
            on_data=self._dispatcher.wake,
            max_backlog=self.options.max_backlog_bytes,
            name=f"{self.name}@{addr_text(address)}" if address else self.name,
            retry_delay=float(self.options.subscriber_retry_delay),
            health_check_interval=float(self.options.health_check_interval),
            connect_timeout=float(self.options.connect_timeout),
            clock=self._clock,
            **cluster,
        )

    def _pull(self, queued: Callable[[], int]) -> tuple[list[Any], float] | None:
        """The dispatcher's next messages, parsed from the readers' pumps in turn (one
        reader, or one per node on a cluster): each reader keeps its own order."""
        shards = self._shards
        if shards is None:
            return self._reader.pull(queued)
        readers = [self._reader, *list(shards.readers.values())]
        start = self._pull_next
        for k in range(len(readers)):
            index = (start + k) % len(readers)
            got = readers[index].pull(queued)
            if got is not None:
                self._pull_next = index + 1  # the next call starts with the next reader
                return got
        return None

    def take(self) -> tuple[list[Any], float] | None:
        """With ``external``: the next batch of replies (``[b"message", channel, payload]``
        or ``[b"pmessage", pattern, channel, payload]``, undecoded) and when it was read, or
        None if nothing complete waits; ``sleep()`` before waiting for ``external()``."""
        return self._dispatcher.take()

    def sleep(self) -> None:
        """With ``external``: the consumer is about to wait (see ``Dispatcher.sleep``)."""
        self._dispatcher.sleep()

    def _adopt(self, cluster: Cluster) -> None:
        self._shards = ShardReaders(cluster, self._new_reader, self._clock, self._reader, self.name)
        if self._started_at:
            self._shards.start()

    def _probed(self, conn: Any) -> None:
        """The first connection's answer to CLUSTER SLOTS (reader thread)."""
        reply = probe(conn)
        with self._cluster_lock:
            if not self._cluster_known:
                self._cluster_known = True
                if reply is not None:
                    host = conn.host if hasattr(conn, "host") else "localhost"
                    self._adopt(Cluster(self._client, SlotMap(reply, host)))

    def _ensure_cluster_known(self) -> None:
        with self._cluster_lock:
            if self._cluster_known:
                return
            try:
                slots = discover(self._client)
            except (redis.RedisError, OSError):
                return  # unreachable now: sharded channels go to the one connection
            self._cluster_known = True
            if slots is not None:
                self._adopt(Cluster(self._client, slots))

    def _awaiting(self) -> bool:
        return self._reader.subs.awaiting or (self._shards is not None and self._shards.awaiting)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(
        self, channels: Iterable[str | bytes] = (), sharded: Iterable[str | bytes] = ()
    ) -> Subscriber:
        """Start the threads, subscribe to ``channels`` (and the ``sharded`` channels), and
        return once the server confirmed them (raise ``ToolkitConnectionError`` or
        ``SubscriptionError`` otherwise)."""
        chans, pats = self._request("sub", channels)
        shards = self._request_sharded("sub", sharded)
        self._started_at = time.monotonic()
        with _registry_lock:
            _registry.add(self)
        self._dispatcher.start()
        self._reader.start()
        with self._cluster_lock:
            if self._shards is not None:
                self._shards.start()
        try:
            self._wait(chans, pats, subscribed=True, first=True)
            self._wait_sharded(shards, subscribed=True, first=True)
        except BaseException:
            self.stop(timeout=1.0)
            raise
        if self.options.is_logger_info:
            logger.info("subscriber %s listening on %s", self.name, ", ".join(self.names))
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop reading, deliver what is queued (up to ``timeout``), join the threads and close
        the connection. Idempotent. Returns False if a handler was still running at the end."""
        with self._stop_lock:
            if self._stopped:
                return True
            self._stopped = True
        timeout = self.options.subscriber_stop_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        # Tell the dispatcher first: a reader blocked on a full queue ("block") lets go at once.
        self._dispatcher.begin_stop()
        reader_done = self._reader.stop(timeout)
        if self._shards is not None:
            reader_done = self._shards.stop(max(0.1, deadline - time.monotonic())) and reader_done
        dispatcher_done = self._dispatcher.stop(max(0.0, deadline - time.monotonic()))
        with _registry_lock:
            _registry.discard(self)
        self._gauge.close()
        if not dispatcher_done:
            logger.warning(
                "subscriber %s: the message handler was still running %g s after stop(); "
                "its thread is left to finish on its own (it is a daemon thread)",
                self.name,
                timeout,
            )
        return reader_done and dispatcher_done

    @property
    def running(self) -> bool:
        return not self._stopped and self._reader.alive

    # ---- subscriptions -----------------------------------------------------------------------
    def subscribe(
        self, *names: str | bytes, sharded: bool = False, timeout: float | None = None
    ) -> None:
        """Add channels or patterns (``sharded=True``: sharded channels, names taken
        literally) without interrupting the others; returns when confirmed."""
        if sharded:
            self._wait_sharded(self._request_sharded("sub", names), True, timeout=timeout)
            return
        chans, pats = self._request("sub", names)
        self._wait(chans, pats, subscribed=True, timeout=timeout)

    def unsubscribe(
        self, *names: str | bytes, sharded: bool = False, timeout: float | None = None
    ) -> None:
        """Remove channels or patterns (or sharded channels); returns when confirmed."""
        if sharded:
            self._wait_sharded(self._request_sharded("unsub", names), False, timeout=timeout)
            return
        chans, pats = self._request("unsub", names)
        self._wait(chans, pats, subscribed=False, timeout=timeout)

    def _request_sharded(self, action: str, names: Iterable[str | bytes]) -> list[bytes]:
        shards = _sharded(names)
        if not shards:
            return shards
        self._ensure_cluster_known()
        if action == "sub" and not self._sharded_checked:
            try:
                require_sharded(self._client, SubscriptionError)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                pass  # the reader reports an unreachable server
            self._sharded_checked = True
        if self._shards is not None:
            self._shards.request(action, shards)
            return shards
        self._reader.subs.request(action, SHARD, shards)
        return shards

    def _wait_sharded(
        self,
        names: list[bytes],
        subscribed: bool,
        *,
        first: bool = False,
        timeout: float | None = None,
    ) -> None:
        if not names:
            return
        timeout = self.options.subscribe_timeout if timeout is None else timeout
        if self._shards is None:
            self._reader.subs.wait(
                [(SHARD, n) for n in names],
                subscribed=subscribed,
                timeout=timeout,
                first=first,
                stopped=lambda: self._stopped,
                backlog=lambda: self._reader.backlog_bytes,
            )
            return
        deadline = time.monotonic() + timeout
        late, refused = self._shards.wait(names, subscribed=subscribed, timeout=timeout)
        if refused:
            self._refused_sharded(names, refused, deadline)
        if not late:
            return
        if subscribed:
            self._shards.request("unsub", late)  # a late confirmation must not linger
        listed = ", ".join(_text(n) for n in late)
        error = self._shards.last_error()
        why = f" (last error: {error})" if error else ""
        verb = "subscribing" if subscribed else "unsubscribing"
        raise SubscriptionError(
            f"subscriber {self.name}: the cluster did not confirm {verb} sharded channels "
            f"{listed} within {timeout:g} s{why}"
        )

    def _refused_sharded(
        self, names: list[bytes], refused: dict[bytes, str], deadline: float
    ) -> NoReturn:
        """Give up the refused names only (as on one server): the permitted ones of the same
        call stay wanted, and the error says whether they were confirmed."""
        assert self._shards is not None
        cause = next((e for n in refused if (e := self._shards.refusal(n)) is not None), None)
        self._shards.request("unsub", list(refused))
        others = [n for n in names if n not in refused]
        late, _ = self._shards.wait(
            others, subscribed=True, timeout=max(0.0, deadline - time.monotonic())
        )
        kept = [_text(n) for n in others if n not in late]
        also = f"; {', '.join(kept)} subscribed nonetheless" if kept else ""
        if late:
            also += f"; {', '.join(_text(n) for n in late)} not confirmed yet (still wanted)"
        listed = ", ".join(_text(n) for n in refused)
        reason = next(iter(refused.values()))
        raise SubscriptionError(
            f"the server refused to subscribe {listed}: {reason}{also}"
        ) from cause

    def _request(
        self, action: str, names: Iterable[str | bytes]
    ) -> tuple[list[bytes], list[bytes]]:
        """Ask the reader to (un)subscribe ``names``, split into channels and patterns."""
        chans, pats = _split(names)
        for kind, group in ((CHANNEL, chans), (PATTERN, pats)):
            if group:
                self._reader.subs.request(action, kind, group)
        return chans, pats

    def _wait(
        self,
        chans: list[bytes],
        pats: list[bytes],
        *,
        subscribed: bool,
        first: bool = False,
        timeout: float | None = None,
    ) -> None:
        self._reader.subs.wait(
            [(CHANNEL, n) for n in chans] + [(PATTERN, n) for n in pats],
            subscribed=subscribed,
            timeout=self.options.subscribe_timeout if timeout is None else timeout,
            first=first,
            stopped=lambda: self._stopped,
            backlog=lambda: self._reader.backlog_bytes,
        )

    def _fatal(self, exc: BaseException) -> None:
        """The handler raised SystemExit, KeyboardInterrupt or another non-``Exception``:
        the subscriber stops, and says so (``running`` False, ``last_error``, an ERROR line)."""
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._reader.subs.set_error(f"stopped: the message handler raised {what}")
        logger.error(
            "subscriber %s stopped: the message handler raised %s (not an Exception, so it "
            "is taken as a request to stop; messages not delivered are counted as dropped)",
            self.name,
            what,
        )
        self.stop(timeout=1.0)

    # ---- control and figures -----------------------------------------------------------------
    def pause(self) -> None:
        """Keep reading and counting, but pass messages over (counted in ``stats.skipped``)."""
        self._dispatcher.paused = True

    def resume(self) -> None:
        self._dispatcher.paused = False

    @property
    def paused(self) -> bool:
        return self._dispatcher.paused

    def clear(self) -> None:
        """Empty the buffer, the per-channel counts and the recent handler failures (the totals
        stay)."""
        if self.buffer is not None:
            self.buffer.clear()
        self._dispatcher.clear_counts()

    @property
    def channels(self) -> list[str]:
        """Confirmed channel subscriptions."""
        return self._reader.subs.confirmed_names(CHANNEL)

    @property
    def patterns(self) -> list[str]:
        """Confirmed pattern subscriptions."""
        return self._reader.subs.confirmed_names(PATTERN)

    @property
    def sharded_channels(self) -> list[str]:
        """Confirmed sharded channel subscriptions (on every node)."""
        if self._shards is None:
            return self._reader.subs.confirmed_names(SHARD)
        return sorted(_text(n) for n in self._shards.confirmed())

    @property
    def names(self) -> list[str]:
        """Every channel, pattern and sharded channel asked for, confirmed or not."""
        names = self._reader.subs.names()
        if self._shards is not None:
            names += [_text(n) for n in list(self._shards.wanted)]
        return names

    @property
    def failures(self) -> list[tuple[float, Any, Any, Exception, str]]:
        """Recent handler failures: (time, channel, data, exception, traceback), oldest first."""
        return list(self._dispatcher.failures)

    @property
    def stats(self) -> SubscriberStats:
        return self._stats(detail=True)

    def server_buffers(self) -> list[ServerBuffer]:
        """A reading of each connection's output buffer on the server (one connection; on a
        cluster, also one per node holding sharded channels), over a separate connection
        (see ``ServerBuffer``); up to a second per node when a server does not answer."""
        readers = [self._reader]
        if self._shards is not None:
            readers += list(self._shards.readers.values())
        return [self._gauge.read(reader) for reader in readers]

    def server_buffer(self) -> ServerBuffer:
        """The worst of ``server_buffers()``: how close the server is to cutting this
        subscriber off for reading too slowly."""
        return max(
            self.server_buffers(), key=lambda b: (SEVERITY.get(b.level, 1), b.fraction or 0.0)
        )

    def loss_times(self) -> list[float]:
        """When (``time.time()``) this subscriber's connections were lost, newest 100 each."""
        readers = [self._reader]
        if self._shards is not None:
            readers += list(self._shards.readers.values())
        return sorted(t for reader in readers for t in list(reader.losses))

    def totals(self) -> SubscriberStats:
        """``stats`` without the per-channel, per-pattern and per-link counts (left empty):
        its cost does not grow with the number of distinct channels, for views that read the
        figures several times a second."""
        return self._stats(detail=False)

    def _stats(self, detail: bool) -> SubscriberStats:
        r, d, subs = self._reader, self._dispatcher, self._reader.subs
        with subs.cv:
            chans = tuple(sorted(_text(n) for n in subs.confirmed[CHANNEL]))
            pats = tuple(sorted(_text(n) for n in subs.confirmed[PATTERN]))
            connected, last_error = subs.connected, subs.last_error
        readers = [r]
        disconnects, reconnects, truncated = 0, 0, 0
        nodes = {addr_text(r.address): NodeState(connected, True, ())}
        if self._shards is not None:
            shard_readers = list(self._shards.readers.values())
            readers += shard_readers
            disconnects, reconnects, truncated = self._shards.retired
            connected = connected and self._shards.connected
            last_error = last_error or self._shards.last_error()
            for reader in shard_readers:
                key = addr_text(reader.address)
                with reader.subs.cv:
                    state = reader.subs.connected
                    held = tuple(sorted(_text(n) for n in reader.subs.confirmed[SHARD]))
                old = nodes.get(key)
                nodes[key] = NodeState(state, old is not None, held)
        else:
            nodes[addr_text(r.address)] = NodeState(
                connected, True, tuple(self._reader.subs.confirmed_names(SHARD))
            )
        for reader in readers:
            disconnects += reader.disconnects
            reconnects += reader.reconnects
            truncated += reader.truncated
        clock = self._clock
        received, delivered, dropped, decode_errors, skipped, pending = d.counts()
        return SubscriberStats(
            received=received,
            delivered=delivered,
            dropped=dropped,
            handler_errors=d.handler_errors,
            decode_errors=decode_errors,
            raw_payloads=d.raw_payloads,
            skipped=skipped,
            pending=pending,
            unparsed_bytes=sum(x.backlog_bytes for x in readers),
            truncated=truncated,
            disconnects=disconnects,
            reconnects=reconnects,
            connected=connected,
            paused=d.paused,
            channels=chans,
            patterns=pats,
            sharded_channels=tuple(self.sharded_channels),
            moves=clock.moves,
            move_gap_s=clock.gap_total,
            max_move_gap_s=clock.gap_max,
            nodes=nodes,
            by_channel=dict(d.by_channel) if detail else {},
            by_pattern=dict(d.by_pattern) if detail else {},
            by_link=dict(d.by_link) if detail else {},
            last_error=last_error,
            uptime=time.monotonic() - self._started_at if self._started_at else 0.0,
        )

    def __repr__(self) -> str:
        state = (
            "stopped"
            if self._stopped
            else ("connected" if self._reader.subs.connected else "connecting")
        )
        s = self.stats
        return (
            f"<Subscriber {self.name} {state} channels={list(s.channels)} "
            f"patterns={list(s.patterns)} received={s.received} dropped={s.dropped}>"
        )
