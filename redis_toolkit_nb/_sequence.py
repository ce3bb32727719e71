"""Sequence checking: gaps, duplicates and reordering of an integer field, per channel.

A publisher that numbers its messages (``{"seq": 41}``, ``{"seq": 42}``...) lets a subscriber
see what Pub/Sub's at-most-once delivery lost. ``SequenceTracker.observe`` runs on the
dispatcher thread for every delivered message, only when ``RedisOptions.seq_field`` is set
(the dispatcher hands it each batch of delivered messages, ``observe_batch``; with the option
off nothing is added to the per-message path).

Per channel the tracker expects ``last + 1``. A higher number is a **gap** (the numbers
skipped are *missing*, remembered as holes); a lower number that fills a hole is a
**reorder** (it came late: one fewer missing); any other lower or equal number is a
**duplicate**. A publisher that restarts its count shows as duplicates until it passes its
old number.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import Any, NamedTuple

#: Holes remembered per channel (the oldest are forgotten: a very late message then counts
#: as a duplicate).
_MAX_HOLES = 1000
_CHANNEL = itemgetter(1)
_DATA = itemgetter(3)


class SequenceEvent(NamedTuple):
    """One irregularity: ``missing`` is how many messages it made missing (a gap: the numbers
    skipped; a reorder: -1, one came late; a duplicate: 0), so the events' ``missing`` sum to
    the messages missing now. ``disconnected``: a loss of the subscriber's connection fell
    between this message and the channel's previous one (the gap is then the reconnect's)."""

    time: float
    channel: Any
    kind: str
    expected: int
    got: int
    missing: int
    disconnected: bool


class SequenceTotals(NamedTuple):
    """Counts of a ``SequenceTracker``: events by kind, messages missing now, messages whose
    payload had no integer ``seq_field`` (not checked), channels followed."""

    gaps: int = 0
    missing: int = 0
    duplicates: int = 0
    reorders: int = 0
    unsequenced: int = 0
    channels: int = 0


class _Channel:
    __slots__ = ("expected", "last", "holes")

    def __init__(self, expected: int, last: float) -> None:
        self.expected = expected
        self.last = last  # the time of the channel's previous message
        self.holes: list[list[int]] = []  # [first, last] of the numbers missing, oldest first


class SequenceTracker:
    """Follows ``field`` (a dotted path into dict payloads: ``"seq"``, ``"meta.seq"``) on
    every channel; ``events`` holds the newest ``keep`` irregularities (None: all), oldest
    first.

    ``losses()`` returns the times (``time.time()``) the subscriber lost its connection; it is
    asked only when an irregularity is found.
    """

    def __init__(
        self,
        field: str,
        losses: Callable[[], list[float]] = list,
        keep: int | None = 10_000,
    ) -> None:
        self.field = field
        self._path = tuple(field.split("."))
        self._key = field if len(self._path) == 1 else None
        self._getter = itemgetter(field) if self._key is not None else None
        self._losses = losses
        self._channels: dict[Any, _Channel] = {}
        self.events: deque[SequenceEvent] = deque(maxlen=keep)
        self.gaps = self.missing = self.duplicates = self.reorders = self.unsequenced = 0

    def observe_batch(
        self, records: list[tuple[float, Any, Any, Any, int]], channel: Any = None
    ) -> None:
        """``observe`` every record of a batch, in order (``channel``: the one channel of
        them all, if the caller knows). The usual batch (one channel, the next numbers in a
        row) is checked by columns, with no loop in Python; anything else message by
        message."""
        getter = self._getter
        if getter is not None and records:
            one = channel is not None
            channel = records[0][1]
            state = self._channels.get(channel)
            if state is not None:
                try:
                    numbers = list(map(getter, map(_DATA, records)))
                except (KeyError, TypeError):  # a payload without it, or not a dict
                    numbers = []
                start, n = state.expected, len(records)
                if (
                    numbers
                    and numbers[-1] == start + n - 1
                    and numbers == list(range(start, start + n))
                    and set(map(type, numbers)) == {int}
                    and (one or list(map(_CHANNEL, records)).count(channel) == n)
                ):
                    state.expected = start + n
                    state.last = records[-1][0]
                    return
        for record in records:
            self.observe(record)

    def _number(self, data: Any) -> int | None:
        for key in self._path:
            if data.__class__ is not dict:
                return None
            data = data.get(key)
        return data if data.__class__ is int else None

    def observe(self, record: tuple[float, Any, Any, Any, int]) -> None:
        """Check one delivered message ``(time, channel, pattern, data, size)``."""
        t, channel, _, data, _ = record
        key = self._key
        if key is not None:  # one key, the usual case: no loop, no call
            seq = data.get(key) if data.__class__ is dict else None
            if seq.__class__ is not int:
                seq = None
        else:
            seq = self._number(data)
        if seq is None:
            self.unsequenced += 1
            return
        state = self._channels.get(channel)
        if state is None:
            self._channels[channel] = _Channel(seq + 1, t)
            return
        expected = state.expected
        if seq == expected:  # the usual case: one comparison
            state.expected = seq + 1
            state.last = t
            return
        if seq > expected:
            kind, missing = "gap", seq - expected
            state.holes.append([expected, seq - 1])
            if len(state.holes) > _MAX_HOLES:
                del state.holes[0]
            state.expected = seq + 1
            self.gaps += 1
        elif self._fill(state.holes, seq):
            kind, missing = "reorder", -1
            self.reorders += 1
        else:
            kind, missing = "duplicate", 0
            self.duplicates += 1
        self.missing += missing
        since = state.last
        state.last = t
        lost = any(since <= when <= t for when in self._losses())
        self.events.append(SequenceEvent(t, channel, kind, expected, seq, missing, lost))

    @staticmethod
    def _fill(holes: list[list[int]], seq: int) -> bool:
        """Remove ``seq`` from the holes; whether it was one."""
        for k, hole in enumerate(holes):
            first, last = hole
            if first <= seq <= last:
                if first == last:
                    del holes[k]
                elif seq == first:
                    hole[0] = seq + 1
                elif seq == last:
                    hole[1] = seq - 1
                else:
                    hole[1] = seq - 1
                    holes.insert(k + 1, [seq + 1, last])
                return True
        return False

    def table(self, tz: str = "UTC") -> Any:
        """The events as a DataFrame, oldest first (what ``feed.gaps()`` shows): ``time`` (in
        the time zone ``tz``), ``channel``, ``kind``, ``expected``, ``got``, ``missing`` and
        ``disconnected``. Imports pandas (only here)."""
        import pandas as pd

        columns = ["time", "channel", "kind", "expected", "got", "missing", "disconnected"]
        frame = pd.DataFrame(list(self.events), columns=columns)
        frame["time"] = pd.to_datetime(
            frame["time"].astype("float64"), unit="s", utc=True
        ).dt.tz_convert(tz)
        for column in ("expected", "got", "missing"):
            frame[column] = frame[column].astype("int64")
        frame["disconnected"] = frame["disconnected"].astype(bool)
        return frame

    def totals(self) -> SequenceTotals:
        return SequenceTotals(
            self.gaps,
            self.missing,
            self.duplicates,
            self.reorders,
            self.unsequenced,
            len(self._channels),
        )

    def __repr__(self) -> str:
        t = self.totals()
        return (
            f"<SequenceTracker {self.field!r}: {t.gaps} gaps ({t.missing} missing), "
            f"{t.duplicates} duplicates, {t.reorders} reordered on {t.channels} channel(s)>"
        )


def gaps_of(frame: Any, field: str) -> SequenceTracker:
    """The sequence check of a captured DataFrame (``feed.df``, ``read_capture(path)``): a
    ``SequenceTracker`` of ``field`` fed its rows in order; ``.table()`` is then what the live
    ``feed.gaps()`` showed, and ``.totals()`` its counts. A capture knows no disconnects, so
    ``disconnected`` is False throughout."""
    from ._capture import frame_records

    tracker = SequenceTracker(field, keep=None)
    for records in frame_records(frame):
        tracker.observe_batch(records)
    return tracker
