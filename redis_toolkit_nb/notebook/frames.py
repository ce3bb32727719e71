"""DataFrames built on read from a subscriber's buffer (pandas lives here, not in the core)."""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd

COLUMNS = ("time", "channel", "pattern", "data", "size")


def messages_frame(rows: list[tuple[float, Any, Any, Any, int]]) -> pd.DataFrame:
    """One row per message, oldest first: ``time`` (UTC timestamps), ``channel``, ``pattern``
    (None for a plain channel subscription), ``data`` (the decoded payload) and ``size``."""
    if rows:
        times, channels, patterns, data, sizes = zip(*rows, strict=False)
    else:
        times = channels = patterns = data = sizes = ()
    return pd.DataFrame(
        {
            "time": pd.to_datetime(pd.Series(times, dtype="float64"), unit="s", utc=True),
            "channel": pd.Series(channels, dtype=object),
            "pattern": pd.Series(patterns, dtype=object),
            "data": pd.Series(data, dtype=object),
            "size": pd.Series(sizes, dtype="int64"),
        },
        columns=list(COLUMNS),
    )


def expand(frame: pd.DataFrame, sep: str = ".") -> pd.DataFrame:
    """``frame`` with dict payloads flattened into columns (nested keys joined by ``sep``).

    Rows whose payload is not a dict keep it in ``data``; a payload key that collides with a
    message column is prefixed ``data.``.
    """
    base = frame.drop(columns=["data"]).reset_index(drop=True)
    payloads = list(frame["data"])
    dicts = [p if isinstance(p, dict) else {} for p in payloads]
    flat = pd.json_normalize(dicts, sep=sep) if any(dicts) else pd.DataFrame(index=base.index)
    flat.columns = [f"data{sep}{c}" if c in COLUMNS else c for c in flat.columns]
    flat.index = base.index
    other = pd.Series([None if isinstance(p, dict) else p for p in payloads], dtype=object)
    parts = [base, flat]
    if other.notna().any():
        parts.append(other.rename("data").to_frame().set_index(base.index))
    return pd.concat(parts, axis=1)


def exportable(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``data`` as JSON text, so any mix of payload types writes to Parquet."""

    def as_json(value: Any) -> str:
        if isinstance(value, bytes):
            return value.decode("utf-8", "backslashreplace")
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()

    return frame.assign(data=[as_json(v) for v in frame["data"]])


def subscriptions_frame(subs: list[Any]) -> pd.DataFrame:
    """One row per subscription with its figures (``%rtk subs``)."""
    rows = []
    for sub in subs:
        s = sub.stats
        rows.append(
            {
                "name": sub.name,
                "channels": ", ".join(s.channels),
                "patterns": ", ".join(s.patterns),
                "received": s.received,
                "rate": round(s.rate, 1),
                "dropped": s.dropped,
                "handler_errors": s.handler_errors,
                "decode_errors": s.decode_errors,
                "reconnects": s.reconnects,
                "connected": s.connected,
                "paused": s.paused,
                "rows": len(sub.subscriber.buffer or ()),
            }
        )
    columns = [
        "name",
        "channels",
        "patterns",
        "received",
        "rate",
        "dropped",
        "handler_errors",
        "decode_errors",
        "reconnects",
        "connected",
        "paused",
        "rows",
    ]
    return pd.DataFrame(rows, columns=columns)
