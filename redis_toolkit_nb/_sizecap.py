"""The publish size cap: ``max_value_size``, and what the server will really deliver.

Redis disconnects a subscriber whose output buffer reaches the pub/sub hard limit
(``client-output-buffer-limit pubsub 32mb 8mb 60`` by default), and a single message over it
reaches no subscriber at all: every one of them is cut off. The server counts the buffer by
the allocator's blocks, not by the bytes queued, so the largest deliverable payload is below
the hard limit. Measured by bisection with a real subscriber (``benchmarks/size_cap.py``):

==============================  ==========================  ============================
hard limit                      Redis 7.0.15 (jemalloc)     Valkey 8.1 bundled (libc)
==============================  ==========================  ============================
32mb = 33,554,432 (default)     29,376,459 (28 MiB + 16 K)  33,566,649
20mb = 20,971,520               16,793,547 (16 MiB + 16 K)  20,987,817
5mb = 5,242,880                 4,210,636 (4 MiB + 16 K)    5,259,178
4mb = 4,194,304                 3,686,348 (3.5 MiB + 16 K)  4,210,602
==============================  ==========================  ============================

With jemalloc the message lands in one block of the largest size class strictly below the
limit (classes go four to a doubling: 16, 20, 24, 28, 32 MiB...), plus the client's 16 KB
static buffer. ``deliverable`` takes that class below the limit less 1 KiB of bookkeeping,
then leaves 4 KiB for the reply around the payload (channel and pattern names): it holds on
both engines and every limit measured, and with any allocator that rounds up less than
jemalloc (libc). Its worst case is 4/5 of the limit (a limit just above 4, 5, 8, 10... MiB).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis

from ._errors import where_text
from .exceptions import MessageTooLargeError

logger = logging.getLogger("redis_toolkit_nb")

#: Redis's and Valkey's default ``client-output-buffer-limit pubsub`` hard limit.
DEFAULT_PUBSUB_HARD_LIMIT = 32 * 1024 * 1024
#: Bytes the server counts beside a reply block (block header, list node): margin below the limit.
_BOOKKEEPING = 1024
#: Bytes of the ``message``/``pmessage`` reply around a payload (channel, pattern, lengths).
_FRAMING = 4096
#: Payloads up to this size never make the toolkit look at the server's limits.
PROBE = 64 * 1024


def deliverable(hard_limit: int) -> int:
    """The largest payload a subscriber receives under pub/sub hard limit ``hard_limit``
    (conservative: see the module docstring); 0 (no limit) gives 0: nothing to add."""
    if hard_limit <= 0:
        return 0
    below = hard_limit - _BOOKKEEPING - 1
    if below < 16:
        return 0
    top = 1 << (below.bit_length() - 1)  # the power of two at or under ``below``
    step = max(top >> 2, 1)  # four size classes per doubling
    return max(top + step * ((below - top) // step) - _FRAMING, 0)


#: The largest payload a subscriber of a default-configured server receives (28 MiB - 4 KiB).
DEFAULT_DELIVERABLE = deliverable(DEFAULT_PUBSUB_HARD_LIMIT)

_warned: set[str] = set()
_warned_lock = threading.Lock()


class SizeCap:
    """One toolkit's cap. ``limit`` is what a caller compares a payload's length with (one
    comparison on the hot path); ``check`` is called only over it, and raises unless the
    server's limits were not read yet and allow the payload.

    The server's limits are read once, on the first payload over ``PROBE`` bytes (``CONFIG
    GET``, one round trip); when that is refused (ACL, a managed service), the default
    server's bound applies, and the log says so once per server.
    """

    __slots__ = ("_client", "_known", "_where", "limit", "option", "server_limit", "why")

    def __init__(self, client: Any, option: int) -> None:
        self._client = client
        self._where = where_text(client)
        self.option = option
        self.limit = min(option, PROBE)
        self._known = False
        #: What the server delivers (None until read), and the setting that says so.
        self.server_limit: int | None = None
        self.why = ""

    def check(self, size: int, channel: object) -> None:
        """Raise ``MessageTooLargeError`` if a payload of ``size`` bytes may not be sent."""
        if not self._known:
            self._learn()
            if size <= self.limit:
                return
        if self.server_limit is not None and self.server_limit < self.option:
            reason = (
                f": the largest payload a subscriber of the server at {self._where} can "
                f"receive ({self.why}; a larger one disconnects every subscriber; "
                f"RedisOptions.max_value_size is {self.option})"
            )
        else:
            reason = " (RedisOptions.max_value_size)"
        raise MessageTooLargeError(
            f"message for channel {channel!r} is {size} bytes, over the {self.limit}-byte "
            f"cap{reason}; it was not sent"
        )

    def _learn(self) -> None:
        try:
            limits = self._read()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            # The publish itself will report the link; look again next time.
            self.limit = min(self.option, DEFAULT_DELIVERABLE)
            return
        except (redis.RedisError, ValueError, TypeError, IndexError) as exc:
            # Refused (ACL, a managed service's renamed CONFIG) or not understood (a cluster
            # client's per-node replies): the default server's bound applies.
            limits = (
                DEFAULT_DELIVERABLE,
                f"its limits could not be read ({exc}), so the default server's "
                f"{DEFAULT_DELIVERABLE} bytes apply",
            )
            with _warned_lock:
                first = self._where not in _warned
                _warned.add(self._where)
            if first:
                logger.warning(
                    "cannot read the pub/sub limits of the server at %s (%s): messages over "
                    "%d bytes (what a default server delivers) are refused",
                    self._where,
                    exc,
                    DEFAULT_DELIVERABLE,
                )
        self.server_limit, self.why = limits
        self.limit = min(self.option, self.server_limit)
        self._known = True

    def _read(self) -> tuple[int, str]:
        config = self._client.config_get("client-output-buffer-limit")
        words = _text(next(iter(config.values()), "")).split()
        hard = int(words[words.index("pubsub") + 1]) if "pubsub" in words else 0
        bulk = self._client.config_get("proto-max-bulk-len")
        bulk_len = int(_text(next(iter(bulk.values()), "0")) or 0)
        candidates = []
        if hard > 0:
            candidates.append(
                (deliverable(hard), f"client-output-buffer-limit pubsub hard limit {hard} bytes")
            )
        if bulk_len > 0:
            candidates.append((bulk_len, f"proto-max-bulk-len {bulk_len} bytes"))
        if not candidates:
            return DEFAULT_DELIVERABLE, "no limit configured"
        return min(candidates)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
