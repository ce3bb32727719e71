"""Request-reply and acknowledgements as calls, wire-compatible with the guide's recipes.

Wire format (the guide's, so hand-written code and these calls talk to each other):

- a request is ``{"id": ID, "response_channel": "responses:" + ID, "data": DATA}``; the
  reply is whatever the responder publishes to ``response_channel``, taken whole;
- when ``serve()``'s function raises, the reply is ``{"_rtk_error": {"type": "ValueError",
  "message": "..."}}`` (``ERROR_KEY``): ``request()`` raises ``RemoteError`` for it, a
  guide-style requester receives that dict as its response. Only the exception's class name
  and text travel (the password of the toolkit is masked), never a traceback;
- ``publish_with_ack()`` adds ``"_msg_id": ID`` and ``"_ack_channel": "ack:" + ID`` to the
  message; an acknowledgement is ``{"msg_id": ID, "status": "acknowledged"}`` on that channel.

IDs are ``<toolkit uuid>:<n>``, so the replies and acknowledgements of one toolkit come in on
two pattern subscriptions (``responses:<uuid>:*``, ``ack:<uuid>:*``; see ``_inbox``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._inbox import Inbox, Waiter
from ._subscriber import Subscriber
from .exceptions import RemoteError, RequestTimeout, ToolkitError

#: The key of the error object ``serve()`` sends back when its function raises.
ERROR_KEY = "_rtk_error"
# Longer exception texts are cut: a reply is not the place for a dump.
_MAX_MESSAGE = 1000
_create_lock = threading.Lock()


@dataclass(frozen=True)
class RequestStats:
    """Figures of a toolkit's ``request()``, ``serve()`` and ``publish_with_ack()`` calls."""

    #: Requests sent by ``request()``.
    requests: int = 0
    #: Replies received in time (``RemoteError`` ones included).
    replies: int = 0
    #: ``request()`` calls that raised ``RequestTimeout``.
    timeouts: int = 0
    #: Replies that arrived after their request had timed out (dropped).
    late_replies: int = 0
    #: Replies that were the error object (raised as ``RemoteError``).
    remote_errors: int = 0
    #: Messages sent by ``publish_with_ack()``.
    acked_publishes: int = 0
    #: Acknowledgements received while their publisher was waiting.
    acks: int = 0
    #: Acknowledgements that arrived after ``publish_with_ack()`` returned (dropped).
    late_acks: int = 0
    #: Requests ``serve()`` answered with its function's result.
    served: int = 0
    #: Requests ``serve()`` answered with the error object.
    serve_errors: int = 0
    #: Messages on a served channel that were not requests (no ``response_channel``): ignored.
    bad_requests: int = 0


def error_reply(exc: BaseException, scrub: Callable[[BaseException], str]) -> dict[str, Any]:
    """The error object for ``exc``: its class name and (password-masked, cut) text."""
    text = scrub(exc)
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "..."
    return {ERROR_KEY: {"type": type(exc).__name__, "message": text}}


def remote_error(reply: Any) -> RemoteError | None:
    """The ``RemoteError`` a reply stands for, or None if it is an ordinary reply."""
    if isinstance(reply, dict) and len(reply) == 1 and isinstance(reply.get(ERROR_KEY), dict):
        err = reply[ERROR_KEY]
        return RemoteError(str(err.get("type", "Exception")), str(err.get("message", "")))
    return None


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
    return float(timeout)


def make_request(inbox: Inbox, waiter: Waiter, data: Any) -> tuple[str, dict[str, Any]]:
    """Register ``waiter`` and build the guide's request shape around ``data``."""
    key = inbox.open(waiter)
    return key, {"id": key, "response_channel": inbox.channel(key), "data": data}


def ack_message(inbox: Inbox, waiter: Waiter, message: Any) -> tuple[str, dict[str, Any]]:
    """Register ``waiter`` and return a copy of ``message`` with the guide's ack fields."""
    if not isinstance(message, dict):
        raise TypeError(
            f"publish_with_ack() needs a dict message (it adds _msg_id and _ack_channel to "
            f"it), not {type(message).__name__}"
        )
    key = inbox.open(waiter)
    return key, {**message, "_msg_id": key, "_ack_channel": inbox.channel(key)}


def acknowledgement(data: Any) -> tuple[str, dict[str, Any]] | None:
    """(ack channel, acknowledgement) for a message that asked for one, else None."""
    if not isinstance(data, dict) or data.get("_msg_id") is None:
        return None
    channel = data.get("_ack_channel")
    if not isinstance(channel, str) or not channel:
        return None
    return channel, {"msg_id": data["_msg_id"], "status": "acknowledged"}


