"""Where to connect: an explicit URL, ``REDIS_URL``, localhost, else the embedded server."""

from __future__ import annotations

import os
import threading

import redis

from . import embedded
from ._errors import boundary, describe, scrub, translate
from ._options import RedisOptions
from .exceptions import ToolkitError

__all__ = ["DEFAULT_URL", "describe", "make_client", "resolve_url", "scrub"]

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_HOST, DEFAULT_PORT = "localhost", 6379

_resolved_default: str | None = None
_resolve_lock = threading.Lock()


def resolve_url(url: str | None = None) -> str:
    """The URL to use: ``url``, else ``$REDIS_URL``, else localhost:6379 when a server
    answers there, else the embedded default server (one per user, shared: attached to, or
    started for the processes that come next; see ``redis_toolkit_nb.embedded``).

    An explicit URL or ``REDIS_URL`` is never replaced by a fallback: if it cannot be
    reached, using it raises ``ToolkitConnectionError``.
    """
    if url:
        return url
    env = os.environ.get("REDIS_URL")
    if env:
        return env
    global _resolved_default
    with _resolve_lock:
        if _resolved_default is None or not _still_there(_resolved_default):
            if embedded.answers(DEFAULT_HOST, DEFAULT_PORT):
                _resolved_default = DEFAULT_URL
            else:
                reason = f"no Redis at {DEFAULT_HOST}:{DEFAULT_PORT} and no REDIS_URL set"
                _resolved_default = embedded.default_server(reason).url
        return _resolved_default


def _still_there(url: str) -> bool:
    # The embedded server may have been stopped (``python -m redis_toolkit_nb.embedded stop``):
    # then the next toolkit attaches to, or starts, a new one.
    server = embedded._shared._default
    if server is not None and url == server.url:
        return server.running
    return True


def make_client(url: str, options: RedisOptions) -> redis.Redis:
    """A redis-py client for ``url`` (bytes replies: the toolkit decodes payloads itself)."""
    kwargs: dict[str, object] = {"socket_connect_timeout": options.connect_timeout}
    if options.max_connections is not None:
        kwargs["max_connections"] = options.max_connections
    with boundary(url, "connect: invalid Redis URL"):
        return redis.Redis.from_url(url, **kwargs)


def connection_error(client: redis.Redis, exc: BaseException, doing: str) -> ToolkitError:
    """The toolkit error for ``exc`` (kept for callers not moved to ``_errors.translate``)."""
    return translate(exc, client, doing)
