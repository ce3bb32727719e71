"""redis_toolkit_nb: Redis Pub/Sub made simple, fast and trustworthy, and visible in Jupyter.

The core (this package's top level) never imports IPython, ipywidgets or pandas; the
notebook layer lives in ``redis_toolkit_nb.notebook`` and is loaded by
``%load_ext redis_toolkit_nb``.
"""

from __future__ import annotations

from .buffer import Message, MessageBuffer
from .codec import decode, encode
from .embedded import RedisServer
from .exceptions import (
    EmbeddedServerError,
    MessageTooLargeError,
    OptionsError,
    PublishError,
    SerializationError,
    SubscriptionError,
    ToolkitConnectionError,
    ToolkitError,
)
from .options import RedisOptions
from .stats import SubscriberStats
from .subscriber import Subscriber, active_subscribers
from .toolkit import RedisToolkit

__version__ = "0.1.0"

__all__ = [
    "EmbeddedServerError",
    "Message",
    "MessageBuffer",
    "MessageTooLargeError",
    "OptionsError",
    "PublishError",
    "RedisOptions",
    "RedisServer",
    "RedisToolkit",
    "SerializationError",
    "Subscriber",
    "SubscriberStats",
    "SubscriptionError",
    "ToolkitConnectionError",
    "ToolkitError",
    "__version__",
    "active_subscribers",
    "decode",
    "encode",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython):  # noqa: ANN001 - IPython's hook
    """``%load_ext redis_toolkit_nb``: register the magics (imports IPython only now)."""
    from .notebook import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):  # noqa: ANN001 - IPython's hook
    """``%unload_ext redis_toolkit_nb``: stop every subscription the extension started."""
    from .notebook import unload_ipython_extension as unload

    unload(ipython)
