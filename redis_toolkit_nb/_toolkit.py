"""``RedisToolkit``: publish with automatic serialization, subscribe in the background."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.cluster import RedisCluster

from . import _codec as codec
from . import _publish as publisher
from . import _replay
from ._cluster import Addr, Cluster, addr_text, discover, require_sharded
from ._connection import make_client, resolve_url
from ._errors import boundary, describe, scrub, translate
from ._latency import Stamping, stamped
from ._options import RedisOptions
from ._reqreply import RequestReply, RequestStats
from ._sizecap import SizeCap
from ._stats import SubscriberStats
from ._subscriber import Subscriber
from ._urls import mask_url
from .exceptions import PublishError, ToolkitConnectionError, ToolkitError

logger = logging.getLogger("redis_toolkit_nb")
_handler_installed = False


def _enable_info_logging(options: RedisOptions) -> None:
    """``is_logger_info=True``: make the toolkit's INFO lines visible on stderr, once."""
    global _handler_installed
    logger.setLevel(options.logging_level)
    if not _handler_installed and not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        _handler_installed = True


class RedisToolkit:
    """Redis Pub/Sub with automatic serialization and a background subscriber.

    ``RedisToolkit()`` connects to ``url``, else ``$REDIS_URL``, else
    ``redis://localhost:6379/0``, else the embedded server (see ``connection.resolve_url``);
    ``RedisToolkit(redis=client)`` uses an existing redis-py client. With ``channels`` and
    ``message_handler``, a subscriber starts at once and the constructor returns only when the
    server has confirmed every subscription; it runs until ``cleanup()``, even if no reference
    to the toolkit is kept. Channels with ``*``, ``?`` or ``[...]`` are patterns.

    ``sharded_channels`` are sharded channels (SSUBSCRIBE, Redis 7.0+). The address of any node
    of a Redis Cluster (or a ``redis.cluster.RedisCluster``) is enough: the toolkit finds the
    cluster's nodes and slots, reads each sharded channel from its slot's owner and follows it
    when it moves (see the README's "Redis Cluster").
    """

    def __init__(
        self,
        redis: redis.Redis | str | None = None,
        *,
        url: str | None = None,
        channels: Iterable[str | bytes] | None = None,
        message_handler: Callable[[str, Any], Any] | None = None,
        options: RedisOptions | None = None,
        name: str | None = None,
        sharded_channels: Iterable[str | bytes] | None = None,
    ) -> None:
        if options is not None and not isinstance(options, RedisOptions):
            raise TypeError(f"options must be a RedisOptions, not {type(options).__name__}")
        self.options = options or RedisOptions()
        if self.options.is_logger_info:
            _enable_info_logging(self.options)
        client = redis
        if isinstance(client, str):
            client, url = None, client
        self._cluster: Cluster | None = None
        self._cluster_known = False
        self._sharded_checked = False
        if isinstance(client, RedisCluster):
            # Its default node's client speaks for the cluster; the map is read from it.
            client = client.get_default_node().redis_connection
        if client is not None:
            if url is not None:
                raise TypeError("pass either an existing redis client or url=, not both")
            self._owns_client = False
            self._url = None
            self.client = client
        else:
            self._url = resolve_url(url)
            self._owns_client = True
            self.client = make_client(self._url, self.options)
        self._cap = SizeCap(self.client, self.options.max_value_size)
        # Where classic PUBLISH goes: the client's node; on a cluster, another node once that
        # one is lost. Whether it is a cluster is asked once, after the first classic publish
        # that went through (the node is reachable then: an unreachable one costs no more).
        self._pub = self.client
        self._pub_addr: Addr | None = None
        self._ask_cluster = True
        self._closed = False
        self.subscriber: Subscriber | None = None
        if channels is not None or message_handler is not None or sharded_channels is not None:
            if isinstance(channels, (str, bytes)):
                channels = [channels]
            self.subscriber = Subscriber(
                self.client,
                handler=message_handler,
                options=self.options,
                name=name,
                cluster=self._cluster if self._cluster_known else False,
            )
            try:
                self.subscriber.start(channels or (), sharded_channels or ())
            except BaseException:
                self._close_client()
                raise

    def _detect(self, quiet: bool = False) -> Cluster | None:
        """The cluster behind ``client``, or None for a standalone server (asked once).
        ``quiet``: an unreachable server is not an error here (the caller reports it)."""
        if not self._cluster_known:
            try:
                with boundary(self.client, "discover the cluster"):
                    slots = discover(self.client)
            except ToolkitConnectionError:
                if quiet:
                    return None
                raise
            self._cluster = Cluster(self.client, slots) if slots is not None else None
            self._cluster_known = True
        return self._cluster

    def _sharded_cluster(self) -> Cluster | None:
        """``_detect()``, once it is known the server has sharded Pub/Sub (7.0+)."""
        cluster = self._detect()
        if not self._sharded_checked:
            require_sharded(self.client, PublishError)
            self._sharded_checked = True
        return cluster

    @property
    def cluster(self) -> Cluster | None:
        """The Redis Cluster this toolkit talks to (nodes, slot map), None for one server."""
        return self._detect()

    # ---- publishing --------------------------------------------------------------------------
    def publisher(
        self, channel: str | bytes, data: Any, sharded: bool = False, stamp: str | None = None
    ) -> int:
        """Serialize ``data`` (see ``codec``) and publish it; return the number of receivers.

        ``stamp="ts"``: publish a copy of the dict ``data`` with the field ``ts`` (a dotted
        path) set to ``time.time()``, for a subscriber's ``latency_field`` to measure;
        a payload that is not a dict raises ``SerializationError``.

        ``sharded=True`` publishes to a sharded channel (SPUBLISH, Redis 7.0+), on a cluster
        routed to the node owning the channel's slot (following a ``MOVED``). The count is
        that node's receivers only (a classic PUBLISH on a cluster, too: the receivers on the
        node that took it).

        Raises ``MessageTooLargeError`` (before sending) over ``max_value_size`` or over
        what the server can deliver to a subscriber, ``SerializationError`` for a value JSON
        cannot hold, ``ToolkitConnectionError`` when the server cannot be reached or refuses
        the credentials, ``PublishError`` when it refuses the publish (ACL, READONLY...).
        """
        if stamp is not None:
            data = stamped(data, stamp)
        payload = codec.encode(data)
        if len(payload) > self._cap.limit:
            self._cap.check(len(payload), channel)
        try:
            if sharded:
                return self._spublish(channel, payload)
            count = self._pub.publish(channel, payload)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if sharded or self._cluster is None or isinstance(exc, redis.AuthenticationError):
                raise translate(exc, self._pub, f"publish to {channel!r}", PublishError) from exc
            count = self._publish_elsewhere(channel, payload, exc)
        except (redis.RedisError, OSError) as exc:
            # A try costs nothing until something is raised: the hot path stays redis-py's.
            client = self.client if sharded else self._pub
            raise translate(exc, client, f"publish to {channel!r}", PublishError) from exc
        if self._ask_cluster:
            self._learn_cluster()
        return count

    publish = publisher

    def _learn_cluster(self) -> None:
        """Is classic publishing talking to a cluster (so it can move when its node is lost)?"""
        try:
            self._detect(quiet=True)
        except ToolkitError as exc:
            # E.g. an ACL user without CLUSTER SLOTS: publishing works, it just cannot move.
            logger.debug("classic publishing cannot learn the cluster: %s", scrub(exc, self.client))
            self._ask_cluster = False
            return
        self._ask_cluster = not self._cluster_known  # unreachable just now: ask again later

    def _publish_elsewhere(self, channel: str | bytes, payload: bytes, lost: Exception) -> int:
        """The node classic PUBLISH went to is lost: publish on another node of the cluster
        (any node takes it and relays it to every subscriber) and keep publishing there."""
        try:
            return self._move_classic(lost, lambda client: client.publish(channel, payload))
        except (redis.RedisError, OSError) as exc:
            doing = f"publish to {channel!r} (its node was lost, and no other node took it)"
            raise translate(exc, self._pub, doing, PublishError) from exc

    def _move_classic(self, lost: BaseException, attempt: Callable[[redis.Redis], Any]) -> Any:
        assert self._cluster is not None
        was = self._pub_addr or self._cluster.seed_addr
        addr, answer = self._cluster.fail_over(was, attempt)
        self._pub, self._pub_addr = self._cluster.client(addr), addr
        logger.warning(
            "classic publishing moved from %s to %s: %s",
            addr_text(was),
            addr_text(addr),
            scrub(lost, self.client),
        )
        return answer

    def _classic_lost(self, lost: BaseException) -> redis.Redis | None:
        """``publish_many``'s node could not be reached: the client of another live node of
        the cluster (None on one server, or when no other node answers)."""
        if self._cluster is None:
            return None
        try:
            self._move_classic(lost, publisher.connect)
        except (redis.RedisError, OSError):
            return None
        return self._pub

    def _spublish(self, channel: str | bytes, payload: bytes) -> int:
        name = channel if isinstance(channel, bytes) else channel.encode("utf-8")
        cluster = self._sharded_cluster()
        if cluster is not None:
            return cluster.spublish(name, payload)
        return int(self.client.execute_command("SPUBLISH", name, payload))

    def publish_many(
        self,
        channel: str | bytes,
        messages: Iterable[Any],
        sharded: bool = False,
        stamp: str | None = None,
    ) -> int:
        """Publish every value of ``messages`` to ``channel`` in order, pipelined in chunks of
        2,000 per write; return how many were published. Safe from many threads at once.

        ``sharded=True``: SPUBLISH, to the node owning the channel's slot; after a ``MOVED``
        the values not yet accepted are sent again, in order, where it says. ``stamp``: as in
        ``publisher()``, each dict stamped as it is taken; a value that is not a dict raises
        ``SerializationError`` once the values before it are published."""
        if stamp is not None:
            stamping = Stamping(messages, stamp)
            count = self.publish_many(channel, stamping, sharded)
            stamping.check(count)
            return count
        if not sharded:
            count = publisher.publish_many(
                self._pub, channel, messages, self._cap, on_lost=self._classic_lost
            )
            if self._ask_cluster:
                self._learn_cluster()
            return count
        with boundary(self.client, f"publish to {channel!r}", PublishError):
            cluster = self._sharded_cluster()
        return publisher.publish_many(
            self.client, channel, messages, self._cap, sharded=True, cluster=cluster
        )

    def replay(
        self,
        frame: Any,
        speed: float = 1.0,
        channel_map: dict[Any, Any] | None = None,
        prefix: str | None = None,
        *,
        progress: Callable[[int], object] | None = None,
    ) -> _replay.ReplaySummary:
        """Publish a capture again (``feed.df``, ``read_capture(path)``, or records
        ``(time, channel, pattern, data, size)``), in order, keeping the gaps between the
        messages divided by ``speed``; ``speed=0``: as fast as possible, each run of messages
        to one channel pipelined (``publish_many``).

        ``channel_map`` sends a channel's messages to another channel; ``prefix`` is put in
        front of every target channel (after the map): replay into fresh channels without
        touching the live ones. ``progress(n)`` is called after every n messages sent.
        Returns a ``ReplaySummary``: messages sent, duration, and how late the sends were
        against the schedule (p50/p99/max).
        """
        steps = _replay.replay_plan(frame, speed, channel_map, prefix)
        return _replay.replay(self, steps, speed, progress)

    # ---- subscribing -------------------------------------------------------------------------
    def _require_subscriber(self) -> Subscriber:
        if self.subscriber is None:
            raise ToolkitError(
                "this toolkit has no subscriber: create it with channels=[...] and "
                "message_handler=... to receive messages"
            )
        return self.subscriber

    def subscribe(self, *channels: str | bytes, sharded: bool = False) -> None:
        """Add channels or patterns to the running subscriber (the others keep flowing);
        ``sharded=True``: sharded channels (names taken literally)."""
        self._require_subscriber().subscribe(*channels, sharded=sharded)

    def unsubscribe(self, *channels: str | bytes, sharded: bool = False) -> None:
        """Remove channels or patterns (``sharded=True``: sharded channels)."""
        self._require_subscriber().unsubscribe(*channels, sharded=sharded)

    @property
    def stats(self) -> SubscriberStats:
        """The subscriber's figures (an empty snapshot when there is no subscriber)."""
        return self.subscriber.stats if self.subscriber else SubscriberStats()

    @property
    def url(self) -> str:
        """Where this toolkit connects, password masked."""
        return mask_url(self._url) if self._url else f"redis://{describe(self.client)}"

    def scrub(self, error: BaseException | str) -> str:
        """The text of ``error`` with this toolkit's password masked (for messages)."""
        return scrub(error, self.client)

    def ping(self) -> bool:
        """PING the server: True when it answers. ``ToolkitConnectionError`` when it cannot be
        reached, ``ToolkitError`` when it refuses (an ACL user without ``+ping``)."""
        with boundary(self.client, "PING"):
            return bool(self.client.ping())

    # ---- cleanup -----------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Stop the subscriber, join its threads and close the connections. Idempotent."""
        request_reply = self.__dict__.get("_request_reply")
        if request_reply is not None:
            request_reply.close()
        if self.subscriber is not None:
            self.subscriber.stop()
        if not self._closed:
            self._closed = True
            self._close_client()

    close = cleanup

    def _close_client(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> RedisToolkit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        sub = ""
        if self.subscriber is not None:
            sub = f" subscriber={self.subscriber.name} names={self.subscriber.names}"
        return f"<RedisToolkit {self.url}{sub}>"

    # ---- request-reply and acknowledgements (see _reqreply) ----------------------------------
    def request(self, channel: str | bytes, data: Any, timeout: float = 5.0) -> Any:
        """Publish the guide's request ``{"id", "response_channel", "data": data}`` on
        ``channel`` and return the reply (the whole payload published to the response channel).

        One reply subscription per toolkit serves every request; safe from many threads.
        Raises ``RequestTimeout`` when no reply comes within ``timeout`` seconds (at once if
        the request reached no subscriber), ``RemoteError`` when ``serve()``'s function raised.
        """
        return RequestReply.of(self).request(channel, data, timeout)

    def serve(self, channel: str | bytes, fn: Callable[[Any], Any]) -> Subscriber:
        """Answer requests on ``channel``: publish ``fn(request["data"])`` to the request's
        ``response_channel``; if ``fn`` raises, send ``{"_rtk_error": {"type", "message"}}``
        instead. Requests are answered one at a time, in order, on the returned subscriber's
        thread; ``cleanup()`` (or its ``stop()``) ends it."""
        return RequestReply.of(self).serve(channel, fn)

    def publish_with_ack(
        self, channel: str | bytes, message: dict[str, Any], timeout: float = 5.0, acks: int = 1
    ) -> int:
        """Publish a copy of ``message`` with the guide's ``_msg_id`` and ``_ack_channel``
        fields, wait until ``acks`` acknowledgements came or ``timeout`` passed (not at all if
        no subscriber got it), and return how many came."""
        return RequestReply.of(self).publish_with_ack(channel, message, timeout, acks)

    def ack(self, data: Any) -> bool:
        """Send the guide's acknowledgement for ``data`` if it asked for one (True), else do
        nothing (False)."""
        return RequestReply.of(self).ack(data)

    @property
    def request_stats(self) -> RequestStats:
        """Figures of ``request()``, ``serve()`` and ``publish_with_ack()`` (late replies...)."""
        rr = self.__dict__.get("_request_reply")
        return rr.stats() if rr is not None else RequestStats()
