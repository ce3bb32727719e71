"""``Inbox``: one pattern subscription per toolkit that routes messages to waiters by id.

``request()`` and ``publish_with_ack()`` each need a channel unique to one message (the
guide's ``responses:<id>`` and ``ack:<id>``). Instead of a subscriber per message (the
guide's recipe), a toolkit keeps one ``Inbox`` per kind: a single ``PSUBSCRIBE
<prefix>:<uid>:*``, started on first use, whose handler looks the id up in a dict of
waiters. A waiter is forgotten when its caller stops waiting; a message for an id nobody waits
for any more is counted in ``late`` and logged, never handed to another caller.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from ._ratelimit import RateLimitedLog
from ._subscriber import Subscriber
from .exceptions import ToolkitError

logger = logging.getLogger("redis_toolkit_nb")


class Waiter:
    """What one caller waits for: ``count`` messages so far (the last in ``value``); ``wake``
    is called once, from the subscriber's thread, when ``count`` reaches ``target`` (or with
    ``closed`` set when the toolkit is cleaned up)."""

    __slots__ = ("count", "target", "value", "wake", "closed")

    def __init__(self, wake: Callable[[], Any], target: int = 1) -> None:
        self.count = 0
        self.target = target
        self.value: Any = None
        self.wake = wake
        self.closed = False


class Inbox:
    """A lazily started pattern subscription ``<prefix>:<uid>:*`` feeding ``Waiter``\\ s."""

    def __init__(self, toolkit: Any, prefix: str, uid: str, what: str) -> None:
        self._toolkit = toolkit
        self._channel_prefix = f"{prefix}:"
        self._uid = uid
        self._what = what
        self._seq = itertools.count(1)
        self._waiters: dict[str, Waiter] = {}
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._closed = False
        self.subscriber: Subscriber | None = None
        #: Messages for an id nobody waits for any more (after a timeout, or a stranger's).
        self.late = 0
        #: Messages handed to a waiter.
        self.received = 0
        self._late_log = RateLimitedLog(logger, logging.WARNING, period=10.0)

    def channel(self, key: str) -> str:
        return self._channel_prefix + key

    def open(self, waiter: Waiter) -> str:
        """Register ``waiter`` under a new id (starting the subscription on first use)."""
        self.ensure_started()
        key = f"{self._uid}:{next(self._seq)}"
        with self._lock:
            if self._closed:
                raise ToolkitError("this toolkit was cleaned up: it sends no more requests")
            self._waiters[key] = waiter
        return key

    def forget(self, key: str) -> None:
        """Stop waiting for ``key``: a message for it from now on counts as late."""
        with self._lock:
            self._waiters.pop(key, None)

    def ensure_started(self) -> None:
        if self.subscriber is not None:
            return
        with self._start_lock:
            if self._closed:
                raise ToolkitError("this toolkit was cleaned up: it sends no more requests")
            if self.subscriber is None:
                tk = self._toolkit
                sub = Subscriber(
                    tk.client,
                    handler=self._handle,
                    options=tk.options.replace(buffer_size=0, decode="auto"),
                    name=f"rtk-{self._what}-{self._uid[:8]}",
                )
                sub.start([f"{self._channel_prefix}{self._uid}:*"])
                self.subscriber = sub

    def _handle(self, channel: str | bytes, data: Any) -> None:
        key = channel[len(self._channel_prefix) :] if isinstance(channel, str) else ""
        with self._lock:
            waiter = self._waiters.get(key)
            if waiter is None:
                self.late += 1
                late = self.late
            else:
                self.received += 1
                waiter.count += 1
                waiter.value = data
                if waiter.count != waiter.target:
                    return
        if waiter is None:
            self._late_log.emit(
                "%s on %r arrived after its caller stopped waiting (%d so far): dropped",
                self._what,
                channel,
                late,
            )
        else:
            waiter.wake()

    def close(self) -> None:
        """Stop the subscription and wake every caller still waiting (they raise)."""
        with self._start_lock, self._lock:
            self._closed = True
            waiters = list(self._waiters.values())
            self._waiters.clear()
            sub, self.subscriber = self.subscriber, None
        for waiter in waiters:
            waiter.closed = True
            waiter.wake()
        if sub is not None:
            sub.stop()
