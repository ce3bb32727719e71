"""Publishing: one message through redis-py, many through one hand-packed pipeline.

``publish_many`` is the one place that writes RESP by hand: it packs thousands of PUBLISH
commands into one buffer per write and parses the integer replies with hiredis, which is
several times faster than redis-py's pipeline (see ``benchmarks/``). The connection comes
from the client's own pool, so auth, TLS and the RESP version are redis-py's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import hiredis
import orjson
import redis

from . import codec
from .connection import connection_error
from .exceptions import MessageTooLargeError, PublishError

#: Commands packed into one write by ``publish_many``.
CHUNK = 2000
# Values codec.encode sends as they are (binary), rather than as JSON.
_AS_IS = frozenset({bytes, bytearray, memoryview})


def check_size(payload: bytes, limit: int, channel: object) -> None:
    if len(payload) > limit:
        raise MessageTooLargeError(
            f"message for channel {channel!r} is {len(payload)} bytes, over the "
            f"{limit}-byte cap (RedisOptions.max_value_size); nothing was sent"
        )


def _channel_prefix(channel: str | bytes) -> bytes:
    name = channel if isinstance(channel, bytes) else channel.encode("utf-8")
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(name), name)


def publish_many(
    client: redis.Redis, channel: str | bytes, messages: Iterable[Any], limit: int
) -> int:
    """Publish every value of ``messages`` to ``channel``, in order; return how many.

    Each value is encoded as ``publisher()`` would. A value that cannot be encoded or is over
    the cap raises before its chunk is sent; the error's ``published`` attribute (for
    ``PublishError``) or message says how many went out before it.
    """
    prefix = _channel_prefix(channel)
    encode = codec.encode
    dumps, option, encode_error = codec._dumps, codec._OPTIONS, orjson.JSONEncodeError
    published = 0
    try:
        conn = client.connection_pool.get_connection()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Connecting (and authenticating) happens here: wrap it like every other failure.
        raise connection_error(client, exc, "publish") from exc
    replies_in = _Replies(conn)
    ok = False
    inflight = 0  # commands written whose replies are not read yet (one chunk at most)
    refused: list[Any] = []
    try:
        parts: list[bytes] = []
        append = parts.append
        count = 0
        for value in messages:
            if value.__class__ in _AS_IS:
                payload = encode(value)
            else:
                # codec.encode's common case inlined (same result); it handles the rest.
                try:
                    payload = dumps(value, option=option)
                except encode_error:
                    payload = encode(value)
            if len(payload) > limit:
                # Everything before the oversized value goes out; then it is refused.
                if count:
                    _write(client, conn, parts, published)
                    if inflight:
                        published += _settle(client, replies_in, inflight, published, refused)
                    inflight, count = count, 0
                    parts.clear()
                if inflight:
                    published += _settle(client, replies_in, inflight, published, refused)
                    inflight = 0
                try:
                    check_size(payload, limit, channel)
                except MessageTooLargeError as exc:
                    raise MessageTooLargeError(
                        f"{exc} (message {published + len(refused)} of the batch, counting "
                        f"from 0; the {published} before it were published)"
                    ) from None
            # One formatted bytes per command: keeping orjson's own output objects alive
            # until the join costs ~1 us more per message (measured, allocator churn).
            append(b"%s$%d\r\n%s\r\n" % (prefix, len(payload), payload))
            count += 1
            if count == CHUNK:
                # Write this chunk before reading the previous one's replies: the server
                # executes one chunk while this thread encodes the next.
                _write(client, conn, parts, published)
                if inflight:
                    published += _settle(client, replies_in, inflight, published, refused)
                inflight, count = count, 0
                parts.clear()
                if refused:
                    break
        if count and not refused:
            _write(client, conn, parts, published)
            if inflight:
                published += _settle(client, replies_in, inflight, published, refused)
            inflight = count
        if inflight:
            published += _settle(client, replies_in, inflight, published, refused)
            inflight = 0
        if refused:
            raise PublishError(
                f"the server refused {len(refused)} of {published + len(refused)} messages: "
                f"{refused[0]}",
                published=published,
            )
        ok = True
        return published
    finally:
        if not ok:
            # Replies may still be in flight: never hand a desynchronised connection back.
            conn.disconnect()
        client.connection_pool.release(conn)


def _write(client: redis.Redis, conn: Any, parts: list[bytes], before: int) -> None:
    try:
        conn.send_packed_command([b"".join(parts)], check_health=False)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise connection_error(
            client, exc, f"publish ({before} published before the failure)"
        ) from exc


def _settle(
    client: redis.Redis, replies_in: _Replies, count: int, before: int, refused: list[Any]
) -> int:
    """Read ``count`` replies; return how many were accepted, add refusals to ``refused``."""
    try:
        replies = replies_in.read(count)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise connection_error(
            client, exc, f"publish ({before} published before the failure)"
        ) from exc
    errors = [r for r in replies if isinstance(r, hiredis.ReplyError)]
    refused.extend(errors)
    return count - len(errors)


class _Replies:
    """Reads exactly ``count`` replies at a time off a connection; replies of the next chunk
    (already in flight) that arrive in the same read stay parsed in the hiredis reader."""

    __slots__ = ("_buf", "_conn", "_parser")

    def __init__(self, conn: Any) -> None:
        self._conn = conn  # its socket exists once the first chunk was written
        self._parser = hiredis.Reader()
        self._buf = bytearray(65536)

    def read(self, count: int) -> list[Any]:
        replies: list[Any] = []
        gets = self._parser.gets
        while len(replies) < count:
            # ``is False``: a PUBLISH reply of 0 (nobody listening) equals False.
            reply = gets()
            if reply is False:
                n = self._conn._sock.recv_into(self._buf)
                if n == 0:
                    raise ConnectionError("server closed the connection")
                self._parser.feed(self._buf, 0, n)
            else:
                replies.append(reply)
        return replies
