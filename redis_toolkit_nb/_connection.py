"""Where to connect: an explicit URL, ``REDIS_URL``, localhost, else the embedded server."""

from __future__ import annotations

import os
import threading

import redis

from . import embedded
from ._options import RedisOptions
from ._urls import mask_text, mask_url
from .exceptions import ToolkitConnectionError

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
    try:
        return redis.Redis.from_url(url, **kwargs)
    except ValueError as exc:
        raise ToolkitConnectionError(f"invalid Redis URL {mask_url(url)}: {exc}") from None


def describe(client: redis.Redis) -> str:
    """``host:port/db`` of a client's pool, for messages (never the password)."""
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}"
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"


def scrub(exc: BaseException | str, client: redis.Redis) -> str:
    """The text of ``exc`` with the client's password masked (one place does this)."""
    password = client.connection_pool.connection_kwargs.get("password")
    return mask_text(str(exc), [str(password) if password else None])


def connection_error(client: redis.Redis, exc: BaseException, doing: str) -> ToolkitConnectionError:
    """Wrap a redis-py connection failure with where it happened, secrets excluded."""
    return ToolkitConnectionError(f"cannot {doing} at {describe(client)}: {scrub(exc, client)}")
