"""Schema per channel: the fields of payloads, their JSON types, and drift.

``SchemaTracker.observe_batch`` runs on the dispatcher thread once per batch of delivered
messages, only when ``RedisOptions.track_schema`` is set (with the option off nothing is added
to the per-message path). A field is a dotted path into dict payloads (``meta.by``; the parent
``meta`` is a field too, of type ``object``); a payload that is not a dict is recorded under
the field ``(payload)``. Types are named as JSON's: ``int``, ``float`` (a number with a
fraction), ``str``, ``bool``, ``null``, ``array`` (not looked into), ``object``; ``bytes`` for
a payload that was not text.

A **drift** event is a field that *appeared* (first seen on a channel after the channel's first
message), *disappeared* (a message lacks a field every earlier message on the channel had:
reported once, the field is optional from then on and its absence is not reported again) or
changed *type* (a type added to the field's set: ``int`` -> ``int|str``).

The fast path works by columns: for a batch of one channel, each known field's values are
taken with one C-level ``map`` and their types collected in a set; only when that shows
something new (a type, a key, a field missing that never was) is the batch walked message by
message, which finds the drift events exactly.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from itertools import groupby, repeat
from operator import itemgetter
from typing import Any, NamedTuple

from ._capture import frame_records

#: The field a payload that is not a dict is recorded under.
PAYLOAD = "(payload)"
#: Fields followed per channel; keys beyond are counted in ``untracked``, not followed.
MAX_FIELDS = 1000
DRAFT = "https://json-schema.org/draft/2020-12/schema"

_NAMES = {
    int: "int",
    float: "float",
    str: "str",
    bool: "bool",
    type(None): "null",
    list: "array",
    dict: "object",
    bytes: "bytes",
}
_ORDER = {n: k for k, n in enumerate(("int", "float", "str", "bool", "array", "object", "bytes"))}
_JSON = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "bool": "boolean",
    "null": "null",
    "array": "array",
    "object": "object",
}
_NONE = type(None)
_DICT_ONLY = frozenset((dict,))
_TIME = itemgetter(0)
_CHANNEL = itemgetter(1)
_DATA = itemgetter(3)
_GET = dict.get


class _Missing:
    __slots__ = ()


_MISSING = _Missing()


def types_text(types: Iterable[type]) -> str:
    """``int|null``: the JSON names of ``types``, in a fixed order (``null`` last)."""
    names = {_NAMES.get(t) or t.__name__ for t in types}
    return "|".join(sorted(names, key=lambda n: (n == "null", _ORDER.get(n, 99), n)))


class SchemaEvent(NamedTuple):
    """One drift: ``change`` is ``appeared`` (``before`` None), ``disappeared`` (``after``
    None) or ``type`` (``before`` ``int``, ``after`` ``int|str``)."""

    time: float
    channel: Any
    field: str
    change: str
    before: str | None
    after: str | None


class SchemaTotals(NamedTuple):
    """Counts of a ``SchemaTracker``: drift events by kind (every one, beyond the ``keep``
    newest kept), channels and fields followed, keys not followed (past ``MAX_FIELDS``)."""

    changes: int = 0
    appeared: int = 0
    disappeared: int = 0
    type_changes: int = 0
    channels: int = 0
    fields: int = 0
    untracked: int = 0


class _Node:
    """A field (or a channel's payload itself): its types, counts and children."""

    __slots__ = (
        "path",
        "key",
        "getter",
        "types",
        "count",
        "nulls",
        "objects",
        "first",
        "last",
        "children",
    )

    def __init__(self, path: str, key: Any, t: float) -> None:
        self.path = path
        self.key = key
        self.getter = itemgetter(key)
        self.types: set[type] = set()
        self.count = self.nulls = self.objects = 0
        self.first = self.last = t
        self.children: dict[str, _Node] = {}


class _Channel:
    __slots__ = ("root", "always", "messages", "fields")

    def __init__(self, t: float) -> None:
        self.root = _Node(PAYLOAD, None, t)
        #: Fields every message so far had (a message without one is a disappearance).
        self.always: set[_Node] = set()
        self.messages = 0
        self.fields = 0


class SchemaTracker:
    """Fields, types and drift of the payloads on every channel; ``events`` holds the newest
    ``keep`` drift events, oldest first. ``rows()`` and ``json_schema()`` may be called from
    any thread."""

    def __init__(self, keep: int = 10_000, max_fields: int = MAX_FIELDS) -> None:
        self._channels: dict[Any, _Channel] = {}
        self._lock = threading.Lock()
        self.max_fields = max_fields
        self.events: deque[SchemaEvent] = deque(maxlen=keep)
        self.changes = self.appeared = self.disappeared = self.type_changes = 0
        self.untracked = 0

    # ---- observing ---------------------------------------------------------------------------
    def observe(self, record: tuple[float, Any, Any, Any, int]) -> None:
        """One delivered message ``(time, channel, pattern, data, size)``."""
        self.observe_batch([record])

    def observe_batch(
        self, records: list[tuple[float, Any, Any, Any, int]], channel: Any = None
    ) -> None:
        """Delivered messages, in order, all with one ``time`` (the dispatcher's batch;
        ``channel``: the one channel of them all, if the caller knows)."""
        if channel is not None:
            with self._lock:
                self._group(channel, records, True)
            return
        self._observe(records, True)

    def observe_frame(self, frame: Any) -> None:
        """The rows of a DataFrame with ``time``, ``channel`` and ``data`` (``feed.df``,
        ``read_capture(path)``), in order: as if they were delivered now."""
        for records in frame_records(frame):
            self._observe(records, False)

    def _observe(self, records: list[Any], same_time: bool) -> None:
        if not records:
            return
        channel = records[0][1]
        n = len(records)
        with self._lock:
            if n == 1 or list(map(_CHANNEL, records)).count(channel) == n:
                self._group(channel, records, same_time)
                return
            groups: dict[Any, list[Any]] = {}
            for record in records:
                group = groups.get(record[1])
                if group is None:
                    groups[record[1]] = [record]
                else:
                    group.append(record)
            for name, group in groups.items():
                self._group(name, group, same_time)

    def _group(self, channel: Any, records: list[Any], same_time: bool) -> None:
        state = self._channels.get(channel)
        if state is not None:
            last = records[-1][0]
            if not same_time and list(map(_TIME, records)).count(last) == len(records):
                same_time = True
            if self._fast(state, list(map(_DATA, records)), last, not same_time):
                return
            if not same_time:  # (a frame) runs of one time each are exact
                for _, run in groupby(records, _TIME):
                    self._group(channel, list(run), True)
                return
        for record in records:
            self._slow(channel, record)

    def _fast(self, state: _Channel, datas: list[Any], t: float, whole: bool) -> bool:
        """Count a batch of one channel by columns; False (nothing counted) if it holds
        something new, or (``whole``: its times differ) a field only some messages have."""
        updates: list[tuple[_Node, int, int, int]] = []
        root = state.root
        # Only dicts so far, and a field every message had: its itemgetter (the first thing
        # run) raises TypeError on a payload that is not a dict, so no type check is needed.
        first = next(iter(root.children.values()), None)  # none yet: only {} seen so far
        trusted = root.types == _DICT_ONLY and first is not None and first in state.always
        if self._scan(root, datas, state.always, updates, whole, trusted) < 0:
            return False
        state.messages += len(datas)
        for node, present, nulls, objects in updates:
            if present:
                node.count += present
                node.nulls += nulls
                node.objects += objects
                node.last = t
        return True

    def _scan(
        self,
        node: _Node,
        values: list[Any],
        always: set[_Node],
        updates: list[tuple[_Node, int, int, int]],
        whole: bool,
        trusted: bool = False,
    ) -> int:
        """How many of ``values`` are present (not ``_MISSING``); -1 if something is new.
        ``trusted``: ``values`` are taken to be dicts (see ``_fast``)."""
        types = {dict} if trusted else set(map(type, values))
        missing = 0
        if _Missing in types:
            if whole:
                return -1
            types.discard(_Missing)
            missing = values.count(_MISSING)
        if not types <= node.types:
            return -1
        nulls = values.count(None) if _NONE in types else 0
        objects = 0
        if dict in types:
            if len(types) == 1 and not missing:
                dicts = values
            elif whole:
                return -1
            else:
                dicts = [v for v in values if v.__class__ is dict]
            objects = len(dicts)
            known = 0
            for child in node.children.values():
                present = self._child(child, dicts, always, updates, whole)
                if present < 0:
                    return -1
                known += present
            if sum(map(len, dicts)) != known:
                return -1  # a key not seen before (or one past MAX_FIELDS)
        present = len(values) - missing
        updates.append((node, present, nulls, objects))
        return present

    def _child(
        self,
        child: _Node,
        dicts: list[dict[Any, Any]],
        always: set[_Node],
        updates: list[tuple[_Node, int, int, int]],
        whole: bool,
    ) -> int:
        """``_scan`` of one field of ``dicts``; a field every message had is taken with
        ``itemgetter`` (a message without it is a disappearance: -1), and its column is
        made into a list only when its types call for it (nulls, nested dicts)."""
        if child in always:
            try:
                types = set(map(type, map(child.getter, dicts)))
            except (KeyError, TypeError):  # a message without it, or (trusted) not a dict
                return -1
            if not types <= child.types:
                return -1
            if _NONE not in types and dict not in types:
                updates.append((child, len(dicts), 0, 0))
                return len(dicts)
            column = list(map(child.getter, dicts))
        else:
            column = list(map(_GET, dicts, repeat(child.key), repeat(_MISSING)))
        return self._scan(child, column, always, updates, whole)

    def _slow(self, channel: Any, record: tuple[float, Any, Any, Any, int]) -> None:
        """One message, field by field: finds drift events exactly."""
        t, data = record[0], record[3]
        state = self._channels.get(channel)
        first = state is None
        if state is None:
            state = self._channels[channel] = _Channel(t)
        state.messages += 1
        seen: set[_Node] = set()
        self._walk(state, channel, state.root, data, t, first, seen)
        seen.discard(state.root)
        if first:
            state.always = seen
            return
        for node in sorted(state.always - seen, key=lambda n: n.path):
            state.always.discard(node)
            self._event(t, channel, node.path, "disappeared", types_text(node.types), None)

    def _walk(
        self,
        state: _Channel,
        channel: Any,
        node: _Node,
        value: Any,
        t: float,
        first: bool,
        seen: set[_Node],
    ) -> None:
        node.count += 1
        node.last = t
        seen.add(node)
        kind = value.__class__
        if kind not in node.types:
            before = types_text(node.types) if node.types else None
            node.types.add(kind)
            if before is not None:
                self._event(t, channel, node.path, "type", before, types_text(node.types))
        if value is None:
            node.nulls += 1
        elif kind is dict:
            node.objects += 1
            for key, item in value.items():
                child = node.children.get(key)
                if child is None:
                    if state.fields >= self.max_fields:
                        self.untracked += 1
                        continue
                    path = str(key) if node is state.root else f"{node.path}.{key}"
                    child = node.children[key] = _Node(path, key, t)
                    state.fields += 1
                    if not first:
                        self._event(t, channel, path, "appeared", None, types_text([type(item)]))
                self._walk(state, channel, child, item, t, first, seen)

    def _event(
        self, t: float, channel: Any, path: str, change: str, before: str | None, after: str | None
    ) -> None:
        self.events.append(SchemaEvent(t, channel, path, change, before, after))
        self.changes += 1
        if change == "appeared":
            self.appeared += 1
        elif change == "disappeared":
            self.disappeared += 1
        else:
            self.type_changes += 1

    # ---- reading -----------------------------------------------------------------------------
    def rows(self) -> list[tuple[Any, str, str, int, float, float, float, float]]:
        """One row per channel and field, channels and fields in the order first seen:
        (channel, field, types, count, present, null_rate, first, last). ``present`` is the
        share of the channel's messages that had the field, ``null_rate`` the share of those
        where it was null; ``(payload)`` is listed when a payload was not a dict."""
        out: list[tuple[Any, str, str, int, float, float, float, float]] = []
        with self._lock:
            for channel, state in self._channels.items():
                root = state.root
                nodes = [root] if root.types - {dict} else []
                stack = list(reversed(root.children.values()))
                while stack:
                    node = stack.pop()
                    nodes.append(node)
                    stack.extend(reversed(node.children.values()))
                for node in nodes:
                    out.append(
                        (
                            channel,
                            node.path,
                            types_text(node.types),
                            node.count,
                            node.count / state.messages,
                            node.nulls / node.count if node.count else 0.0,
                            node.first,
                            node.last,
                        )
                    )
        return out

    def json_schema(self, channel: Any) -> dict[str, Any]:
        """A JSON Schema (draft 2020-12) of what was seen on ``channel``: types, properties,
        ``required`` (the fields every message had), nested objects."""
        with self._lock:
            state = self._channels.get(channel)
            if state is None:
                seen = ", ".join(repr(c) for c in self._channels) or "none yet"
                raise KeyError(f"no message seen on channel {channel!r} (seen: {seen})")
            body = _node_schema(state.root)
        return {"$schema": DRAFT, "title": f"messages on {channel}", **body}

    @property
    def channels(self) -> list[Any]:
        with self._lock:
            return list(self._channels)

    def totals(self) -> SchemaTotals:
        with self._lock:
            fields = sum(s.fields for s in self._channels.values())
            return SchemaTotals(
                self.changes,
                self.appeared,
                self.disappeared,
                self.type_changes,
                len(self._channels),
                fields,
                self.untracked,
            )

    # ---- DataFrames (pandas imported only when asked for) --------------------------------------
    def schema(self, tz: str = "UTC") -> Any:
        """``rows()`` as a DataFrame: channel, field, types, count, present, null_rate,
        first_seen, last_seen (timestamps in ``tz``)."""
        import pandas as pd

        columns = ["channel", "field", "types", "count", "present", "null_rate"]
        frame = pd.DataFrame(self.rows(), columns=[*columns, "first_seen", "last_seen"])
        frame["count"] = frame["count"].astype("int64")
        for column in ("present", "null_rate"):
            frame[column] = frame[column].astype("float64")
        for column in ("first_seen", "last_seen"):
            frame[column] = _times(pd, frame[column], tz)
        return frame

    def schema_changes(self, tz: str = "UTC") -> Any:
        """``events`` as a DataFrame: time, channel, field, change, before, after."""
        import pandas as pd

        with self._lock:
            events = list(self.events)
        frame = pd.DataFrame(events, columns=list(SchemaEvent._fields), dtype=object)
        frame["time"] = _times(pd, frame["time"], tz)
        # Oldest first: a batch of several channels is checked channel by channel.
        return frame.sort_values("time", kind="stable", ignore_index=True)

    def __repr__(self) -> str:
        t = self.totals()
        return (
            f"<SchemaTracker {t.fields} fields on {t.channels} channel(s), {t.changes} "
            f"changes ({t.appeared} appeared, {t.disappeared} disappeared, "
            f"{t.type_changes} type)>"
        )


def _times(pd: Any, column: Any, tz: str) -> Any:
    return pd.to_datetime(column.astype("float64"), unit="s", utc=True).dt.tz_convert(tz)


def _node_schema(node: _Node) -> dict[str, Any]:
    names = types_text(node.types).split("|") if node.types else []
    schema: dict[str, Any] = {}
    if names and all(n in _JSON for n in names):  # bytes: no JSON type says it
        kinds = [_JSON[n] for n in names]
        schema["type"] = kinds[0] if len(kinds) == 1 else kinds
    if node.children:
        schema["properties"] = {key: _node_schema(c) for key, c in node.children.items()}
        required = [key for key, c in node.children.items() if c.count == node.objects]
        if required:
            schema["required"] = required
    return schema


def schema_of(frame: Any) -> SchemaTracker:
    """The schema and drift of a captured DataFrame (``feed.df``, ``read_capture(path)``):
    a ``SchemaTracker`` fed its rows in order; ``.schema()``, ``.schema_changes()`` and
    ``.json_schema(channel)`` then give what the live subscription's would."""
    tracker = SchemaTracker()
    tracker.observe_frame(frame)
    return tracker
