"""The bounded buffer of a subscriber's newest messages, which the notebook layer reads."""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any, NamedTuple


class Message(NamedTuple):
    """One received message."""

    #: Arrival time, seconds since the epoch (UTC), taken when its bytes were read.
    time: float
    #: The channel it was published to (``bytes`` only if the name is not UTF-8).
    channel: str
    #: The subscribed pattern that matched, or None for a plain channel subscription.
    pattern: str | None
    #: The decoded payload.
    data: Any
    #: Payload size in bytes, as sent.
    size: int


class MessageBuffer:
    """The newest ``maxlen`` messages, oldest first.

    The dispatcher appends plain tuples (cheap on the hot path); readers get ``Message``
    records. Every read copies in one C-level step under the GIL, so reading never blocks
    the subscriber and never sees a half-written entry.
    """

    __slots__ = ("_items", "append")

    def __init__(self, maxlen: int) -> None:
        # (time, channel, pattern, data, size); a channel is bytes only for a non-UTF-8 name.
        self._items: deque[tuple[float, Any, Any, Any, int]] = deque(maxlen=maxlen)
        self.append = self._items.append

    @property
    def maxlen(self) -> int:
        return self._items.maxlen or 0

    def __len__(self) -> int:
        return len(self._items)

    def snapshot(self) -> list[Message]:
        """All buffered messages, oldest first."""
        return [Message._make(item) for item in list(self._items)]

    def raw(self) -> list[tuple[float, str, str | None, Any, int]]:
        """All buffered messages as plain tuples, oldest first (fastest to build a table)."""
        return list(self._items)

    def newest(self, count: int) -> list[Message]:
        """Up to ``count`` newest messages, newest first."""
        items = list(islice(reversed(self._items), count)) if count > 0 else []
        return [Message._make(item) for item in items]

    def clear(self) -> None:
        self._items.clear()

    def __repr__(self) -> str:
        return f"<MessageBuffer {len(self)}/{self.maxlen}>"
