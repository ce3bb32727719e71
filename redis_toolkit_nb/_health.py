"""The server-side health gauge: a subscriber connection's output buffer on the server.

Redis queues what it has not written to a subscriber yet in that client's output buffer
(``CLIENT LIST``: ``omem``) and cuts the subscriber off when the buffer passes
``client-output-buffer-limit pubsub`` (hard limit at once, soft limit after soft-seconds;
``32mb 8mb 60`` by default). The reader keeps that buffer empty by draining the socket; when it
cannot (a handler holding up the ``block`` policy, a starved process, a slow network), this is
the figure that shows it before the cut-off.

``BufferGauge`` reads it over a separate connection per node (made like the subscriber's, with
a short timeout: a slow server costs at most ``timeout`` seconds, and never a pooled
connection of the toolkit), one pipelined round trip: ``CLIENT LIST ID <id>`` (the id the
reader asked for on connect; without ``+client|id``, ``CLIENT LIST TYPE pubsub`` matched by
the connection's local address) and ``CONFIG GET client-output-buffer-limit``. It never
guesses: a refused command gives a result that says which one and what to ask the owner for.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._errors import scrub

#: Seconds a reading waits for the server at most.
TIMEOUT = 1.0
#: The worst first (``Subscriber.server_buffer`` returns the worst of its connections).
SEVERITY = {"critical": 3, "warn": 2, "unknown": 1, "ok": 0}
_MB, _KB = 1024 * 1024, 1024


@dataclass(frozen=True)
class ServerBuffer:
    """One reading of a subscriber connection's output buffer on the server.

    ``omem``: bytes queued for it there (None: not read); ``tot_mem``: all the memory the
    server holds for that client; ``soft``, ``hard``, ``soft_seconds``: the server's
    ``client-output-buffer-limit pubsub`` (0: no limit; None: not read); ``fraction``:
    ``omem`` over the soft limit (the hard one when there is no soft limit); ``level``:
    ``"ok"``, ``"warn"`` (over half the soft limit, or a quarter of the hard one),
    ``"critical"`` (over the soft limit: the server cuts it off after ``soft_seconds``; or
    half the hard one) or ``"unknown"`` (see ``error``: which command was refused, and what to
    ask the server's owner for). ``node`` is ``host:port``, ``time`` when it was read
    (``time.time()``).
    """

    node: str
    omem: int | None = None
    tot_mem: int | None = None
    soft: int | None = None
    hard: int | None = None
    soft_seconds: int | None = None
    fraction: float | None = None
    level: str = "unknown"
    error: str | None = None
    client_id: int | None = None
    time: float = 0.0

    def text(self) -> str:
        """One line: ``server buffer 1.2 MB of 8 MB soft / 32 MB hard``, and why not."""
        if self.omem is None:
            return f"server buffer unknown: {self.error}"
        used = f"server buffer {size(self.omem)}"
        if self.soft is None or self.hard is None:
            return f"{used} (limits unknown: {self.error})"
        pairs = (("soft", self.soft), ("hard", self.hard))
        limits = [f"{size(v, exact=True)} {k}" for k, v in pairs if v] or ["no limit"]
        line = f"{used} of {' / '.join(limits)}"
        if self.level == "warn":
            line += " (over half the limit: the subscriber is falling behind)"
        elif self.level == "critical" and self.soft and self.omem >= self.soft:
            line += (
                f" (over the soft limit: the server cuts the subscriber off after "
                f"{self.soft_seconds} s there)"
            )
        elif self.level == "critical":
            line += " (over half the hard limit: the server cuts the subscriber off at it)"
        return line


def size(n: int, exact: bool = False) -> str:
    """``n`` bytes as Redis counts them (``1mb`` = 1024 kB): ``1.2 MB``, ``8 MB``, ``640 kB``."""
    for unit, name in ((_MB, "MB"), (_KB, "kB")):
        if n >= unit:
            value = n / unit
            return f"{value:.0f} {name}" if exact and n % unit == 0 else f"{value:.1f} {name}"
    return f"{n} B"


def level_of(omem: int, soft: int, hard: int) -> tuple[float | None, str]:
    """``fraction`` and ``level`` of ``omem`` bytes under the limits (0: none)."""
    warn = [x for x in (soft // 2, hard // 4) if x > 0]
    critical = [x for x in (soft, hard // 2) if x > 0]
    base = soft or hard
    fraction = omem / base if base else None
    if critical and omem >= min(critical):
        return fraction, "critical"
    if warn and omem >= min(warn):
        return fraction, "warn"
    return fraction, "ok"


def pubsub_limits(value: Any) -> tuple[int, int, int]:
    """(hard, soft, soft-seconds) of ``client-output-buffer-limit``'s ``pubsub`` class."""
    words = _text(value).split()
    if "pubsub" not in words:
        raise ValueError(f"no pubsub class in client-output-buffer-limit {_text(value)!r}")
    at = words.index("pubsub")
    hard, soft, seconds = (int(w) for w in words[at + 1 : at + 4])
    return hard, soft, seconds


class BufferGauge:
    """Reads subscriber connections' output buffers (see the module docstring)."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self._clients: dict[tuple[str, int], redis.Redis] = {}
        self._lock = threading.Lock()

    def read(self, reader: Any) -> ServerBuffer:
        """One reading of ``reader``'s connection (a ``_reader.Reader``)."""
        host, port = reader.address
        node = f"{host}:{port}"
        cid, addr = reader.client_id, reader.local_addr
        now = time.time()
        if cid is None and addr is None:
            return ServerBuffer(node, error="the subscriber is not connected now", time=now)
        kwargs = reader.conn_kwargs
        user = kwargs.get("username") or "default"
        try:
            entry, limits = self._ask(self._client(reader), cid)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            error = f"no answer from {node} within {self.timeout:g} s ({scrub(exc, kwargs)})"
            return ServerBuffer(node, error=error, client_id=cid, time=now)
        if isinstance(entry, Exception):
            error = _refused("CLIENT LIST", entry, user, "+client|list", kwargs)
            return ServerBuffer(node, error=error, client_id=cid, time=now)
        found = _find(entry, cid, addr)
        if found is None:
            error = (
                f"the subscriber's connection (id {cid}, address {addr}) is not in the server's "
                "CLIENT LIST: it is reconnecting, or a proxy stands between"
            )
            return ServerBuffer(node, error=error, client_id=cid, time=now)
        omem, tot_mem = int(found["omem"]), int(found.get("tot-mem", 0)) or None
        cid = int(found["id"])
        if isinstance(limits, Exception):
            error = _refused(
                "CONFIG GET client-output-buffer-limit", limits, user, "+config|get", kwargs
            )
            return ServerBuffer(node, omem, tot_mem, error=error, client_id=cid, time=now)
        hard, soft, seconds = limits
        fraction, level = level_of(omem, soft, hard)
        return ServerBuffer(
            node, omem, tot_mem, soft, hard, seconds, fraction, level, client_id=cid, time=now
        )

    def _ask(self, client: redis.Redis, cid: int | None) -> tuple[Any, Any]:
        pipe = client.pipeline(transaction=False)
        if cid is not None:
            pipe.client_list(client_id=[cid])
        else:
            pipe.client_list(_type="pubsub")
        pipe.config_get("client-output-buffer-limit")
        entry, config = pipe.execute(raise_on_error=False)
        if isinstance(entry, redis.ResponseError) and not isinstance(
            entry, redis.exceptions.NoPermissionError
        ):
            # A server before 6.2 has no CLIENT LIST ID: list the pub/sub clients instead.
            try:
                entry = client.client_list(_type="pubsub")
            except redis.ResponseError as exc:
                entry = exc
        if not isinstance(config, Exception):
            try:
                config = pubsub_limits(next(iter(config.values()), ""))
            except (ValueError, TypeError) as exc:
                config = exc
        return entry, config

    def _client(self, reader: Any) -> redis.Redis:
        address = tuple(reader.address)
        with self._lock:
            client = self._clients.get(address)
            if client is None:
                kwargs = dict(reader.conn_kwargs)
                if kwargs.get("client_name") == "redis_toolkit_nb:subscriber":
                    kwargs["client_name"] = "redis_toolkit_nb:health"
                kwargs.update(
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    retry=Retry(NoBackoff(), 0),
                )
                pool = redis.ConnectionPool(connection_class=reader.conn_class, **kwargs)
                client = self._clients[address] = redis.Redis(connection_pool=pool)
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


def _find(entries: list[dict[str, Any]], cid: int | None, addr: str | None) -> Any:
    for entry in entries:
        if (cid is not None and entry.get("id") == str(cid)) or (
            cid is None and entry.get("addr") == addr
        ):
            return entry
    return None


def _refused(command: str, exc: Exception, user: str, grant: str, kwargs: Any) -> str:
    return (
        f"{command} was refused ({scrub(exc, kwargs)}): ask the server's owner to grant "
        f"user {user!r} {grant} (ACL SETUSER {user} {grant}) to see this figure"
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
