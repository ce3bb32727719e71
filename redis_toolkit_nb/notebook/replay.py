"""``%rtk_replay SOURCE [--speed X] [--map OLD=NEW ...] [--prefix P] [--limit N] [--dry-run]``.

SOURCE is a DataFrame (or a subscription) in the notebook's namespace, or a capture file
(``feed.export()``'s); the replay itself is ``RedisToolkit.replay``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.core.error import UsageError

from .. import read_capture, replay_plan
from .parsing import MagicParser, split_line

#: A replay expected to last longer than this (seconds) shows a progress bar.
_PROGRESS_AFTER = 1.0


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0 (0: as fast as possible)")
    return value


def _limit(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number > 0")
    return int(text)


def parser() -> MagicParser:
    p = MagicParser("%rtk_replay")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--speed", type=_speed, default=1.0)
    p.add_argument("--map", nargs="+", action="extend", default=[], metavar="OLD=NEW")
    p.add_argument("--prefix", default=None)
    p.add_argument("--limit", type=_limit, default=None)
    p.add_argument("--dry-run", action="store_true", dest="dry_run")
    return p


def _mapping(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise UsageError(f"%rtk_replay: --map takes OLD=NEW pairs, not {pair!r}")
        mapping[old] = new
    return mapping


def source_frame(source: str, namespace: dict[str, Any]) -> pd.DataFrame:
    """SOURCE as a DataFrame: a variable (a DataFrame, or a subscription's ``df``), else a
    capture file."""
    if source in namespace:
        value = namespace[source]
        frame = getattr(value, "df", value) if not isinstance(value, pd.DataFrame) else value
        if not isinstance(frame, pd.DataFrame):
            raise UsageError(
                f"%rtk_replay: {source} is a {type(value).__name__}, not a DataFrame or a "
                "subscription"
            )
        return frame
    path = Path(source).expanduser()
    if not path.exists():
        raise UsageError(
            f"%rtk_replay: {source!r} is neither a variable of this notebook nor a file"
        )
    try:
        return read_capture(path)
    except (ValueError, OSError) as exc:
        raise UsageError(f"%rtk_replay: {exc}") from None


def run(magics: Any, line: str) -> Any:
    """Parse ``line`` and replay (or, with ``--dry-run``, show the plan as a DataFrame)."""
    args = parser().parse_args(split_line(line, "%rtk_replay"))
    namespace = magics.shell.user_ns if magics.shell is not None else {}
    frame = source_frame(args.source, namespace)
    if args.limit is not None:
        frame = frame.head(args.limit)
    mapping = _mapping(args.map)
    try:
        steps = replay_plan(frame, args.speed, mapping, args.prefix)
    except ValueError as exc:
        raise UsageError(f"%rtk_replay: {exc}") from None
    if args.dry_run:
        targets = sorted({str(s.to) for s in steps})
        span = steps[-1].at if steps else 0.0
        print(
            f"dry run: would send {len(steps)} messages over {span:.3f} s to "
            f"{', '.join(targets) or 'nothing'} (nothing sent)"
        )
        return pd.DataFrame(steps, columns=["at", "channel", "to", "data"])
    magics._ensure_connected()
    tk = magics.state.toolkit
    expected = steps[-1].at if steps and args.speed else len(steps) / 100_000
    bar = None
    if expected > _PROGRESS_AFTER:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(steps), unit="msg", desc="rtk_replay", leave=False)
    sent = [0]

    def progress(n: int) -> None:
        sent[0] += n
        if bar is not None:
            bar.update(n)

    try:
        return tk.replay(frame, args.speed, mapping, args.prefix, progress=progress)
    except KeyboardInterrupt:
        print(f"rtk_replay: interrupted after {sent[0]} of {len(steps)} messages")
        raise
    finally:
        if bar is not None:
            bar.close()
