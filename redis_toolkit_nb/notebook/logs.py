"""Where the toolkit's log records go in a notebook (see ``RecentRecords``)."""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class RecentRecords(logging.Handler):
    """Keeps the toolkit's recent log records in memory, and shows every one that no panel
    shows on stderr (in a kernel: in the notebook).

    Any handler on the ``redis_toolkit_nb`` logger turns off Python's last-resort output, so
    this one must print what it does not hand to a panel: warnings and handler tracebacks of
    a core ``RedisToolkit`` used in a notebook always reach the user. Records from the threads
    of a ``%%rtk_subscribe`` subscription (``watch``) are shown by its live panel instead, and
    a notice the notebook layer says itself is kept quiet (``quiet``). The records stay
    readable in ``records``.
    """

    def __init__(self, size: int = 200) -> None:
        super().__init__(logging.WARNING)
        self.records: deque[logging.LogRecord] = deque(maxlen=size)
        #: Subscriber names whose records a panel shows.
        self.watched: set[str] = set()
        self._quiet = threading.local()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def watch(self, subscriber_name: str) -> None:
        self.watched.add(subscriber_name)

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Records made by this thread meanwhile are kept, not printed."""
        self._quiet.on = True
        try:
            yield
        finally:
            self._quiet.on = False

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if getattr(self._quiet, "on", False):
            return
        if record.threadName and record.threadName.rpartition("-")[0] in self.watched:
            return
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - a closed stream must not break the subscriber
            self.handleError(record)


#: The one handler ``%load_ext redis_toolkit_nb`` puts on the ``redis_toolkit_nb`` logger.
LOG = RecentRecords()
