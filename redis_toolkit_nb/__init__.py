"""redis_toolkit_nb: Redis Pub/Sub made simple, fast and trustworthy, and visible in Jupyter.

The core (this package's top level) never imports IPython, ipywidgets or pandas; the
notebook layer lives in ``redis_toolkit_nb.notebook`` and is loaded by
``%load_ext redis_toolkit_nb``.
"""

from __future__ import annotations

from ._buffer import Message, MessageBuffer
from ._capture import read_capture
from ._codec import decode, encode
from ._connection import DEFAULT_URL, resolve_url
from ._health import ServerBuffer
from ._latency import latency_table
from ._options import RedisOptions
from ._replay import ReplaySummary, replay_plan
from ._schema import SchemaTracker, schema_of
from ._sequence import SequenceTracker, gaps_of
from ._stats import SubscriberStats
from ._subscriber import Subscriber, active_subscribers
from ._toolkit import RedisToolkit
from ._urls import mask_url
from .embedded import EmbeddedCluster, RedisServer
from .exceptions import (
    EmbeddedServerError,
    MessageTooLargeError,
    OptionsError,
    PublishError,
    RemoteError,
    RequestTimeout,
    SerializationError,
    SubscriptionError,
    ToolkitConnectionError,
    ToolkitError,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "EmbeddedCluster",
    "EmbeddedServerError",
    "Message",
    "MessageBuffer",
    "MessageTooLargeError",
    "OptionsError",
    "PublishError",
    "RedisOptions",
    "RedisServer",
    "RedisToolkit",
    "RemoteError",
    "ReplaySummary",
    "RequestTimeout",
    "SchemaTracker",
    "SequenceTracker",
    "SerializationError",
    "ServerBuffer",
    "Subscriber",
    "SubscriberStats",
    "SubscriptionError",
    "ToolkitConnectionError",
    "ToolkitError",
    "__version__",
    "active_subscribers",
    "decode",
    "encode",
    "gaps_of",
    "latency_table",
    "load_ipython_extension",
    "mask_url",
    "read_capture",
    "replay_plan",
    "resolve_url",
    "schema_of",
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
