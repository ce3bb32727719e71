"""``request()``, ``serve()``, ``publish_with_ack()`` and ``ack()`` against real servers, and
their interplay with the guide's own hand-written recipes (imported from the guide's tests)."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from conftest import wait_until
from test_guide_examples import ReliableMessaging, RequestResponse, request_processor

from redis_toolkit_nb import (
    RedisServer,
    RedisToolkit,
    RemoteError,
    RequestTimeout,
    ToolkitError,
)


def _pubsub_clients(admin: redis.Redis) -> int:
    return len(admin.client_list(_type="pubsub"))


@pytest.fixture
def pair(server: RedisServer, stop_new_subscribers):
    """(requester, responder): two toolkits on the private server, cleaned up at the end."""
    a, b = RedisToolkit(url=server.url), RedisToolkit(url=server.url)
    yield a, b
    a.cleanup()
    b.cleanup()


def _double(data):
    if data == "boom":
        raise ValueError("cannot double 'boom'")
    return {"double": data * 2}


def test_round_trips_from_8_threads_share_one_reply_subscription(pair, admin):
    requester, responder = pair
    before = _pubsub_clients(admin)
    responder.serve("rr:double", _double)
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def work(base: int) -> None:
        try:
            for i in range(base, base + 50):
                results[i] = requester.request("rr:double", i, timeout=10)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(results) == 400
    assert all(value == {"double": i * 2} for i, value in results.items())
    # 400 requests, two subscriptions in all: the server's and the one reply inbox.
    assert _pubsub_clients(admin) == before + 2
    stats = requester.request_stats
    assert (stats.requests, stats.replies, stats.timeouts, stats.late_replies) == (400, 400, 0, 0)
    assert responder.request_stats.served == 400


def test_serve_answers_the_guides_requester(guide_env, stop_new_subscribers):
    responder = RedisToolkit()
    responder.serve("requests", lambda data: {"status": "success", "result": len(data)})
    client = RequestResponse()  # the guide's own class, as written
    assert client.send_request([1, 2, 3]) == {"status": "success", "result": 3}
    # A failure reaches a guide-style requester as the documented error object.
    responder.cleanup()
    responder = RedisToolkit()
    responder.serve("requests", lambda data: data["missing"])
    assert client.send_request({}) == {"_rtk_error": {"type": "KeyError", "message": "'missing'"}}
    responder.cleanup()


def test_request_is_answered_by_the_guides_responder(guide_env, capsys):
    request_processor()  # the guide's responder, as written (it keeps no reference)
    requester = RedisToolkit()
    assert requester.request("requests", {"a": 1, "b": 2}) == {"status": "success", "result": 2}
    out = capsys.readouterr().out
    # The guide's responder printed the id it got: ours, "<toolkit uuid>:<n>".
    assert "Processing request: " in out and ":1" in out
    requester.cleanup()


def test_timeout_leaves_no_subscription_or_thread(server, admin, stop_new_subscribers):
    ignored: list = []
    deaf = RedisToolkit(
        url=server.url, channels=["rr:deaf"], message_handler=lambda c, d: ignored.append(d)
    )
    pubsub_before = _pubsub_clients(admin)
    threads_before = set(threading.enumerate())
    requester = RedisToolkit(url=server.url)
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info:
        requester.request("rr:deaf", {"q": 1}, timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, ToolkitError)
    assert "rr:deaf" in str(info.value) and "0.3 s" in str(info.value)
    wait_until(lambda: len(ignored) == 1, what="the request at the deaf subscriber")
    assert requester.request_stats.timeouts == 1
    requester.cleanup()
    wait_until(lambda: _pubsub_clients(admin) == pubsub_before, what="the reply inbox to close")
    wait_until(
        lambda: {t for t in threading.enumerate() if t.is_alive()} <= threads_before,
        what="the inbox threads to end",
    )
    deaf.cleanup()


def test_request_that_reaches_no_one_fails_at_once(pair):
    requester, _ = pair
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match="reached no subscriber"):
        requester.request("rr:nobody-here", 1, timeout=5)
    assert time.monotonic() - started < 2


def test_late_reply_is_counted_and_never_delivered_to_a_later_request(pair):
    requester, responder = pair
    held: list = []
    slow = RedisToolkit(
        requester.client, channels=["rr:slow"], message_handler=lambda c, d: held.append(d)
    )
    with pytest.raises(RequestTimeout):
        requester.request("rr:slow", "first", timeout=0.2)
    wait_until(lambda: held, what="the request at the slow responder")
    # The reply comes after the timeout: counted, dropped.
    responder.publisher(held[0]["response_channel"], "late answer")
    wait_until(lambda: requester.request_stats.late_replies == 1, what="the late reply")
    responder.serve("rr:echo", lambda data: data)
    assert requester.request("rr:echo", "second") == "second"
    assert requester.request_stats.replies == 1
    slow.subscriber.stop()


def test_remote_error_carries_type_and_message_but_no_traceback_or_secret():
    password = "pa55-w0rd-xyz"
    with RedisServer("redis-server", password=password) as srv:
        assert password in srv.url
        requester, responder = RedisToolkit(url=srv.url), RedisToolkit(url=srv.url)
        seen: list = []
        spy = RedisToolkit(
            url=srv.url, channels=["responses:*"], message_handler=lambda c, d: seen.append(d)
        )

        def fails(data):
            raise PermissionError(f"refused {data} while connected to {srv.url}")

        responder.serve("rr:fails", fails)
        try:
            with pytest.raises(RemoteError) as info:
                requester.request("rr:fails", "job-7")
            err = info.value
            assert err.type == "PermissionError"
            assert "refused job-7 while connected to redis://" in err.message
            assert password not in err.message and password not in str(err)
            wait_until(lambda: seen, what="the error reply at the spy")
            raw = repr(seen[0])
            assert password not in raw and "Traceback" not in raw and __file__ not in raw
            assert list(seen[0]) == ["_rtk_error"]
            # The serving side keeps the traceback for itself.
            assert responder.request_stats.serve_errors == 1
            assert requester.request_stats.remote_errors == 1
        finally:
            for tk in (requester, responder, spy):
                tk.cleanup()


def test_serve_ignores_and_counts_a_message_that_is_not_a_request(pair):
    requester, responder = pair
    sub = responder.serve("rr:strict", _double)
    requester.publisher("rr:strict", {"no": "response channel"})
    wait_until(lambda: responder.request_stats.bad_requests == 1, what="the bad request")
    assert sub.stats.handler_errors == 1
    assert requester.request("rr:strict", 4) == {"double": 8}


@pytest.mark.parametrize("ackers", [0, 1, 3])
def test_publish_with_ack_counts_acknowledgements(pair, ackers):
    sender, other = pair
    got: list = []

    def consume(channel, data):
        got.append(data)
        other.ack(data)

    subs = [
        RedisToolkit(other.client, channels=["rr:acked"], message_handler=consume)
        for _ in range(ackers)
    ]
    message = {"order": 42}
    started = time.monotonic()
    count = sender.publish_with_ack("rr:acked", message, timeout=5, acks=max(ackers, 1))
    assert count == ackers
    assert message == {"order": 42}  # the caller's dict is left as it was
    if ackers == 0:
        assert time.monotonic() - started < 2  # nobody got it: no waiting
    else:
        wait_until(lambda: len(got) == ackers)
        assert all(d["order"] == 42 and d["_ack_channel"] == "ack:" + d["_msg_id"] for d in got)
    assert sender.request_stats.acks == ackers
    for tk in subs:
        tk.subscriber.stop()


def test_publish_with_ack_times_out_with_the_count_so_far(pair):
    sender, other = pair
    acker = RedisToolkit(
        other.client, channels=["rr:one"], message_handler=lambda c, d: other.ack(d)
    )
    started = time.monotonic()
    assert sender.publish_with_ack("rr:one", {"n": 1}, timeout=1.0, acks=2) == 1
    assert time.monotonic() - started >= 1.0
    acker.subscriber.stop()


def test_ack_interop_with_the_guides_recipe(guide_env):
    guide = ReliableMessaging()
    ours = RedisToolkit()
    # The guide's acknowledging subscriber answers publish_with_ack().
    consumer = guide.create_ack_subscriber("rr:guide-acks")
    assert ours.publish_with_ack("rr:guide-acks", {"order": 1}) == 1
    consumer.cleanup()
    # ack() answers the guide's publish_with_ack().
    acker = RedisToolkit(channels=["rr:our-acks"], message_handler=lambda c, d: ours.ack(d))
    assert guide.publish_with_ack("rr:our-acks", {"order": 2}) is True
    acker.cleanup()
    ours.cleanup()


def test_ack_does_nothing_for_a_message_that_did_not_ask(pair, admin):
    _, other = pair
    seen: list = []
    spy = RedisToolkit(
        other.client, channels=["ack:*"], message_handler=lambda c, d: seen.append(d)
    )
    assert other.ack({"order": 1}) is False
    assert other.ack("text") is False
    assert other.ack({"_msg_id": "m1", "_ack_channel": "ack:m1"}) is True
    wait_until(lambda: seen, what="the acknowledgement")
    assert seen == [{"msg_id": "m1", "status": "acknowledged"}]
    spy.subscriber.stop()


def test_cleanup_wakes_a_waiting_request(server, stop_new_subscribers):
    deaf = RedisToolkit(url=server.url, channels=["rr:deaf2"], message_handler=lambda c, d: None)
    requester = RedisToolkit(url=server.url)
    failure: list[BaseException] = []

    def ask() -> None:
        try:
            requester.request("rr:deaf2", 1, timeout=30)
        except BaseException as exc:  # noqa: BLE001 - checked below
            failure.append(exc)

    t = threading.Thread(target=ask)
    t.start()
    wait_until(lambda: deaf.stats.delivered == 1, what="the request")
    requester.cleanup()
    t.join(5)
    assert not t.is_alive()
    assert isinstance(failure[0], ToolkitError) and "cleaned up" in str(failure[0])
    with pytest.raises(ToolkitError, match="cleaned up"):
        requester.request("rr:deaf2", 2)
    deaf.cleanup()


def test_error_object_decodes_to_remote_error_only_in_its_exact_shape(pair):
    requester, responder = pair
    # A result that merely contains the key is an ordinary reply.
    responder.serve("rr:lookalike", lambda data: {"_rtk_error": {"type": "X"}, "other": 1})
    assert requester.request("rr:lookalike", None) == {"_rtk_error": {"type": "X"}, "other": 1}