class RequestReply:
    """A toolkit's reply and acknowledgement inboxes, its served channels and figures."""

    def __init__(self, toolkit: Any) -> None:
        self._tk = toolkit
        uid = uuid.uuid4().hex
        self.replies = Inbox(toolkit, "responses", uid, "reply")
        self.acks = Inbox(toolkit, "ack", uid, "ack")
        self._served: list[Subscriber] = []
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            ("requests", "replies", "timeouts", "remote_errors", "acked_publishes"), 0
        )
        self._counts.update(served=0, serve_errors=0, bad_requests=0)

    @staticmethod
    def of(toolkit: Any) -> RequestReply:
        """The toolkit's ``RequestReply``, made on first use."""
        rr = toolkit.__dict__.get("_request_reply")
        if rr is None:
            with _create_lock:
                rr = toolkit.__dict__.get("_request_reply")
                if rr is None:
                    if toolkit._closed:
                        raise ToolkitError("this toolkit was cleaned up: make a new one")
                    rr = toolkit._request_reply = RequestReply(toolkit)
        return rr

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    # ---- request -----------------------------------------------------------------------------
    def request(self, channel: str | bytes, data: Any, timeout: float = 5.0) -> Any:
        timeout = _check_timeout(timeout)
        done = threading.Event()
        waiter = Waiter(done.set)
        key, request = make_request(self.replies, waiter, data)
        try:
            receivers = self._tk.publisher(channel, request)
            if receivers:
                done.wait(timeout)
        finally:
            self.replies.forget(key)
        return self.outcome(waiter, channel, timeout, receivers)

    def outcome(self, waiter: Waiter, channel: Any, timeout: float, receivers: int) -> Any:
        """The reply ``waiter`` got, or the error its request ends in."""
        self.count("requests")
        if waiter.closed and not waiter.count:
            raise ToolkitError("the toolkit was cleaned up while a request waited for its reply")
        if not waiter.count:
            self.count("timeouts")
            if not receivers:
                raise RequestTimeout(
                    f"nothing serves {channel!r}: the request reached no subscriber"
                )
            raise RequestTimeout(f"no reply to the request on {channel!r} within {timeout:g} s")
        self.count("replies")
        error = remote_error(waiter.value)
        if error is not None:
            self.count("remote_errors")
            raise error
        return waiter.value

    # ---- acknowledgements --------------------------------------------------------------------
    def publish_with_ack(
        self, channel: str | bytes, message: Any, timeout: float = 5.0, acks: int = 1
    ) -> int:
        timeout = _check_timeout(timeout)
        _check_acks(acks)
        done = threading.Event()
        waiter = Waiter(done.set, target=acks)
        key, message = ack_message(self.acks, waiter, message)
        try:
            # PUBLISH says how many subscribers got it: none, and no acknowledgement can come.
            if self._tk.publisher(channel, message):
                done.wait(timeout)
        finally:
            self.acks.forget(key)
        self.count("acked_publishes")
        return waiter.count

    def ack(self, data: Any) -> bool:
        found = acknowledgement(data)
        if found is None:
            return False
        self._tk.publisher(*found)
        return True

    # ---- serving -----------------------------------------------------------------------------
    def serve(self, channel: str | bytes, fn: Callable[[Any], Any]) -> Subscriber:
        if not callable(fn):
            raise TypeError(f"serve() needs a function, not {type(fn).__name__}")
        tk = self._tk
        text = channel.decode("utf-8", "replace") if isinstance(channel, bytes) else channel
        sub = Subscriber(
            tk.client,
            handler=self._responder(fn),
            options=tk.options.replace(buffer_size=0, decode="auto"),
            name=f"rtk-serve-{text}",
        )
        with self._lock:
            self._served.append(sub)
        sub.start([channel])
        return sub

    def _responder(self, fn: Callable[[Any], Any]) -> Callable[[Any, Any], None]:
        tk = self._tk

        def respond(channel: Any, request: Any) -> None:
            reply_to = request.get("response_channel") if isinstance(request, dict) else None
            if not isinstance(reply_to, str) or not reply_to:
                self.count("bad_requests")
                raise ToolkitError(
                    f"serve({channel!r}) got a message that is not a request (a dict with "
                    "'response_channel' and 'data'): ignored"
                )
            try:
                result = fn(request.get("data"))
                tk.publisher(reply_to, result)
            except Exception as exc:  # noqa: BLE001 - any failure goes back as the error object
                self.count("serve_errors")
                tk.publisher(reply_to, error_reply(exc, tk.scrub))
                # Raised on: the subscriber counts it (stats.handler_errors) and logs the
                # traceback here, on the serving side only.
                raise
            self.count("served")

        return respond

    # ---- figures and cleanup -----------------------------------------------------------------
    def stats(self) -> RequestStats:
        with self._lock:
            counts = dict(self._counts)
        return RequestStats(
            late_replies=self.replies.late,
            acks=self.acks.received,
            late_acks=self.acks.late,
            **counts,
        )

    def close(self) -> None:
        """Stop the inboxes and every served channel; waiting callers raise."""
        self.replies.close()
        self.acks.close()
        with self._lock:
            served, self._served = self._served, []
        for sub in served:
            sub.stop()


def _check_acks(acks: int) -> None:
    if isinstance(acks, bool) or not isinstance(acks, int) or acks < 1:
        raise ValueError(f"acks must be a whole number >= 1, not {acks!r}")
