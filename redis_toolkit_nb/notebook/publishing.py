"""``%rtk_publish --count N --rate R``: a small load generator with a progress bar."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .. import RedisToolkit
from .parsing import Payload

_CHUNK = 5000  # values per pipelined write when not rate-limited
_SLICE = 0.05  # seconds between rate-limited writes (and progress updates)
_SINGLE_RATE = 2000  # at or under this rate, messages go one by one (receivers counted)


@dataclass
class PublishReport:
    """What a repeated ``%rtk_publish`` did."""

    channel: str
    published: int
    seconds: float
    #: Sum of PUBLISH replies (receivers), when every message was sent alone; else None.
    receivers: int | None = None

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else float(self.published)

    def __repr__(self) -> str:
        rx = f", {self.receivers} receptions" if self.receivers is not None else ""
        return (
            f"published {self.published} messages to {self.channel!r} in {self.seconds:.2f} s "
            f"({self.rate:,.0f} msg/s{rx})"
        )


def _progress(total: int, show: bool):  # noqa: ANN202 - a tqdm or a no-op
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="msg", desc="rtk_publish", leave=False)


def publish_repeated(
    tk: RedisToolkit,
    channel: str,
    payload: Payload,
    count: int,
    rate: float | None = None,
    progress_after: float = 1.0,
    *,
    sharded: bool = False,
    stamp: str | None = None,
) -> PublishReport:
    """Publish ``payload`` ``count`` times (at ``rate`` messages per second if given).

    A progress bar appears when the run is expected to take longer than ``progress_after``
    seconds. ``stamp``: each dict payload gets the publish time in that field (a copy).
    An interrupt (Kernel > Interrupt) stops it; what was sent is reported first.
    """
    expected = count / rate if rate else count / 100_000
    bar = _progress(count, expected > progress_after)
    start = time.monotonic()
    sent = 0
    receivers: int | None = 0
    try:
        while sent < count:
            if rate:
                elapsed = time.monotonic() - start
                due = min(count, int(elapsed * rate) + 1)
                if due <= sent:
                    time.sleep(min(_SLICE, (sent + 1) / rate - elapsed))
                    continue
            else:
                due = min(count, sent + _CHUNK)
            batch = due - sent
            if receivers is not None and (batch == 1 or (rate and rate <= _SINGLE_RATE)):
                # Slow enough to send one by one, so the receivers can be reported.
                for k in range(sent, due):
                    receivers += tk.publish(channel, payload.value(k), sharded=sharded, stamp=stamp)
            else:
                values = (
                    [payload.value(k) for k in range(sent, due)]
                    if payload.varies
                    else [payload.value()] * batch
                )
                tk.publish_many(channel, values, sharded=sharded, stamp=stamp)
                receivers = None
            sent = due
            if bar is not None:
                bar.update(batch)
    except KeyboardInterrupt:
        print(f"rtk_publish: interrupted after {sent} of {count} messages")
        raise
    finally:
        if bar is not None:
            bar.close()
    return PublishReport(channel, sent, time.monotonic() - start, receivers)
