"""DataFrames built on read from a subscriber's buffer (pandas lives here, not in the core)."""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd

COLUMNS = ("time", "channel", "pattern", "data", "size")


def messages_frame(rows: list[tuple[float, Any, Any, Any, int]], tz: str = "UTC") -> pd.DataFrame:
    """One row per message, oldest first: ``time`` (timestamps in ``tz``), ``channel``,
    ``pattern`` (the matching pattern; None for a plain channel subscription, never an empty
    string), ``data`` (the decoded payload) and ``size``."""
    if rows:
        times, channels, patterns, data, sizes = zip(*rows, strict=False)
    else:
        times = channels = patterns = data = sizes = ()
    return pd.DataFrame(
        {
            "time": pd.to_datetime(
                pd.Series(times, dtype="float64"), unit="s", utc=True
            ).dt.tz_convert(tz),
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
    message column is prefixed ``data.``. A column whose values are all whole numbers stays
    integer (``Int64``, with ``<NA>`` where a row lacks the key), not float.
    """
    base = frame.drop(columns=["data"]).reset_index(drop=True)
    payloads = list(frame["data"])
    dicts = [p if isinstance(p, dict) else {} for p in payloads]
    # Flattened as Python objects first: pandas' json_normalize fills a missing key with NaN,
    # which turns a column of whole numbers into floats (seq 3 -> 3.0).
    records = [_flatten(d, "", sep, {}) for d in dicts]
    flat = pd.DataFrame(records, dtype=object, index=base.index)
    for column in flat.columns:
        values = flat[column].dropna()
        if len(values) and all(type(v) is int for v in values):
            flat[column] = flat[column].astype("Int64")
        else:
            flat[column] = flat[column].infer_objects()
    flat.columns = [f"data{sep}{c}" if c in COLUMNS else c for c in flat.columns]
    other = pd.Series([None if isinstance(p, dict) else p for p in payloads], dtype=object)
    parts = [base, flat]
    if other.notna().any():
        parts.append(other.rename("data").to_frame().set_index(base.index))
    return pd.concat(parts, axis=1)


def _flatten(value: dict[Any, Any], prefix: str, sep: str, out: dict[str, Any]) -> dict[str, Any]:
    for key, item in value.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(item, dict) and item:
            _flatten(item, name, sep, out)
        else:
            out[name] = item
    return out


def exportable(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``data`` as JSON text, so any mix of payload types writes to Parquet."""

    def as_json(value: Any) -> str:
        if isinstance(value, bytes):
            return value.decode("utf-8", "backslashreplace")
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()

    return frame.assign(data=[as_json(v) for v in frame["data"]])


def write_json_lines(frame: pd.DataFrame, path: Any) -> None:
    """``exportable(frame)`` as JSON Lines, ``time`` as ISO 8601 text to the nanosecond
    (pandas' ``to_json`` stops at the microsecond, so a capture would not read back equal)."""
    columns = list(frame.columns)
    times = [t.isoformat() for t in frame["time"]]
    with open(path, "wb") as out:
        for when, row in zip(times, frame.itertuples(index=False), strict=True):
            record = dict(zip(columns, row, strict=True))
            record["time"] = when
            out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))


def subscriptions_frame(subs: list[Any]) -> pd.DataFrame:
    """One row per subscription (``%rtk subs``), from the same snapshot its panel shows:
    ``now`` is messages per second over the last second, ``avg`` since the start. Narrow on
    purpose (a notebook output must not scroll sideways): ``errors`` adds handler and decode
    errors; ``stats`` has every figure."""
    rows = []
    for sub in subs:
        snap = sub.snapshot()
        s = snap.stats
        state = snap.state + ("" if s.connected or snap.state == "stopped" else ", disconnected")
        rows.append(
            {
                "name": sub.name,
                "subscribed": ", ".join(snap.channels + snap.patterns + snap.sharded),
                "received": s.received,
                "now/s": round(snap.rates.now, 1),
                "avg/s": round(snap.avg, 1),
                "dropped": s.dropped,
                "errors": s.handler_errors + s.decode_errors,
                "rows": len(sub.subscriber.buffer or ()),
                "state": state,
            }
        )
    columns = ["name", "subscribed", "received", "now/s", "avg/s", "dropped", "errors"]
    return pd.DataFrame(rows, columns=[*columns, "rows", "state"])
