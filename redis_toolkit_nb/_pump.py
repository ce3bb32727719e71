"""The byte pump: bytes read from the socket but not parsed yet, and the parser that turns
them into replies. No I/O here: the reader thread adds what it read and asks for replies, and
a test feeds plain bytes (tests/test_pump.py), truncated replies included.

Reading and parsing are decoupled: the socket is drained first (a memcpy per MB) into the
backlog, which is parsed in bounded slices between drains. A burst then waits in this process
as raw bytes (about 140 per message, several times less than parsed) rather than in the
server's output buffer, whose hard limit would disconnect the subscriber and lose everything
in flight.
"""

from __future__ import annotations

import time
from collections import deque
from itertools import islice
from typing import Any

import hiredis

from ._subscriptions import ReplyError

# smessage: a sharded channel's message, shaped like message (see _subscriptions.SHARD).
_MESSAGE_KINDS = (b"message", b"pmessage", b"smessage")
# RESP2 messages parse to lists, RESP3 pushes to hiredis.PushNotification (a list subclass).
_ARRAYS = frozenset({list, hiredis.PushNotification})
# hiredis is fed slices of at most this size: it moves its unparsed buffer down after every
# reply, so feeding megabytes at once costs microseconds per message (measured: 64 KB slices
# parse at ~0.2 us/message, a 12 MB feed at ~8 us/message).
FEED = 64 * 1024


class BytePump:
    """The unparsed backlog of one connection and its hiredis parser."""

    __slots__ = ("_backlog", "_offset", "_parser", "_t", "size")

    def __init__(self) -> None:
        self._parser = hiredis.Reader(replyError=ReplyError)
        # (arrival time, bytes) read but not yet fed to the parser; ``_offset``: how far the
        # head has been fed.
        self._backlog: deque[tuple[float, bytes | bytearray]] = deque()
        self._offset = 0
        self._t = time.time()
        #: Bytes in the backlog (read, not yet fed to the parser).
        self.size = 0

    def add(self, received_at: float, data: bytes | bytearray) -> None:
        """Bytes read from the socket at ``received_at`` (epoch seconds)."""
        self._backlog.append((received_at, data))
        self.size += len(data)

    @property
    def waiting(self) -> bool:
        """Bytes are waiting: in the backlog, or in the parser (a reply may be complete)."""
        return bool(self._backlog) or self._parser.has_data()

    def parse(self, until: float, limit: int) -> tuple[list[Any], list[Any], float]:
        """Parse up to ``limit`` replies: what the parser holds first, then slices of the
        backlog, stopping at ``until`` (monotonic) once it has at least one.

        Returns ``(messages, others, t)``: messages and pushes in order, every other reply
        (confirmations, PONGs, errors) in order, and the arrival time of the newest bytes
        parsed. Replies beyond ``limit`` stay in the parser for the next call."""
        gets = self._parser.gets
        feed = self._parser.feed
        backlog = self._backlog
        clock = time.monotonic
        replies: list[Any] = []
        t = self._t
        while True:
            replies.extend(islice(iter(gets, False), limit - len(replies)))
            # Past ``until`` it stops, but only once it has something: every call progresses.
            if len(replies) >= limit or not backlog or (replies and clock() >= until):
                break
            t, data = backlog[0]
            size = len(data)
            step = min(FEED, size - self._offset)
            feed(data, self._offset, step)  # type: ignore[arg-type]  # any buffer
            self._offset += step
            if self._offset >= size:
                backlog.popleft()
                self.size -= size
                self._offset = 0
        self._t = t
        msgs = [r for r in replies if r.__class__ in _ARRAYS and r[0] in _MESSAGE_KINDS]
        if len(msgs) == len(replies):
            return msgs, [], t
        others = [r for r in replies if not (r.__class__ in _ARRAYS and r[0] in _MESSAGE_KINDS)]
        return msgs, others, t

    def discard_partial(self) -> bool:
        """The link is gone: drop the backlog and whatever part of a reply the parser holds
        (it can never complete). True if a reply was cut short (something was dropped)."""
        dropped = bool(self._backlog) or self._parser.has_data()
        self._parser = hiredis.Reader(replyError=ReplyError)
        self._backlog.clear()
        self._offset = 0
        self.size = 0
        return dropped
