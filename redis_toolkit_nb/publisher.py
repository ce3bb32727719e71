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
import redis

from . import codec
from .connection import connection_error
from .exceptions import MessageTooLargeError, PublishError

#: Commands packed into one write by ``publish_many``.
CHUNK = 2000


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
    published = 0
    try:
        conn = client.connection_pool.get_connection()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # Connecting (and authenticating) happens here: wrap it like every other failure.
        raise connection_error(client, exc, "publish") from exc
    ok = False
    try:
        chunk: list[bytes] = []
        count = 0
        for value in messages:
            payload = encode(value)
            if len(payload) > limit:
                try:
                    check_size(payload, limit, channel)
                except MessageTooLargeError as exc:
                    raise MessageTooLargeError(
                        f"{exc} (message {published + count} of the batch; {published} "
                        "published before it)"
                    ) from None
            chunk.append(prefix)
            chunk.append(b"$%d\r\n" % len(payload))
            chunk.append(payload)
            chunk.append(b"\r\n")
            count += 1
            if count == CHUNK:
                published += _send_chunk(client, conn, chunk, count, published)
                chunk.clear()
                count = 0
        if count:
            published += _send_chunk(client, conn, chunk, count, published)
        ok = True
        return published
    finally:
        if not ok:
            # Replies may still be in flight: never hand a desynchronised connection back.
            conn.disconnect()
        client.connection_pool.release(conn)


def _send_chunk(client: redis.Redis, conn: Any, chunk: list[bytes], count: int, before: int) -> int:
    try:
        conn.send_packed_command([b"".join(chunk)], check_health=False)
        replies = _read_replies(conn._sock, count)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise connection_error(
            client, exc, f"publish ({before} published before the failure)"
        ) from exc
    errors = [r for r in replies if isinstance(r, hiredis.ReplyError)]
    if errors:
        raise PublishError(
            f"the server refused {len(errors)} of {count} messages: {errors[0]}",
            published=before + count - len(errors),
        )
    return count


def _read_replies(sock: Any, count: int) -> list[Any]:
    parser = hiredis.Reader()
    replies: list[Any] = []
    buf = bytearray(65536)
    while len(replies) < count:
        n = sock.recv_into(buf)
        if n == 0:
            raise ConnectionError("server closed the connection")
        parser.feed(buf, 0, n)
        replies.extend(iter(parser.gets, False))
    return replies
