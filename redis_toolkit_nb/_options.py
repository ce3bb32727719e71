"""``RedisOptions``: the toolkit's behaviour, as a validated dataclass."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

from ._codec import DECODE_MODES
from ._sizecap import DEFAULT_DELIVERABLE, DEFAULT_PUBSUB_HARD_LIMIT
from .exceptions import OptionsError

OVERFLOW_POLICIES = ("drop_oldest", "drop_newest", "block")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Redis disconnects every subscriber of a message over its pub/sub hard limit (32 MiB by
# default), and with the default limit the largest payload a subscriber receives is 28 MiB
# (29,376,459 bytes measured on Redis 7.0.15; see _sizecap): the cap may not exceed the
# toolkit's conservative figure for it, 28 MiB - 4 KiB = 29,356,032 bytes.
PUBSUB_HARD_LIMIT = DEFAULT_PUBSUB_HARD_LIMIT
MAX_VALUE_SIZE_BOUND = DEFAULT_DELIVERABLE


@dataclass
class RedisOptions:
    """Options for :class:`~redis_toolkit_nb.RedisToolkit`.

    The first group has the same names and meaning as in the original ``redis-toolkit``
    (so code written for it keeps working); the second is this toolkit's own.
    Every field is checked when the object is made; a bad value raises ``OptionsError``.
    """

    # --- fields of the original redis-toolkit -------------------------------------------
    #: Log the toolkit's INFO lines (subscriptions, reconnects) to stderr.
    is_logger_info: bool = False
    #: Level of the toolkit's logger when ``is_logger_info`` is on.
    log_level: str = "INFO"
    #: Payload previews in log lines are cut to this many characters.
    max_log_size: int = 256
    #: Upper bound, in seconds, of the reconnect backoff (it starts at 0.05 s and doubles).
    subscriber_retry_delay: float = 5
    #: Seconds ``cleanup()`` waits for the subscriber's threads to finish.
    subscriber_stop_timeout: float = 5
    #: Largest payload, in bytes, that ``publisher()`` sends; a larger one raises
    #: ``MessageTooLargeError`` before anything is sent. At most 29,356,032 (28 MiB - 4 KiB:
    #: what a subscriber of a default-configured server can receive); a server configured
    #: with a smaller ``client-output-buffer-limit pubsub`` lowers it further (read once).
    max_value_size: int = 10 * 1024 * 1024
    #: Size cap of the publishing connection pool (None: redis-py's default).
    max_connections: int | None = None

    # --- this toolkit's own ---------------------------------------------------------------
    #: Newest messages each subscriber keeps for inspection (``subscriber.buffer``); 0: none.
    buffer_size: int = 1000
    #: Parsed messages that may wait for the handler. A burst beyond it waits unparsed in the
    #: reader's backlog (``max_backlog_bytes``), where it is compact and costs the garbage
    #: collector nothing: a larger queue only slows ingest (measured: 100,000 parsed messages
    #: alive made ingest ~20% slower). With ``max_backlog_bytes=0`` this queue alone absorbs
    #: bursts, and ``overflow`` applies when it is full.
    queue_size: int = 10_000
    #: What happens when the handler falls ``queue_size`` messages behind:
    #: ``"drop_oldest"`` (keep the newest), ``"drop_newest"`` (keep the oldest), or ``"block"``
    #: (stop reading; the server may then disconnect the subscriber, which reconnects and
    #: counts it). Drops are counted in ``stats.dropped`` and logged.
    overflow: str = "drop_oldest"
    #: Bytes the reader may hold unparsed while the handler queue is full (a burst waits there
    #: at ~140 bytes a message instead of being dropped); past it the overflow policy applies.
    #: 0: parse at once, so the queue alone absorbs bursts.
    max_backlog_bytes: int = 256 * 1024 * 1024
    #: Payload decoding: ``"auto"`` (JSON, else text, else bytes), ``"json"`` (non-JSON is a
    #: decode error) or ``"raw"`` (bytes as received).
    decode: str = "auto"
    #: Deliver the original redis-toolkit 0.4.0's typed envelopes (``{"__type__": "int",
    #: "__data__": 5}``, ``__NONE__``) as the values they carry, under ``"auto"`` and ``"json"``
    #: decoding; False delivers them as they are (dicts, text).
    legacy_envelopes: bool = True
    #: Seconds of silence after which the subscriber PINGs; no reply within as long again and
    #: the link is treated as dead and re-established.
    health_check_interval: float = 15.0
    #: Seconds to wait for the server to confirm subscriptions (constructor, ``subscribe()``).
    subscribe_timeout: float = 10.0
    #: Seconds allowed to open a TCP connection.
    connect_timeout: float = 5.0
    #: A field of dict payloads numbered by the publisher (a dotted path: ``"seq"``,
    #: ``"meta.seq"``): the subscriber then finds gaps, duplicates and reordering per channel
    #: (``subscriber.sequence``). None: no checking, and no cost per message.
    seq_field: str | None = None
    #: A field of dict payloads holding the publish time (epoch seconds, milliseconds,
    #: microseconds or nanoseconds, told apart by magnitude; a dotted path): the subscriber
    #: then measures latency per channel (``subscriber.latency``; ``publisher(...,
    #: stamp="ts")`` puts the stamp in). None: no measuring, and no cost per message.
    latency_field: str | None = None
    #: Follow the fields and JSON types of the payloads per channel, and report drift: a field
    #: that appears, disappears or changes type (``subscriber.schema``). False: no cost per
    #: message.
    track_schema: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``OptionsError`` naming the first bad one."""
        _check(
            isinstance(self.is_logger_info, bool),
            "is_logger_info",
            self.is_logger_info,
            "must be True or False",
        )
        _check(
            self.log_level in LOG_LEVELS,
            "log_level",
            self.log_level,
            f"must be one of {', '.join(LOG_LEVELS)}",
        )
        _positive("max_log_size", self.max_log_size, integer=True)
        _positive("subscriber_retry_delay", self.subscriber_retry_delay)
        _positive("subscriber_stop_timeout", self.subscriber_stop_timeout)
        _positive("max_value_size", self.max_value_size, integer=True)
        _check(
            self.max_value_size <= MAX_VALUE_SIZE_BOUND,
            "max_value_size",
            self.max_value_size,
            f"must be at most {MAX_VALUE_SIZE_BOUND} bytes (28 MiB - 4 KiB): with Redis's "
            "default client-output-buffer-limit pubsub 32mb, a larger message disconnects "
            "every subscriber instead of reaching them",
        )
        if self.max_connections is not None:
            _positive("max_connections", self.max_connections, integer=True)
        _check(
            _is_int(self.buffer_size) and self.buffer_size >= 0,
            "buffer_size",
            self.buffer_size,
            "must be a whole number >= 0",
        )
        _positive("queue_size", self.queue_size, integer=True)
        _check(
            _is_int(self.max_backlog_bytes) and self.max_backlog_bytes >= 0,
            "max_backlog_bytes",
            self.max_backlog_bytes,
            "must be a whole number >= 0",
        )
        _check(
            self.overflow in OVERFLOW_POLICIES,
            "overflow",
            self.overflow,
            f"must be one of {', '.join(OVERFLOW_POLICIES)}",
        )
        _check(
            self.decode in DECODE_MODES,
            "decode",
            self.decode,
            f"must be one of {', '.join(DECODE_MODES)}",
        )
        _check(
            isinstance(self.legacy_envelopes, bool),
            "legacy_envelopes",
            self.legacy_envelopes,
            "must be True or False",
        )
        _positive("health_check_interval", self.health_check_interval)
        _positive("subscribe_timeout", self.subscribe_timeout)
        _positive("connect_timeout", self.connect_timeout)
        _check(
            self.seq_field is None
            or (isinstance(self.seq_field, str) and all(self.seq_field.split("."))),
            "seq_field",
            self.seq_field,
            "must be None or a field name (a dotted path such as 'seq' or 'meta.seq')",
        )
        _check(
            self.latency_field is None
            or (isinstance(self.latency_field, str) and all(self.latency_field.split("."))),
            "latency_field",
            self.latency_field,
            "must be None or a field name (a dotted path such as 'ts' or 'meta.ts')",
        )
        _check(
            isinstance(self.track_schema, bool),
            "track_schema",
            self.track_schema,
            "must be True or False",
        )

    @property
    def logging_level(self) -> int:
        return getattr(logging, self.log_level)

    def replace(self, **changes: object) -> RedisOptions:
        """Return a copy with ``changes`` applied (and validated)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return RedisOptions(**values)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise OptionsError(f"RedisOptions.{name}={value!r} is invalid: {rule}")


def _positive(name: str, value: object, integer: bool = False) -> None:
    number = _is_int(value) or (not integer and isinstance(value, float))
    kind = "a whole number" if integer else "a number"
    _check(number and value > 0, name, value, f"must be {kind} > 0")  # type: ignore[operator]
