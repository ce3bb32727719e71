"""One background thread that refreshes every live view a few times a second.

Why a thread that only sets widget traits (and never displays, prints or enters ``with out:``):
measured on ipykernel 7.4 and 6.29, trait updates from a thread reach the frontend as
``comm_msg`` on both, while the cell is idle *and* while another cell runs (a long
``%rtk_publish --rate`` keeps the panel moving); callbacks on the kernel's event loop stop
while any cell runs. Display from threads is what ipykernel 7 changed (ipywidgets #4001,
#4020); trait updates don't depend on it. Each tick does work proportional to what is shown.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

logger = logging.getLogger("redis_toolkit_nb.notebook")


class View(Protocol):
    def refresh(self) -> None: ...


class Refresher:
    """Calls ``refresh()`` on every registered view every ``interval`` seconds."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self._views: list[View] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.ticks = 0

    def add(self, view: View) -> None:
        with self._lock:
            if view not in self._views:
                self._views.append(view)
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._wake.clear()
                self._thread = threading.Thread(target=self._run, name="rtk-refresher", daemon=True)
                self._thread.start()

    def remove(self, view: View) -> None:
        with self._lock:
            if view in self._views:
                self._views.remove(view)

    @property
    def views(self) -> list[View]:
        with self._lock:
            return list(self._views)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and forget every view (on ``%unload_ext``)."""
        with self._lock:
            self._stopping = True
            self._views.clear()
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._wake.wait(self.interval):
            with self._lock:
                if self._stopping or not self._views:
                    # Nothing to show: end the thread (add() starts a new one), so an idle
                    # kernel does no work at all.
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
                views = list(self._views)
            for view in views:
                try:
                    view.refresh()
                except Exception:  # noqa: BLE001 - one broken view must not stop the others
                    logger.exception("refreshing %r failed", view)
            self.ticks += 1


#: The process-wide refresher every panel and dashboard registers with.
REFRESHER = Refresher()
