"""Expectations: ``feed.expect(...)`` and ``%rtk_expect NAME count>=10 channel=orders within=5
no-gaps``, for self-checking exercises and tests.

An expectation waits (polling, up to ``within`` seconds) until enough messages arrived, then
checks the rest; a failure is an ``AssertionError`` that says what was expected and what
arrived.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from .globs import glob_match
from .snapshot import clock

if TYPE_CHECKING:
    from .subscription import Subscription

_POLL = 0.02  # seconds between looks while waiting
_MISSING = object()


@dataclass(frozen=True)
class ExpectResult:
    """A met expectation: how many messages matched and how long it took."""

    name: str
    count: int
    channel: str | None
    seconds: float

    def __repr__(self) -> str:
        where = f" on {self.channel!r}" if self.channel else ""
        return f"expectation met: {self.count} message(s){where} after {self.seconds:.2f} s"


def _arrived(sub: Subscription, channel: str | None) -> int:
    stats = sub.subscriber.stats
    if channel is None:
        return stats.delivered
    return sum(n for ch, n in stats.by_channel.items() if glob_match(channel, ch))


def _field(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def _check_fields(
    sub: Subscription, channel: str | None, fields: Iterable[str] | Mapping[str, Any]
) -> list[str]:
    """What the kept messages (``df``) on ``channel`` break of ``fields`` (names that must be
    present, or a mapping of name to required value)."""
    from .panel import preview  # ipywidgets: a subscription (with its panel) exists already

    wanted = dict(fields) if isinstance(fields, Mapping) else dict.fromkeys(fields, _MISSING)
    buffer = sub.subscriber.buffer
    rows = [r for r in (buffer.raw() if buffer is not None else []) if _on(r[1], channel)]
    problems = []
    for name, value in wanted.items():
        if value is _MISSING:
            bad = [r for r in rows if _field(r[3], name) is _MISSING]
            what = f"lack {name!r}"
        else:  # a message without the field does not have the value either
            bad = [r for r in rows if _field(r[3], name) != value]
            what = f"do not have {name}={value!r}"
        if bad:
            first = bad[0]
            problems.append(
                f"fields: {len(bad)} of {len(rows)} kept message(s){_where(channel)} {what} "
                f"(first at {clock(first[0], sub.timezone)} on {first[1]!r}: {preview(first[3])})"
            )
    return problems


def _on(ch: Any, channel: str | None) -> bool:
    return channel is None or glob_match(channel, ch)


def _where(channel: str | None) -> str:
    return f" on {channel!r}" if channel else ""


def _check_gaps(sub: Subscription, channel: str | None) -> list[str]:
    tracker = sub.subscriber.sequence
    if tracker is None:
        raise ValueError(
            f"{sub.name}.expect(no_gaps=True) needs sequence checking: start the subscription "
            "with --seq-field FIELD (e.g. %%rtk_subscribe ... --seq-field seq)"
        )
    gaps = [e for e in list(tracker.events) if e.kind == "gap" and _on(e.channel, channel)]
    if not gaps:
        return []
    first = gaps[0]
    missing = sum(e.missing for e in list(tracker.events) if _on(e.channel, channel))
    return [
        f"no_gaps: {len(gaps)} gap(s){_where(channel)}, {missing} message(s) still missing "
        f"(first on {first.channel!r} at {clock(first.time, sub.timezone)}: expected "
        f"{first.expected}, got {first.got}"
        f"{', during a disconnect' if first.disconnected else ''})"
    ]


def expect(
    sub: Subscription,
    count: int | None = None,
    channel: str | None = None,
    within: float = 5.0,
    no_gaps: bool = False,
    fields: Iterable[str] | Mapping[str, Any] | None = None,
) -> ExpectResult:
    """See ``Subscription.expect``."""
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ValueError(f"expect: count must be a whole number >= 0, not {count!r}")
    if isinstance(within, bool) or not isinstance(within, (int, float)) or within < 0:
        raise ValueError(f"expect: within must be a number of seconds >= 0, not {within!r}")
    if isinstance(fields, str):
        fields = [fields]
    wanted = 1 if count is None else count
    if no_gaps and sub.subscriber.sequence is None:
        _check_gaps(sub, channel)  # raises: say so before waiting
    start = time.monotonic()
    deadline = start + within
    arrived = _arrived(sub, channel)
    while arrived < wanted and time.monotonic() < deadline:
        time.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
        arrived = _arrived(sub, channel)
    seconds = time.monotonic() - start
    problems = []
    if arrived < wanted:
        problems.append(
            f"count: expected >= {wanted} message(s){_where(channel)} within {within:g} s, "
            f"arrived {arrived}"
        )
    if no_gaps:
        problems += _check_gaps(sub, channel)
    if fields:
        problems += _check_fields(sub, channel, fields)
    if problems:
        raise AssertionError(
            f"{sub.name}.expect failed after {seconds:.2f} s:\n  " + "\n  ".join(problems)
        )
    return ExpectResult(sub.name, arrived, channel, seconds)


def run(magics: Any, line: str) -> ExpectResult:
    """``%rtk_expect NAME [count>=N] [channel=C] [within=S] [no-gaps] [fields=a,b.c]``."""
    usage = (
        "usage: %rtk_expect NAME [count>=N] [channel=CHANNEL] [within=SECONDS] [no-gaps] "
        "[fields=a,b.c]"
    )
    tokens = line.split()
    if not tokens:
        raise UsageError(usage)
    namespace = magics.shell.user_ns if magics.shell is not None else {}
    sub: Any = namespace.get(tokens[0])
    if not hasattr(sub, "expect"):
        found = "not defined" if sub is None else f"a {type(sub).__name__}"
        raise UsageError(f"%rtk_expect: {tokens[0]} is {found}, not a subscription\n{usage}")
    kwargs: dict[str, Any] = {}
    for token in tokens[1:]:
        try:
            if token == "no-gaps":
                kwargs["no_gaps"] = True
            elif token.startswith(("count>=", "count=")):
                kwargs["count"] = int(token.split("=", 1)[1])
            elif token.startswith("channel="):
                kwargs["channel"] = token.split("=", 1)[1]
            elif token.startswith("within="):
                kwargs["within"] = float(token.split("=", 1)[1])
            elif token.startswith("fields="):
                kwargs["fields"] = [f for f in token.split("=", 1)[1].split(",") if f]
            else:
                raise UsageError(f"%rtk_expect: unknown condition {token!r}\n{usage}")
        except ValueError:
            raise UsageError(f"%rtk_expect: {token!r} needs a number\n{usage}") from None
    try:
        return sub.expect(**kwargs)
    except ValueError as exc:
        raise UsageError(f"%rtk_expect: {exc}") from None
