"""``read_capture``: a file written by ``Subscription.export()`` back into a DataFrame.

pandas is imported when a capture is read, never when the package is: the core stays light.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice, repeat
from pathlib import Path
from typing import Any

import orjson

COLUMNS = ("time", "channel", "pattern", "data", "size")
#: ``feed.df``'s further columns: which kind of subscription delivered a row, from which node.
#: A capture without them (made before they existed) gets them derived: ``kind`` from the
#: pattern, ``node`` unknown (None).
EXTRA = ("kind", "node")
#: Suffixes read as JSON Lines (``export()`` writes ``.json`` as JSON Lines).
JSON_LINES = (".json", ".jsonl", ".ndjson")


def read_capture(path: str | Path, tz: str = "UTC") -> Any:
    """Read a capture written by ``feed.export(path)`` (``.parquet``, JSON Lines ``.json``/
    ``.jsonl``, or ``.csv``) into the same shape as ``feed.df``: ``time`` (timestamps in
    ``tz``), ``channel``, ``pattern`` (None for a plain channel subscription), ``data`` (the
    payloads decoded again: dicts, lists, numbers, text), ``size`` (int64), ``kind``
    (``channel``, ``pattern`` or ``sharded``) and ``node`` (``host:port``, or None).

    ``export()`` writes each payload as JSON text, so every JSON payload comes back as the
    value it was; a payload that arrived as bytes (not UTF-8, or ``decode="raw"``) comes
    back as text. Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for an
    unknown suffix or a file that is not a capture (a column missing).
    """
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise FileNotFoundError(f"read_capture: no such file {str(path)!r}")
    if suffix == ".parquet":
        raw = pd.read_parquet(path)
        rows = {c: list(raw[c]) for c in raw.columns}
    elif suffix in JSON_LINES:
        records = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        known = set(COLUMNS + EXTRA)
        names = known.intersection(*[r.keys() for r in records]) if records else COLUMNS
        rows = {c: [r.get(c) for r in records] for c in names}
    elif suffix == ".csv":
        # keep_default_na=False: a payload "NA" or "null" stays text (it is JSON text anyway).
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        rows = {c: list(raw[c]) for c in raw.columns}
        rows["pattern"] = [p or None for p in rows.get("pattern", [])]
    else:
        raise ValueError(
            f"read_capture: read .parquet, .json/.jsonl (JSON Lines) or .csv, not "
            f"{path.suffix or path.name!r}"
        )
    missing = [c for c in COLUMNS if c not in rows]
    if missing:
        raise ValueError(
            f"read_capture: {str(path)!r} is not a capture written by export(): no "
            f"{', '.join(missing)} column(s)"
        )
    times = pd.to_datetime(pd.Series(rows["time"], dtype=object), utc=True, format="mixed")
    patterns = [_none(p) for p in rows["pattern"]]
    kinds = rows.get("kind") or ["channel" if p is None else "pattern" for p in patterns]
    nodes = [_none(n) for n in rows.get("node", [None] * len(patterns))]
    return pd.DataFrame(
        {
            # Nanoseconds as in feed.df, whatever unit the file kept.
            "time": times.dt.as_unit("ns").dt.tz_convert(tz),
            "channel": pd.Series(rows["channel"], dtype=object),
            "pattern": pd.Series(patterns, dtype=object),
            "data": pd.Series([_payload(d) for d in rows["data"]], dtype=object),
            "size": pd.Series(rows["size"]).astype("int64"),
            "kind": pd.Series([str(k) for k in kinds], dtype=object),
            "node": pd.Series(nodes, dtype=object),
        },
        columns=list(COLUMNS + EXTRA),
    )


def frame_records(frame: Any, size: int = 512) -> Iterator[list[tuple[float, Any, Any, Any, int]]]:
    """The rows of a capture (any DataFrame with ``time``, ``channel`` and ``data``) as the
    ``(time, channel, pattern, data, size)`` records a subscriber delivers, in order, times
    in seconds (``time.time()``), in lists of up to ``size``: what the trackers observe.
    (Made a list at a time: a million tuples alive at once would keep the cyclic garbage
    collector busy for seconds.)"""
    import pandas as pd

    # Seconds whatever the column's resolution (pandas may build it in us, not ns).
    times = (
        pd.to_datetime(frame["time"], utc=True).dt.as_unit("ns").astype("int64") / 1e9
    ).tolist()
    columns = frame.columns
    patterns = frame["pattern"].tolist() if "pattern" in columns else repeat(None)
    sizes = frame["size"].tolist() if "size" in columns else repeat(0)
    channels, data = frame["channel"].tolist(), frame["data"].tolist()
    rows = zip(times, channels, patterns, data, sizes, strict=False)
    while chunk := list(islice(rows, size)):
        yield chunk


def _none(value: Any) -> Any:
    # Parquet and CSV give NaN or "" for a missing pattern; feed.df has None.
    return value if isinstance(value, (str, bytes)) and value else None


def _payload(text: Any) -> Any:
    """A payload exported as JSON text, decoded; text that is not JSON stays text."""
    if not isinstance(text, (str, bytes)):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
