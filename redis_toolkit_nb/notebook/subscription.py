"""``Subscription``: what ``%%rtk_subscribe`` binds to NAME: a background subscriber, its
DataFrame, figures, controls, and live panel."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import CodeType
from typing import Any

import pandas as pd

from .. import Message, RedisOptions, RedisToolkit, Subscriber, SubscriberStats
from . import frames
from .logs import LOG
from .rates import RateHistory


class Subscription:
    """A running subscription started from a notebook.

    ``df`` is a DataFrame of the newest ``max_rows`` messages (oldest first) built when read;
    ``stats`` the subscriber's figures; ``stop()``, ``pause()``, ``resume()`` and ``clear()``
    control it; displaying it shows its live panel.

    ``body`` (compiled code) runs for every message with ``channel``, ``data`` and ``message``
    bound, in the notebook's namespace; names it assigns stay local to that message (use
    ``global`` or mutate an object to keep state), and its ``print`` goes to the panel's log.
    An exception in it is counted in ``stats.handler_errors`` and logged; the subscription
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
    ) -> None:
        self.name = name
        self.max_rows = max_rows
        self.requested = list(names)
        self._options = RedisOptions(buffer_size=max_rows, decode=decode)
        self._body = body
        self._namespace = namespace if namespace is not None else {}
        self._on_stop = on_stop
        #: ``print`` output of the cell body: (time, channel, text), newest last.
        self.prints: deque[tuple[float, Any, str]] = deque(maxlen=log_size)
        self._channel = threading.local()
        self.rates = RateHistory()
        self.started_at = time.time()
        self._stopped = False
        self._toolkit = RedisToolkit(url=url, options=self._options)
        self.url = self._toolkit.url
        LOG.watch(name)  # its live panel shows its warnings and handler errors
        self.subscriber = Subscriber(
            self._toolkit.client,
            options=self._options,
            name=name,
            on_message=self._run_body if body is not None else None,
        )
        try:
            self.subscriber.start(self.requested)
        except BaseException:
            self._toolkit.close()
            raise
        from .panel import LivePanel  # ipywidgets only when a subscription exists

        self.panel = LivePanel(self, log_size=log_size)

    # ---- the cell body -----------------------------------------------------------------------
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
        ``time`` (UTC), ``channel``, ``pattern`` (None for plain channels), ``data``, ``size``."""
        buffer = self.subscriber.buffer
        return frames.messages_frame(buffer.raw() if buffer is not None else [])

    def df_expanded(self, sep: str = ".") -> pd.DataFrame:
        """``df`` with dict payloads flattened into columns (``pandas.json_normalize``)."""
        return frames.expand(self.df, sep=sep)

    def export(self, path: str | Path) -> Path:
        """Write ``df`` to ``.parquet``, ``.csv`` or ``.json`` (payloads as JSON text, so any
        mix of payload types can be written); return the path."""
        path = Path(path)
        frame = frames.exportable(self.df)
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            frame.to_parquet(path, index=False)
        elif suffix == ".csv":
            frame.to_csv(path, index=False)
        elif suffix == ".json":
            frame.to_json(path, orient="records", lines=True, date_format="iso")
        else:
            raise ValueError(f"export to .parquet, .csv or .json, not {path.suffix or path.name}")
        return path

    @property
    def stats(self) -> SubscriberStats:
        """received, delivered, dropped, handler_errors, decode_errors, reconnects, rate, ..."""
        return self.subscriber.stats

    @property
    def channels(self) -> list[str]:
        return self.subscriber.channels

    @property
    def patterns(self) -> list[str]:
        return self.subscriber.patterns

    @property
    def failures(self) -> list[tuple[float, Any, Any, Exception, str]]:
        """Recent errors of the cell body: (time, channel, data, exception, traceback)."""
        return self.subscriber.failures

    # ---- control -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self._stopped

    @property
    def paused(self) -> bool:
        return self.subscriber.paused

    def pause(self) -> None:
        """Keep receiving and counting, but pass messages over (``stats.skipped``)."""
        self.subscriber.pause()
        self.panel.refresh()

    def resume(self) -> None:
        self.subscriber.resume()
        self.panel.refresh()

    def clear(self) -> None:
        """Empty the table, the log and the per-channel rates (the totals stay)."""
        self.subscriber.clear()
        self.prints.clear()
        self.rates.reset()
        self.panel.refresh()

    def stop(self, timeout: float | None = None) -> None:
        """Unsubscribe, stop the threads and close the connection. Idempotent; the DataFrame
        and figures stay readable."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.subscriber.stop(timeout)
        finally:
            self._toolkit.close()
            self.panel.stopped()
            if self._on_stop is not None:
                self._on_stop(self)

    # ---- display -----------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.panel.widget._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        s = self.stats
        state = "stopped" if self._stopped else ("paused" if s.paused else "running")
        names = ", ".join(self.subscriber.names) or ", ".join(self.requested)
        return (
            f"<Subscription {self.name} {state} on {names} at {self.url}: received "
            f"{s.received}, dropped {s.dropped}, handler errors {s.handler_errors}>"
        )
