"""The server-side health gauge in the notebook: ``Subscriber.server_buffer()`` sampled about
once a second on a short-lived thread, so the refresher's tick never waits for a server (a
reading waits up to 1 s for one that does not answer)."""

from __future__ import annotations

import logging
import threading
import time

from .. import ServerBuffer, Subscriber

logger = logging.getLogger("redis_toolkit_nb.notebook")


class BufferSampler:
    """``poll()`` returns the latest reading and starts the next one when it is due."""

    def __init__(self, subscriber: Subscriber, every: float = 1.0) -> None:
        self.subscriber = subscriber
        self.every = every
        self.latest: ServerBuffer | None = None
        self._busy = False
        self._next = 0.0
        self._lock = threading.Lock()

    def prime(self) -> None:
        """Take the first reading now (a subscription's start: its panel opens with it)."""
        self._next = time.monotonic() + self.every
        self._sample()

    def poll(self) -> ServerBuffer | None:
        now = time.monotonic()
        with self._lock:
            due = not self._busy and now >= self._next
            if due:
                self._busy, self._next = True, now + self.every
        if due:
            threading.Thread(
                target=self._sample, name=f"{self.subscriber.name}-gauge", daemon=True
            ).start()
        return self.latest

    def _sample(self) -> None:
        try:
            self.latest = self.subscriber.server_buffer()
        except Exception:  # noqa: BLE001 - a failed reading must not end the sampling
            logger.exception("reading the server buffer of %s failed", self.subscriber.name)
        finally:
            self._busy = False
