"""``python -m redis_toolkit_nb.embedded [status|stop]``: see or stop the shared embedded server.

``status`` exits 0 when the server runs and 3 when none does (as ``systemctl status`` does);
``stop`` exits 0 either way.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._shared import SharedServer, registry_dir, status, stop


def _describe(entry: SharedServer) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.started_at))
    users = entry.users()
    lines = [
        f"embedded {Path(entry.binary).name} at {entry.url}",
        f"  server pid {entry.pid}, started by pid {entry.started_by} at {started}",
        f"  used by {len(users)} process(es): {' '.join(map(str, users)) or '-'}",
        f"  registry: {entry.state_dir}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m redis_toolkit_nb.embedded",
        description="See or stop this user's shared embedded server (the RedisToolkit() "
        "default when no REDIS_URL is set and nothing answers at localhost:6379).",
    )
    parser.add_argument("command", nargs="?", default="status", choices=["status", "stop"])
    args = parser.parse_args(argv)
    if args.command == "status":
        entry = status()
        if entry is None:
            print(f"no embedded server runs (registry: {registry_dir()})")
            return 3
        print(_describe(entry))
        return 0
    stopped = stop()
    if stopped is None:
        print(f"no embedded server runs (registry: {registry_dir()})")
    else:
        print(f"stopped the embedded {Path(stopped.binary).name} at {stopped.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
