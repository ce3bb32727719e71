"""The notebook's connection and its running subscriptions (one ``NotebookState`` per shell)."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any

import redis

from .. import (
    DEFAULT_URL,
    EmbeddedCluster,
    RedisToolkit,
    ToolkitConnectionError,
    mask_url,
    resolve_url,
)
from .logs import LOG
from .subscription import Subscription


def default_name(names: Iterable[str]) -> str:
    """``sub_<first channel>`` as a Python identifier (``news.*`` -> ``sub_news``)."""
    first = next(iter(names), "")
    stem = re.sub(r"\W+", "_", str(first)).strip("_")
    return f"sub_{stem}" if stem else "sub"


class NotebookState:
    """Where the magics connect, and every subscription they started.

    ``url`` is the URL of the last ``%rtk_connect`` (else ``default_url``, else ``REDIS_URL``,
    localhost, or the embedded server, resolved on first use).
    """

    def __init__(
        self,
        namespace: dict[str, Any],
        *,
        default_url: Callable[[], str | None] = lambda: None,
        announce: Callable[[str], Any] = print,
        timezone: Callable[[], str] = lambda: "UTC",
    ) -> None:
        self._timezone = timezone
        self.namespace = namespace
        self._default_url = default_url
        self._announce = announce
        self.url: str | None = None
        #: Set when the last ``%rtk_connect`` failed: (masked URL, reason). Until a connect
        #: succeeds nothing connects anywhere (never another server, silently).
        self.failed: tuple[str, str] | None = None
        self._toolkit: RedisToolkit | None = None
        self._lock = threading.RLock()
        self.subscriptions: dict[str, Subscription] = {}
        #: The cluster ``%rtk_connect --embedded-cluster`` started (stopped by ``close()``).
        self.embedded_cluster: EmbeddedCluster | None = None

    # ---- connection --------------------------------------------------------------------------
    def _default(self) -> str:
        explicit = self._default_url() or None
        with LOG.quiet():  # the notebook says where it connects itself (below)
            url = resolve_url(explicit)
        if not explicit and not os.environ.get("REDIS_URL") and url != DEFAULT_URL:
            self._announce(
                f"redis_toolkit_nb: no Redis at {DEFAULT_URL} and no REDIS_URL; using the "
                f"embedded server at {mask_url(url)}"
            )
        return url

    def _check_not_failed(self) -> None:
        if self.failed is not None:
            url, reason = self.failed
            raise ToolkitConnectionError(
                f"not connected: %rtk_connect {url} failed ({reason}); nothing is sent to any "
                "other server until %rtk_connect succeeds"
            )

    def resolve(self) -> str:
        """The URL to use now (resolving the default once; may start the embedded server).
        After a failed ``connect`` it raises ``ToolkitConnectionError`` naming that URL."""
        with self._lock:
            self._check_not_failed()
            if self.url is None:
                self.url = self._default()
            return self.url

    @property
    def toolkit(self) -> RedisToolkit:
        """The publishing toolkit, connected lazily."""
        with self._lock:
            self._check_not_failed()
            if self._toolkit is None:
                self._toolkit = RedisToolkit(url=self.resolve())
            return self._toolkit

    def connect(self, url: str | None = None) -> dict[str, str]:
        """(Re)connect to ``url`` (None: the default chain), check that the server answers and
        return ``server_info()``. On failure the notebook is left unconnected: the previous
        connection is closed and every later use raises ``ToolkitConnectionError`` naming the
        URL that failed, until a connect succeeds (a user who asked for another server must
        never publish to the old one unknowingly). Running subscriptions stay on the server
        they started on."""
        with self._lock:
            old, self._toolkit = self._toolkit, None
            if old is not None:
                old.close()
            target = url
            try:
                target = url or self._default()
                tk = RedisToolkit(url=target)
            except Exception as exc:
                self.url, self.failed = target, (mask_url(target or "the default URL"), str(exc))
                raise
            try:
                info = self.server_info(tk)
            except BaseException as exc:
                tk.close()
                self.url, self.failed = target, (tk.url, str(exc))
                raise
            self._toolkit, self.url, self.failed = tk, target, None
            return info

    def connect_embedded_cluster(self, masters: int = 3, replicas: int = 0) -> EmbeddedCluster:
        """Start a private cluster (or reuse the one started before, if of that shape; another
        shape stops it first) and connect to it; returns it."""
        with self._lock:
            cluster = self.embedded_cluster
            if cluster is not None and (cluster.n_masters, cluster.n_replicas) != (
                masters,
                replicas,
            ):
                cluster.stop()
                cluster = self.embedded_cluster = None
            if cluster is None:
                cluster = EmbeddedCluster(masters, replicas).start()
                self.embedded_cluster = cluster
            self.connect(cluster.url)
            return cluster

    def server_info(self, tk: RedisToolkit | None = None) -> dict[str, str]:
        """``url`` (masked), ``server`` (redis or valkey) and ``version`` of the server."""
        tk = tk or self.toolkit
        try:
            info = tk.client.info("server")
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ToolkitConnectionError(
                f"cannot reach Redis at {tk.url}: {tk.scrub(exc)}"
            ) from exc
        except redis.RedisError as exc:
            raise ToolkitConnectionError(
                f"Redis at {tk.url} refused INFO: {tk.scrub(exc)}"
            ) from exc
        server = str(info.get("server_name") or ("valkey" if "valkey_version" in info else "redis"))
        version = str(info.get("valkey_version") or info.get("redis_version") or "?")
        return {"url": tk.url, "server": server, "version": version}

    # ---- subscriptions -----------------------------------------------------------------------
    def subscribe(
        self,
        names: list[str],
        *,
        name: str | None = None,
        max_rows: int = 1000,
        decode: str = "auto",
        body: CodeType | None = None,
        log_size: int = 50,
        sharded: bool = False,
        seq_field: str | None = None,
        cls: type[Subscription] = Subscription,
        **extra: Any,
    ) -> Subscription:
        """Start a subscription bound to ``name`` in the namespace, replacing (stopping) any
        earlier one of that name (``sharded``: ``names`` are sharded channels; ``cls`` and
        ``extra``: a kind of subscription and its own arguments, as ``%rtk keyspace``'s)."""
        name = name or default_name(names)
        if not name.isidentifier():
            raise ValueError(f"--name {name!r} is not a Python identifier")
        self.stop(name)
        previous = self.namespace.get(name)
        if isinstance(previous, Subscription):
            previous.stop()  # started by an earlier load of the extension
        sub = cls(
            names,
            name=name,
            url=self.resolve(),
            max_rows=max_rows,
            decode=decode,
            body=body,
            namespace=self.namespace,
            log_size=log_size,
            on_stop=self._forget,
            timezone=self._timezone,
            sharded=sharded,
            seq_field=seq_field,
            **extra,
        )
        with self._lock:
            self.subscriptions[name] = sub
        self.namespace[name] = sub
        return sub

    def _forget(self, sub: Subscription) -> None:
        with self._lock:
            if self.subscriptions.get(sub.name) is sub:
                del self.subscriptions[sub.name]

    def stop(self, name: str) -> bool:
        """Stop the subscription called ``name``; False if there is none."""
        with self._lock:
            sub = self.subscriptions.get(name)
        if sub is None:
            return False
        sub.stop()
        return True

    def stop_all(self) -> list[str]:
        with self._lock:
            subs = list(self.subscriptions.values())
        for sub in subs:
            sub.stop()
        return [s.name for s in subs]

    def close(self) -> None:
        """Stop every subscription, close the connection and stop the embedded cluster
        (``%unload_ext``)."""
        self.stop_all()
        with self._lock:
            if self._toolkit is not None:
                self._toolkit.close()
            self._toolkit = None
            if self.embedded_cluster is not None:
                self.embedded_cluster.stop()
                self.embedded_cluster = None
