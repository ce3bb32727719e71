"""A log line that cannot flood: a few per period, then one summary of what was held back."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    """Emit at most ``burst`` records per ``period`` seconds; count and report the rest."""

    def __init__(self, logger: logging.Logger, level: int, period: float, burst: int = 1) -> None:
        self._logger = logger
        self._level = level
        self._period = period
        self._burst = burst
        self._window_start = float("-inf")
        self._emitted = 0
        self._held = 0
        self._lock = threading.Lock()

    def emit(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._window_start >= self._period:
                held, self._held = self._held, 0
                self._window_start, self._emitted = now, 0
                if held:
                    self._logger.log(self._level, "(%d similar log lines held back)", held)
            if self._emitted >= self._burst:
                self._held += 1
                return
            self._emitted += 1
        self._logger.log(self._level, msg, *args)
