"""Every error redis_toolkit_nb raises, in one flat tree.

::

    ToolkitError
     ├── ToolkitConnectionError   the server cannot be reached, refused the credentials, or
     │                            the link failed (also a builtin ConnectionError)
     ├── SubscriptionError        the server refused or did not confirm a subscription
     ├── PublishError             the server refused a publish (carries ``published``)
     ├── MessageTooLargeError     payload over ``RedisOptions.max_value_size`` or over what
     │                            the server delivers to a subscriber (also ValueError)
     ├── SerializationError       the value cannot be encoded as JSON (also TypeError)
     ├── OptionsError             an invalid ``RedisOptions`` field (also ValueError)
     ├── EmbeddedServerError      the embedded server could not be started
     ├── RequestTimeout           ``request()`` got no reply in time (also TimeoutError)
     └── RemoteError              the responder's function raised (carries ``type``, ``message``)

redis-py errors are wrapped at the toolkit's boundary (one mapping, in ``_errors``) with
``raise ... from exc``, so the original is always in ``__cause__``: a refusal the server gives
(``NoPermissionError`` for an ACL, ``ReadOnlyError``...) becomes ``PublishError`` or
``SubscriptionError`` for those calls and ``ToolkitError`` elsewhere (``ping()``). Each message
says what was being done, where (``host:port/db``) and the server's own text, and never
contains a password: URLs are masked.
"""

from __future__ import annotations


class ToolkitError(Exception):
    """Root of every error raised by redis_toolkit_nb."""


class ToolkitConnectionError(ToolkitError, ConnectionError):
    """The Redis server cannot be reached, refused the credentials, or the link failed."""


class SubscriptionError(ToolkitError):
    """The server refused (for example an ACL ``NOPERM``) or did not confirm a subscription."""


class PublishError(ToolkitError):
    """The server refused a publish. ``published`` counts the messages sent before it."""

    def __init__(self, message: str, published: int = 0) -> None:
        super().__init__(message)
        self.published = published


class MessageTooLargeError(ToolkitError, ValueError):
    """A payload is larger than ``RedisOptions.max_value_size``, or than the largest message
    the server's ``client-output-buffer-limit pubsub`` lets a subscriber receive; it was not
    sent."""


class SerializationError(ToolkitError, TypeError):
    """A value cannot be encoded as JSON (and is not bytes)."""


class OptionsError(ToolkitError, ValueError):
    """A ``RedisOptions`` field has an invalid value."""


class EmbeddedServerError(ToolkitError):
    """The embedded Redis-compatible server could not be started."""


class RequestTimeout(ToolkitError, TimeoutError):
    """``request()`` got no reply within its timeout (the waiter is forgotten: a late reply is
    counted in ``request_stats.late_replies`` and dropped)."""


class RemoteError(ToolkitError):
    """The responder's function raised. ``type`` is the exception's class name and
    ``message`` its text, as the responder sent them (never a traceback)."""

    def __init__(self, type: str, message: str) -> None:  # noqa: A002 - the wire field's name
        super().__init__(type, message)
        self.type = type
        self.message = message

    def __str__(self) -> str:
        return f"the responder raised {self.type}: {self.message}"
