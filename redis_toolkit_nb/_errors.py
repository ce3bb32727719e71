"""The one boundary between redis-py's errors and the toolkit's (``exceptions``).

Every call into redis-py that can fail goes through ``translate`` (inside the caller's own
``try``, for hot paths: a ``try`` costs nothing until something is raised) or ``boundary``
(a context manager, for the rest). Both map redis-py's tree onto the toolkit's flat one and
keep the original in ``__cause__``:

=======================================================  ===================================
redis-py (or the socket)                                 toolkit
=======================================================  ===================================
``AuthenticationError``, ``AuthorizationError``,          ``ToolkitConnectionError``
``AuthenticationWrongNumberOfArgsError``                  ("authentication failed")
``ConnectionError``, ``TimeoutError``, ``OSError``        ``ToolkitConnectionError``
``ResponseError`` (``NoPermissionError``, READONLY, OOM)  ``refused``: ``PublishError`` when
                                                          publishing, ``SubscriptionError``
                                                          when subscribing, else ``ToolkitError``
``ValueError`` (redis-py refusing a URL or argument)      ``ToolkitConnectionError``
any other ``RedisError``                                  ``ToolkitError``
=======================================================  ===================================

The message says what was being done, where (``host:port/db``), and the server's text, with
the password masked. ``where`` is a redis-py client, its connection keyword arguments (what a
subscriber's reader holds), or a URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import redis
from redis._parsers.base import BaseParser

from ._urls import mask_text, mask_url
from .exceptions import ToolkitConnectionError, ToolkitError

#: What ``boundary`` translates (anything else, e.g. a ``ToolkitError``, passes through).
CAUGHT = (redis.RedisError, OSError, ValueError)

_AUTH = (
    redis.AuthenticationError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
)
_LINK = (redis.ConnectionError, redis.TimeoutError, OSError)


def translate(
    exc: BaseException,
    where: Any,
    doing: str,
    refused: type[ToolkitError] = ToolkitError,
    **extra: Any,
) -> ToolkitError:
    """The toolkit error for ``exc``, raised while ``doing`` (a verb phrase: "publish to
    'news'") at ``where``. Raise it ``from exc``. ``extra`` goes to ``refused`` (e.g.
    ``published=`` for ``PublishError``)."""
    if isinstance(exc, ToolkitError):
        return exc
    place, text = where_text(where), _scrub(exc, where)
    if isinstance(exc, _AUTH):
        return ToolkitConnectionError(f"cannot {doing} at {place}: authentication failed: {text}")
    if isinstance(exc, _LINK):
        return ToolkitConnectionError(f"cannot {doing} at {place}: {text}")
    if isinstance(exc, redis.ResponseError):
        return refused(f"the server at {place} refused to {doing}: {text}", **extra)
    if isinstance(exc, ValueError) and not isinstance(exc, redis.RedisError):
        return ToolkitConnectionError(f"cannot {doing} at {place}: {text}")
    return ToolkitError(f"cannot {doing} at {place}: {type(exc).__name__}: {text}")


class _Boundary:
    __slots__ = ("doing", "extra", "refused", "where")

    def __init__(self, where: Any, doing: str, refused: type[ToolkitError], extra: Any) -> None:
        self.where, self.doing, self.refused, self.extra = where, doing, refused, extra

    def __enter__(self) -> _Boundary:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, CAUGHT) and not isinstance(exc, ToolkitError):
            raise translate(exc, self.where, self.doing, self.refused, **self.extra) from exc


def boundary(
    where: Any, doing: str, refused: type[ToolkitError] = ToolkitError, **extra: Any
) -> _Boundary:
    """``with boundary(client, "ping"):`` raises what ``translate`` maps a failure to."""
    return _Boundary(where, doing, refused, extra)


def server_error(reply: BaseException) -> redis.ResponseError:
    """redis-py's exception for an error reply parsed outside redis-py (a
    ``hiredis.ReplyError``): ``NOPERM ...`` becomes ``NoPermissionError``, and so on."""
    return BaseParser.parse_error(str(reply))


def _kwargs(where: Any) -> Mapping[str, Any]:
    return where if isinstance(where, Mapping) else where.connection_pool.connection_kwargs


def describe(where: Any) -> str:
    """``host:port/db`` of a client's pool (or of connection keyword arguments), for
    messages: never the password."""
    kw = _kwargs(where)
    if "path" in kw:
        return f"unix://{kw['path']}"
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"


def scrub(exc: BaseException | str, where: Any) -> str:
    """The text of ``exc`` with the client's password masked (one place does this)."""
    password = _kwargs(where).get("password")
    return mask_text(str(exc), [str(password) if password else None])


def where_text(where: Any) -> str:
    """``where`` for a message: ``host:port/db``, a masked URL, or the client's type."""
    if isinstance(where, str):
        return mask_url(where)
    try:
        return describe(where)
    except AttributeError:  # not a redis.Redis (a cluster client, a stand-in)
        return type(where).__name__


def _scrub(exc: BaseException, where: Any) -> str:
    if isinstance(where, str):
        try:
            password = urlsplit(where).password
        except ValueError:
            password = None
        return mask_text(str(exc), [password])
    try:
        return scrub(exc, where)
    except AttributeError:
        return str(exc)
