"""Publishing: one message through redis-py, many through one hand-packed pipeline.

``publish_many`` is the one place that writes RESP by hand: it packs thousands of PUBLISH
commands into one buffer per write and parses the integer replies with hiredis, which is
several times faster than redis-py's pipeline (see ``benchmarks/``). The connection comes
from the client's own pool, so auth, TLS and the RESP version are redis-py's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import hiredis
import orjson
import redis

from . import _codec as codec
from ._errors import CAUGHT, boundary, server_error, translate
from ._sizecap import SizeCap
from .exceptions import MessageTooLargeError, PublishError, SerializationError

if TYPE_CHECKING:
    from ._cluster import Cluster

#: Commands packed into one write by ``publish_many``.
CHUNK = 2000
# redis-py before 5.3 requires a command name here; from 5.3 on, passing one is deprecated.
_POOL_ARGS = ("PUBLISH",) if tuple(map(int, redis.__version__.split(".")[:2])) < (5, 3) else ()
# Values codec.encode sends as they are (binary), rather than as JSON.
_AS_IS = frozenset({bytes, bytearray, memoryview})


# A node that cannot be reached (a cluster has others); a refused password is not that.
_LOST = (redis.ConnectionError, redis.TimeoutError)

# A cluster node's redirect answers every later command of the chunk too: follow so many.
_MAX_HOPS = 5


def connect(client: redis.Redis) -> None:
    """Make sure ``client`` can reach its node (connect and authenticate one connection)."""
    pool = client.connection_pool
    pool.release(pool.get_connection(*_POOL_ARGS))


def _channel_prefix(channel: str | bytes, sharded: bool = False) -> bytes:
    name = channel if isinstance(channel, bytes) else channel.encode("utf-8")
    command = b"$8\r\nSPUBLISH" if sharded else b"$7\r\nPUBLISH"
    return b"*3\r\n%s\r\n$%d\r\n%s\r\n" % (command, len(name), name)


def publish_many(
    client: redis.Redis,
    channel: str | bytes,
    messages: Iterable[Any],
    cap: SizeCap,
    *,
    sharded: bool = False,
    cluster: Cluster | None = None,
    on_lost: Callable[[BaseException], redis.Redis | None] | None = None,
) -> int:
    """Publish every value of ``messages`` to ``channel``, in order; return how many.

    Each value is encoded as ``publisher()`` would. A value that cannot be encoded or is over
    the cap is refused after every value before it was published; the error says how many
    (``PublishError.published`` for a refusal by the server). ``sharded``: SPUBLISH; with
    ``cluster``, sent to the owner of the channel's slot, and what a ``MOVED`` answered is
    sent again, in order, to the node it names. ``on_lost``: when ``client``'s node cannot be
    reached (before anything is sent), the client of another node to use instead, or None.
    """
    prefix = _channel_prefix(channel, sharded)
    if cluster is not None:
        name = channel if isinstance(channel, bytes) else channel.encode("utf-8")
        client = cluster.client(cluster.owner(name))
    encode = codec.encode
    dumps, option, encode_error = codec._dumps, codec._OPTIONS, orjson.JSONEncodeError
    limit = cap.limit
    # Connecting (and authenticating) happens here: wrap it like every other failure.
    try:
        conn = client.connection_pool.get_connection(*_POOL_ARGS)
    except CAUGHT as exc:
        lost = isinstance(exc, _LOST) and not isinstance(exc, redis.AuthenticationError)
        elsewhere = on_lost(exc) if lost and on_lost is not None else None
        if elsewhere is None:
            raise translate(exc, client, f"publish to {channel!r}", PublishError) from exc
        client = elsewhere
        with boundary(client, f"publish to {channel!r}", PublishError):
            conn = client.connection_pool.get_connection(*_POOL_ARGS)
    batch = _Chunks(client, conn, cluster)
    append = batch.parts.append
    keep = batch.values.append
    ok = False
    try:
        for value in messages:
            try:
                if value.__class__ in _AS_IS:
                    payload = encode(value)
                else:
                    # codec.encode's common case inlined (same result); it handles the rest.
                    try:
                        payload = dumps(value, option=option)
                    except encode_error:
                        payload = encode(value)
                if len(payload) > limit:
                    cap.check(len(payload), channel)  # raises, or learnt the server's cap
                    limit = cap.limit
            except (SerializationError, MessageTooLargeError) as exc:
                batch.drain()  # everything before the bad value goes out first
                raise type(exc)(
                    f"{exc} (message {batch.published + len(batch.refused)} of the batch, "
                    f"counting from 0; the {batch.published} before it were published)"
                ) from exc.__cause__ or exc
            # One formatted bytes per command: keeping orjson's own output objects alive
            # until the join costs ~1 us more per message (measured, allocator churn).
            append(b"%s$%d\r\n%s\r\n" % (prefix, len(payload), payload))
            keep(value)  # NaN/Infinity are looked for once a chunk (``_Chunks.write``)
            batch.count += 1
            if batch.count == CHUNK:
                batch.write()
                if batch.refused:
                    break
        batch.drain()
        if batch.refused:
            original = server_error(batch.refused[0])
            raise translate(
                original,
                client,
                f"publish {len(batch.refused)} of {batch.published + len(batch.refused)} "
                f"messages to {channel!r} ({batch.published} published)",
                PublishError,
                published=batch.published,
            ) from original
        ok = True
        return batch.published
    finally:
        if not ok:
            # Replies may still be in flight: never hand a desynchronised connection back.
            batch.conn.disconnect()
        batch.client.connection_pool.release(batch.conn)


class _Chunks:
    """One ``publish_many`` call's pipeline: the chunk being built (``parts``, ``count``) and
    the one written whose replies are not read yet (``inflight``, at most one chunk)."""

    def __init__(self, client: redis.Redis, conn: Any, cluster: Cluster | None = None) -> None:
        self.client = client
        self.conn = conn
        self.replies = _Replies(conn)
        self.parts: list[bytes] = []
        #: The values of the chunk being built, beside their commands (``_screen``).
        self.values: list[Any] = []
        self.count = 0
        self.inflight = 0
        self.published = 0
        self.refused: list[Any] = []
        #: On a cluster: the commands of the chunk in flight (a MOVED sends them again), and
        #: those a node redirected with where to (slot, address).
        self.cluster = cluster
        self.sent: list[bytes] = []
        self.moved: list[bytes] = []
        self.target: tuple[int, tuple[str, int]] | None = None
        self.hops = 0

    def write(self) -> None:
        """Write the chunk being built, then read the previous one's replies: the server
        executes one chunk while this thread encodes the next."""
        if self.count:
            blob = b"".join(self.parts)
            # orjson writes NaN and +-Infinity as null, which JSON cannot tell from None: one
            # scan of the whole chunk, and a closer look only when it holds a null.
            if b"null" in blob:
                self._screen()
            _write_blob(self.client, self.conn, blob, self.published)
        if self.inflight:
            self._settle(self.sent)
        self.inflight, self.count = self.count, 0
        if self.cluster is not None:
            self.sent = list(self.parts)
        self.parts.clear()
        self.values.clear()
        while self.moved:
            self._follow()

    def _screen(self) -> None:
        """Find the chunk's first value holding NaN or +-Infinity: publish everything before
        it, then raise ``SerializationError`` saying how many were published. Nothing if
        there is none (the nulls were None)."""
        for i, part in enumerate(self.parts):
            if b"null" not in part:
                continue
            try:
                codec.check_finite(self.values[i])
            except SerializationError as exc:
                del self.parts[i:]
                del self.values[i:]
                self.count = i
                self.drain()  # everything before the bad value goes out first
                raise SerializationError(
                    f"{exc} (message {self.published + len(self.refused)} of the batch, "
                    f"counting from 0; the {self.published} before it were published)"
                ) from exc

    def _settle(self, sent: list[bytes]) -> None:
        if self.cluster is None:
            self.published += _settle(
                self.client, self.replies, self.inflight, self.published, self.refused
            )
            return
        replies = _read(self.client, self.replies, self.inflight, self.published)
        for i, reply in enumerate(replies):
            if not isinstance(reply, hiredis.ReplyError):
                self.published += 1
            elif str(reply).startswith("MOVED "):
                self.moved.append(sent[i])
                _, slot, where = str(reply).split()[:3]
                host, _, port = where.rpartition(":")
                self.target = (int(slot), (host, int(port)))
            else:
                self.refused.append(reply)

    def _follow(self) -> None:
        """A node redirected part of what was sent: read the replies still due, then send
        what was redirected, in order, to the node named."""
        assert self.cluster is not None and self.target is not None
        if self.inflight:
            self._settle(self.sent)  # the chunk just written was redirected too
            self.inflight = 0
        self.hops += 1
        if self.hops > _MAX_HOPS:
            raise PublishError(
                f"publish: redirected {self.hops - 1} times in a row ({self.published} "
                "published); the cluster's slot map keeps changing",
                published=self.published,
            )
        slot, addr = self.target
        self.cluster.map.assign(slot, addr)
        self.client.connection_pool.release(self.conn)  # every reply read: clean
        self.client = self.cluster.client(addr)
        with boundary(self.client, "publish (following a MOVED)", PublishError):
            self.conn = self.client.connection_pool.get_connection(*_POOL_ARGS)
        self.replies = _Replies(self.conn)
        moved, self.moved = self.moved, []
        _write(self.client, self.conn, moved, self.published)
        self.inflight = len(moved)
        self.sent = moved

    def drain(self) -> None:
        """Write what is built and read every reply still due (and any redirected ones)."""
        self.write()
        while self.inflight:
            self.write()


def _write(client: redis.Redis, conn: Any, parts: list[bytes], before: int) -> None:
    _write_blob(client, conn, b"".join(parts), before)


def _write_blob(client: redis.Redis, conn: Any, blob: bytes, before: int) -> None:
    try:
        conn.send_packed_command([blob], check_health=False)
    except (redis.RedisError, OSError) as exc:
        doing = f"publish ({before} published before the failure)"
        raise translate(exc, client, doing, PublishError, published=before) from exc


def _read(client: redis.Redis, replies_in: _Replies, count: int, before: int) -> list[Any]:
    try:
        return replies_in.read(count)
    except (redis.RedisError, OSError) as exc:
        doing = f"publish ({before} published before the failure)"
        raise translate(exc, client, doing, PublishError, published=before) from exc


def _settle(
    client: redis.Redis, replies_in: _Replies, count: int, before: int, refused: list[Any]
) -> int:
    """Read ``count`` replies; return how many were accepted, add refusals to ``refused``."""
    replies = _read(client, replies_in, count, before)
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
                self._parser.feed(self._buf, 0, n)  # type: ignore[arg-type]  # any buffer
            else:
                replies.append(reply)
        return replies
