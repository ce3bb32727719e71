"""``Subscription``: what ``%%rtk_subscribe`` binds to NAME: a background subscriber, its
DataFrame, figures, controls, and live panel."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import CodeType
from typing import Any

import pandas as pd

from .. import (
    Message,
    RedisOptions,
    RedisToolkit,
    ServerBuffer,
    Subscriber,
    SubscriberStats,
    latency_table,
)
from . import frames
from .health import BufferSampler
from .logs import LOG
from .placement import Placement
from .rates import Traffic
from .snapshot import LATENCY_SHOWN, Snapshot


class Subscription:
    """A running subscription started from a notebook.

    ``df`` is a DataFrame of the newest ``max_rows`` messages (oldest first) built when read;
    ``export()`` writes it (``read_capture`` and ``%rtk_replay`` read it back); ``gaps()``
    lists sequence gaps (with ``seq_field``); ``latency()`` the latency per channel (with
    ``latency_field``); ``schema()``, ``schema_changes()`` and ``json_schema()`` describe the
    payloads' fields and their drift; ``expect()`` waits for and checks traffic;
    ``stats`` the subscriber's figures; ``stop()``, ``pause()``, ``resume()``, ``discard()``
    and ``clear()`` control it; displaying it shows its live panel; ``snapshot()`` is what the
    panel shows.

    ``body`` (compiled code) runs for every message with ``channel``, ``data`` and ``message``
    bound, in the notebook's namespace; names it assigns stay local to that message (use
    ``global`` or mutate an object to keep state), and its ``print`` goes to the panel's log.
    An exception in it is counted in ``stats.handler_errors``, kept in ``failures`` (with its
    traceback, whose lines point into the cell body) and shown in the panel; the subscription
    keeps running.
    """

    def __init__(
        self,
        names: Iterable[str],
        *,
        name: str,
        url: str | None = None,
        max_rows: int = 1000,
        decode: str = "auto",
        body: CodeType | None = None,
        namespace: dict[str, Any] | None = None,
        log_size: int = 50,
        on_stop: Callable[[Subscription], Any] | None = None,
        timezone: Callable[[], str] = lambda: "UTC",
        sharded: bool = False,
        seq_field: str | None = None,
        latency_field: str | None = None,
        track_schema: bool = True,
    ) -> None:
        self.name = name
        #: Whether ``names`` are sharded channels (SSUBSCRIBE) rather than channels/patterns.
        self.sharded = sharded
        #: Where each channel is read from, sampled over time (``df``'s ``node`` column).
        self.placement = Placement()
        self.max_rows = max_rows
        self.requested = list(names)
        self._options = RedisOptions(
            buffer_size=max_rows,
            decode=decode,
            seq_field=seq_field,
            latency_field=latency_field,
            track_schema=track_schema,
        )
        self._body = body
        self._namespace = namespace if namespace is not None else {}
        self._on_stop = on_stop
        #: ``print`` output of the cell body: (time, channel, text), newest last.
        self.prints: deque[tuple[float, Any, str]] = deque(maxlen=log_size)
        self._channel = threading.local()
        self._timezone = timezone
        self.traffic = Traffic()
        self.started_at = time.time()
        self._stopped = False
        self._paused_at: tuple[float, int] | None = None  # (time, traffic total) at Pause
        self._final: Snapshot | None = None
        self._toolkit = RedisToolkit(url=url, options=self._options)
        self.url = self._toolkit.url
        LOG.watch(name)  # its live panel shows its warnings and handler errors
        self.subscriber = Subscriber(
            self._toolkit.client,
            options=self._options,
            name=name,
            on_message=self._on_message,
        )
        self._gauge = BufferSampler(self.subscriber)
        try:
            if sharded:
                self.subscriber.start((), self.requested)
            else:
                self.subscriber.start(self.requested)
            self.placement.observe(self.subscriber.totals().nodes)
            self._gauge.prime()
            from .panel import LivePanel  # ipywidgets only when a subscription exists

            self.panel = LivePanel(self, log_size=log_size)
        except BaseException:
            # Whatever failed (the subscription, or building its panel), nothing keeps running.
            self._stopped = True
            try:
                self.subscriber.stop(1.0)
            finally:
                self._toolkit.close()
            raise

    @property
    def timezone(self) -> str:
        """The time zone of ``df`` and the panel's clock (``%config RtkMagics.timezone``)."""
        return self._timezone()

    # ---- every delivered message (the dispatcher thread) --------------------------------------
    def _on_message(self, record: tuple[float, Any, Any, Any, int]) -> None:
        self.traffic.count(record[1])
        if self._body is not None:
            self._run_body(record)

    @property
    def body_filename(self) -> str | None:
        """The file name the cell body was compiled with (its tracebacks' lines are there)."""
        return self._body.co_filename if self._body is not None else None

    def _run_body(self, record: tuple[float, Any, Any, Any, int]) -> None:
        message = Message._make(record)
        self._channel.value = message.channel
        local = {
            "channel": message.channel,
            "data": message.data,
            "message": message,
            "print": self._print,
        }
        # The user's own cell body, compiled once; errors are counted by the dispatcher.
        assert self._body is not None  # only installed with a body
        exec(self._body, self._namespace, local)  # noqa: S102

    def _print(self, *values: Any, sep: str | None = " ", end: str | None = "\n", **_: Any) -> None:
        text = (sep if sep is not None else " ").join(str(v) for v in values)
        self.prints.append((time.time(), getattr(self._channel, "value", None), text))

    # ---- data --------------------------------------------------------------------------------
    @property
    def df(self) -> pd.DataFrame:
        """The newest messages (at most ``max_rows``), oldest first, as a new DataFrame:
        ``time`` (in ``timezone``, UTC by default), ``channel``, ``pattern`` (the matching
        pattern; None for a plain channel subscription), ``data``, ``size``, ``kind``
        (``channel``, ``pattern`` or ``sharded``) and ``node`` (``host:port`` it was read
        from: on a cluster, the node holding the channel when it arrived, as sampled at each
        panel refresh; see ``placement``). Capturing goes on while the panel is paused."""
        buffer = self.subscriber.buffer
        rows = buffer.raw() if buffer is not None else []
        if self.running:
            self.placement.observe(self.subscriber.totals().nodes)
        frame = frames.messages_frame(rows, self.timezone)
        if self.sharded:
            kinds = ["sharded"] * len(rows)
        else:
            kinds = ["channel" if r[2] is None else "pattern" for r in rows]
        node_at = self.placement.node_at
        frame["kind"] = pd.Series(kinds, dtype=object)
        frame["node"] = pd.Series([node_at(r[1], r[0], self.sharded) for r in rows], dtype=object)
        return frame

    def df_expanded(self, sep: str = ".") -> pd.DataFrame:
        """``df`` with dict payloads flattened into columns (``pandas.json_normalize``);
        whole-number columns stay integers (``Int64``, nullable where a row lacks the key)."""
        return frames.expand(self.df, sep=sep)

    def export(self, path: str | Path) -> Path:
        """Write ``df`` to ``.parquet``, ``.csv`` or ``.json``/``.jsonl`` (JSON Lines, times to
        the nanosecond); payloads as JSON text, so any mix of payload types can be written.
        Return the path. ``redis_toolkit_nb.read_capture(path)`` reads it back as ``df``."""
        path = Path(path)
        frame = frames.exportable(self.df)
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            frame.to_parquet(path, index=False)
        elif suffix == ".csv":
            frame.to_csv(path, index=False)
        elif suffix in (".json", ".jsonl"):
            frames.write_json_lines(frame, path)
        else:
            raise ValueError(
                f"export to .parquet, .csv or .json/.jsonl, not {path.suffix or path.name}"
            )
        return path

    def gaps(self) -> pd.DataFrame:
        """Gaps, duplicates and reordering of the ``--seq-field`` per channel, oldest first:
        ``time``, ``channel``, ``kind`` (``gap``/``duplicate``/``reorder``), ``expected`` (the
        number due), ``got``, ``missing`` (a gap: the numbers skipped; a reorder: -1, one came
        late; so the column sums to the messages missing now) and ``disconnected`` (the
        subscriber lost its connection since the channel's previous message: at-most-once
        delivery at work). Counted from the start, beyond ``max_rows`` (the newest 10,000
        events; the panel's totals count every one); ``clear()`` keeps it."""
        tracker = self.subscriber.sequence
        if tracker is None:
            raise ValueError(
                f"{self.name}.gaps(): this subscription does not check sequence numbers; "
                "start it with --seq-field FIELD (e.g. %%rtk_subscribe ... --seq-field seq)"
            )
        return tracker.table(self.timezone)

    def latency(self) -> pd.DataFrame:
        """Latency per channel from the ``--latency-field`` stamps: ``channel``, ``count``
        (stamped messages since the start), ``p50_ms``, ``p99_ms`` (over each channel's
        newest 10,000), ``max_ms`` (since the start) and ``negative`` (stamped after they
        arrived: the publisher's clock is ahead). ``latency_table(df, field)`` computes the
        same from a capture."""
        tracker = self.subscriber.latency
        if tracker is None:
            raise ValueError(
                f"{self.name}.latency(): this subscription does not measure latency; start "
                "it with --latency-field FIELD (e.g. %%rtk_subscribe ... --latency-field ts)"
            )
        return latency_table(tracker)

    # ---- schema and drift (notebook subscriptions follow it unless --no-schema) ---------------
    def _schema(self, what: str) -> Any:
        tracker = self.subscriber.schema
        if tracker is None:
            raise ValueError(
                f"{self.name}.{what}(): this subscription does not follow the payloads' schema; "
                "start it without --no-schema"
            )
        return tracker

    def schema(self) -> pd.DataFrame:
        """One row per channel and field seen (a dotted path into dict payloads; a payload
        that is not a dict is ``(payload)``): ``types`` (JSON names: ``int|null``),
        ``count`` (messages with the field), ``present`` (their share of the channel's
        messages), ``null_rate``, ``first_seen``, ``last_seen``. From the start, beyond
        ``max_rows``; ``clear()`` keeps it. ``redis_toolkit_nb.schema_of(df)`` gives the same
        for a captured DataFrame."""
        return self._schema("schema").schema(self.timezone)

    def schema_changes(self) -> pd.DataFrame:
        """Drift, oldest first: ``time``, ``channel``, ``field``, ``change`` (``appeared``,
        ``disappeared``: once, the field is optional from then on, or ``type``), ``before``
        and ``after`` (types, ``int`` -> ``int|str``). The newest 10,000 events."""
        return self._schema("schema_changes").schema_changes(self.timezone)

    def json_schema(self, channel: str) -> dict[str, Any]:
        """A JSON Schema (draft 2020-12) of the payloads seen on ``channel``: types,
        properties, ``required`` (fields every message had), nested objects."""
        return self._schema("json_schema").json_schema(channel)

    def expect(
        self,
        count: int | None = None,
        channel: str | None = None,
        within: float = 5.0,
        no_gaps: bool = False,
        fields: Iterable[str] | Mapping[str, Any] | None = None,
    ) -> Any:
        """Wait up to ``within`` seconds until at least ``count`` messages (None: one) were
        delivered (on ``channel``, a name or a glob such as ``orders*``; counted since the
        start or the last ``clear()``), then check the rest; raise ``AssertionError`` saying
        what was expected and what arrived, else return what was met.

        ``no_gaps``: no sequence gap on those channels (needs ``--seq-field``); ``fields``:
        every kept message (``df``) on them has these fields (dotted paths into dict
        payloads), or, given a mapping, has these values.
        """
        from .expect import expect

        return expect(self, count, channel, within, no_gaps, fields)

    @property
    def stats(self) -> SubscriberStats:
        """received, delivered, dropped, handler_errors, decode_errors, reconnects, rate, ...
        (each read also samples where the channels are read from: see ``placement``)"""
        stats = self.subscriber.stats
        if self.running:
            self.placement.observe(stats.nodes)
        return stats

    @property
    def server_buffer(self) -> ServerBuffer | None:
        """The latest reading of this subscription's output buffer on the server (``omem``
        against ``client-output-buffer-limit pubsub``, ``level`` ok/warn/critical/unknown),
        taken about once a second while the panel refreshes; None before the first one and
        once stopped. ``subscriber.server_buffer()`` reads it now."""
        return self._gauge.poll() if self.running else None

    @property
    def channels(self) -> list[str]:
        return self.subscriber.channels

    @property
    def patterns(self) -> list[str]:
        return self.subscriber.patterns

    @property
    def sharded_channels(self) -> list[str]:
        """Confirmed sharded channels (``--sharded``), on every node."""
        return self.subscriber.sharded_channels

    @property
    def failures(self) -> list[tuple[float, Any, Any, Exception, str]]:
        """Recent errors of the cell body, oldest first: (time, channel, data, exception,
        traceback text). The traceback's lines point into the cell body (file
        ``body_filename``, line numbers counted from the first line after ``%%rtk_subscribe``)."""
        return self.subscriber.failures

    # ---- the view ----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """What the panel shows now (once stopped: what it showed when it stopped)."""
        if self._final is not None:
            return self._final
        return self._snapshot()

    def _snapshot(self, stopped_at: float | None = None, names: Any = None) -> Snapshot:
        stats = self.subscriber.totals()
        if stopped_at is None:
            self.placement.observe(stats.nodes)
        rates = self.traffic.rates(stopped_at, final=stopped_at is not None)
        paused = self._paused_at
        if stopped_at is not None:
            state = "stopped"
        else:
            state = "paused" if paused is not None else "running"
        if names is None:
            names = (stats.channels, stats.patterns, stats.sharded_channels, stats.nodes)
        channels, patterns, sharded, nodes = names
        return Snapshot(
            name=self.name,
            url=self.url,
            state=state,
            discarding=stats.paused,
            stats=stats,
            channels=tuple(channels),
            patterns=tuple(patterns),
            rates=rates,
            avg=stats.delivered / stats.uptime if stats.uptime > 0 else 0.0,
            new_since_pause=rates.total - paused[1] if paused is not None else 0,
            paused_at=paused[0] if paused is not None else None,
            stopped_at=stopped_at,
            failures=tuple(self.subscriber.failures),
            prints=tuple(self.prints),
            sharded=tuple(sharded),
            nodes=dict(nodes),
            moves=tuple(self.placement.moves),
            sequence=self._sequence_totals(),
            server_buffer=self.server_buffer if stopped_at is None else None,
            latency=self._latency_rows(),
            schema=self._schema_changes(),
        )

    def _sequence_totals(self) -> tuple[int, int, int, int] | None:
        tracker = self.subscriber.sequence
        if tracker is None:
            return None
        t = tracker.totals()
        return (t.gaps, t.missing, t.duplicates, t.reorders)

    def _latency_rows(self) -> tuple[int, tuple[tuple[Any, int, float, float, float], ...]] | None:
        tracker = self.subscriber.latency
        if tracker is None:
            return None
        rows = tracker.summary(top=LATENCY_SHOWN)  # the panel's: flat cost with many channels
        return tracker.channels, tuple((r.channel, r.messages, r.p50, r.p99, r.max) for r in rows)

    def _schema_changes(self) -> tuple[int, Any] | None:
        tracker = self.subscriber.schema
        if tracker is None:
            return None
        events = tracker.events
        return (tracker.changes, events[-1] if events else None)

    # ---- control -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self._stopped

    @property
    def paused(self) -> bool:
        """Whether the view is paused (capturing goes on)."""
        return self._paused_at is not None

    def pause(self) -> None:
        """Freeze the panel's view; messages keep arriving in ``df`` and the counters, and
        the panel says how many came since. ``resume()`` shows them."""
        if self._paused_at is None:
            self._paused_at = (time.time(), self.traffic.total)
        self.panel.refresh()

    def resume(self) -> None:
        """Unfreeze the view: it shows everything captured meanwhile."""
        self._paused_at = None
        self.panel.refresh()

    @property
    def discarding(self) -> bool:
        """Whether incoming messages are discarded (``discard()``)."""
        return self.subscriber.paused

    def discard(self, on: bool = True) -> None:
        """Discard incoming messages on purpose (``on=False``: keep them again): they are
        still read and counted in ``stats.received`` and ``stats.skipped``, never in ``df``."""
        if on:
            self.subscriber.pause()
        else:
            self.subscriber.resume()
        self.panel.refresh()

    def clear(self) -> None:
        """Empty the table, the log and the per-channel rates (the totals stay)."""
        self.subscriber.clear()
        self.prints.clear()
        self.traffic.reset()
        if self._paused_at is not None:
            self._paused_at = (self._paused_at[0], self.traffic.total)
        self.panel.cleared()

    def stop(self, timeout: float | None = None) -> None:
        """Unsubscribe, stop the threads and close the connection. Idempotent; the DataFrame,
        the figures and the panel's last view (channels, chart, rows) stay readable."""
        if self._stopped:
            return
        self._stopped = True
        stats = self.subscriber.totals()
        names = (stats.channels, stats.patterns, stats.sharded_channels, stats.nodes)
        try:
            self.subscriber.stop(timeout)
        finally:
            self._toolkit.close()
            self._final = self._snapshot(stopped_at=time.time(), names=names)
            self.panel.stopped()
            if self._on_stop is not None:
                self._on_stop(self)

    # ---- display -----------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.panel.widget._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        s = self.subscriber.totals()
        state = "stopped" if self._stopped else ("paused" if self.paused else "running")
        if s.paused and not self._stopped:
            state += ", discarding incoming"
        names = ", ".join(self.subscriber.names) or ", ".join(self.requested)
        return (
            f"<Subscription {self.name} {state} on {names} at {self.url}: received "
            f"{s.received}, dropped {s.dropped}, handler errors {s.handler_errors}>"
        )
