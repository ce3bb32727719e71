"""``redis_toolkit_nb.aio``: the asyncio toolkit in ``asyncio.run`` and in a real kernel's own
event loop (top-level ``await`` in cells, executed by nbclient), against private servers."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

import redis_toolkit_nb
from redis_toolkit_nb import RedisOptions, RedisServer, RemoteError, RequestTimeout
from redis_toolkit_nb.aio import RedisToolkit


async def _until(predicate, timeout: float = 10.0, what: str = "") -> None:
    """``wait_until`` for coroutines: poll without blocking the loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what or predicate}")


def test_publish_request_ack_and_listen_in_asyncio_run(server, admin, no_thread_leaks):
    pubsub_before = len(admin.client_list(_type="pubsub"))

    async def main() -> None:
        async with RedisToolkit(url=server.url) as t, RedisToolkit(url=server.url) as s:
            await s.serve("aio:inc", lambda n: n + 1 if n != -1 else 1 / 0)
            assert await t.request("aio:inc", 1) == 2
            replies = await asyncio.gather(*(t.request("aio:inc", i) for i in range(50)))
            assert replies == [i + 1 for i in range(50)]
            with pytest.raises(RemoteError) as info:
                await t.request("aio:inc", -1)
            assert info.value.type == "ZeroDivisionError"
            with pytest.raises(RequestTimeout, match="reached no subscriber"):
                await t.request("aio:nobody", 1, timeout=0.5)

            async with t.listen("aio:news", "aio:user:*") as stream:
                assert await s.publisher("aio:news", {"n": 0}) == 1
                assert await s.publish_many("aio:news", ({"n": i} for i in range(1, 1000))) == 999
                await s.publisher("aio:user:7", "login")
                got = []
                async for channel, data in stream:
                    got.append((channel, data))
                    if channel == "aio:user:7":
                        break
            assert [d["n"] for _, d in got[:-1]] == list(range(1000))
            assert got[-1] == ("aio:user:7", "login")
            assert stream.stats.received == 1001 and stream.stats.dropped == 0

            # publish_with_ack: acknowledged by a listener that acks from the loop.
            assert await t.publish_with_ack("aio:acked", {"x": 1}, timeout=0.5) == 0
            acker = t.listen("aio:acked")
            await acker.start()

            async def ack_one() -> None:
                async for _, data in acker:
                    assert await s.ack(data)
                    return

            task = asyncio.create_task(ack_one())
            assert await t.publish_with_ack("aio:acked", {"x": 2}, timeout=5) == 1
            await task
            await acker.aclose()
            assert t.request_stats.replies == 52 and t.request_stats.acks == 1

    asyncio.run(main())
    assert len(admin.client_list(_type="pubsub")) == pubsub_before


def test_leaving_async_for_unsubscribes_at_once(server, admin):
    async def main() -> None:
        async with RedisToolkit(url=server.url) as t:
            stream = await t.listen("aio:once").start()
            assert admin.pubsub_numsub("aio:once") == [(b"aio:once", 1)]
            await t.publisher("aio:once", 1)
            async for _channel, data in stream:
                assert data == 1
                break
            del stream  # the last reference: leaving the loop unsubscribed right then
            assert admin.pubsub_numsub("aio:once") == [(b"aio:once", 0)]

    asyncio.run(main())


def test_cleanup_ends_a_listener_another_task_iterates(server, admin):
    async def main() -> None:
        async with RedisToolkit(url=server.url) as t:
            stream = await t.listen("aio:ended").start()

            async def consume() -> int:
                return len([item async for item in stream])

            task = asyncio.create_task(consume())
            await t.publisher("aio:ended", "x")
            await _until(lambda: stream.stats.delivered == 1)
            await t.cleanup()
            assert await asyncio.wait_for(task, 5) == 1
        assert admin.pubsub_numsub("aio:ended") == [(b"aio:ended", 0)]

    asyncio.run(main())


def test_late_reply_after_an_async_timeout(server):
    async def main() -> None:
        async with RedisToolkit(url=server.url) as t, RedisToolkit(url=server.url) as other:
            async with other.listen("aio:slow") as requests:
                with pytest.raises(RequestTimeout):
                    await t.request("aio:slow", "q", timeout=0.2)
                _, request = await asyncio.wait_for(requests.__anext__(), 5)
            await other.publisher(request["response_channel"], "too late")
            await _until(lambda: t.request_stats.late_replies == 1, what="the late reply")
            assert t.request_stats.timeouts == 1

    asyncio.run(main())


def test_listen_reconnects_while_iterating(own_server):
    admin = redis.Redis.from_url(own_server.url)

    async def main() -> None:
        async with RedisToolkit(url=own_server.url) as t:
            async with t.listen("aio:live") as stream:
                await t.publisher("aio:live", 1)
                assert (await stream.__anext__())[1] == 1
                killed = admin.client_kill_filter(_type="pubsub")
                assert killed == 1  # the fault really happened
                await _until(lambda: stream.stats.reconnects >= 1, what="the reconnect")
                await _until(lambda: admin.pubsub_numsub("aio:live")[0][1] == 1)
                await t.publisher("aio:live", 2)
                assert (await asyncio.wait_for(stream.__anext__(), 5))[1] == 2
                assert stream.stats.disconnects >= 1

    try:
        asyncio.run(main())
    finally:
        admin.close()


def test_bounded_buffering_counts_every_drop(server):
    options = RedisOptions(queue_size=1000, max_backlog_bytes=0)
    total = 20_000

    async def main() -> None:
        async with RedisToolkit(url=server.url, options=options) as t:
            async with t.listen("aio:burst", max_pending=100) as stream:
                # Nobody takes the messages while they arrive.
                await t.publish_many("aio:burst", range(total))
                await _until(lambda: stream.stats.received == total, what="the burst read")
                got = []
                while True:
                    try:
                        got.append((await asyncio.wait_for(stream.__anext__(), 1.0))[1])
                    except asyncio.TimeoutError:
                        break
                stats = stream.stats
        assert stats.dropped > 0
        assert len(got) + stats.dropped == total
        assert got == sorted(got) and got[-1] == total - 1  # drop_oldest keeps the newest

    asyncio.run(main())


def test_coroutine_handlers_are_refused():
    async def handler(channel, data):  # pragma: no cover - never called
        pass

    with pytest.raises(TypeError, match="listen"):
        RedisToolkit(url="redis://127.0.0.1:1", message_handler=handler)


# ---- a real kernel: top-level await in cells -----------------------------------------------
KERNEL_CELLS = [
    "from redis_toolkit_nb.aio import RedisToolkit\n"
    "t = RedisToolkit()\n"
    "s = RedisToolkit()\n"
    "await s.serve('nb:svc', lambda d: {'got': d})",
    "reply = await t.request('nb:svc', [1, 2])\nprint(reply)",
    "import asyncio, json\n"
    "async with t.listen('nb:feed', 'nb:p:*') as stream:\n"
    "    await s.publish_many('nb:feed', [{'i': i} for i in range(500)])\n"
    "    await s.publisher('nb:p:end', 'end')\n"
    "    seen = [d async for _, d in _take(stream, 501)]\n"
    "print(json.dumps({'n': len(seen), 'last': seen[-1], 'dropped': stream.stats.dropped}))",
    # A reconnect while listen() is iterating, in the kernel's own loop.
    "async with t.listen('nb:live') as live:\n"
    "    await s.publisher('nb:live', 1)\n"
    "    first = (await live.__anext__())[1]\n"
    "    killed = t.client.client_kill_filter(_type='pubsub')\n"
    "    while live.stats.reconnects < 1 or t.client.pubsub_numsub('nb:live')[0][1] < 1:\n"
    "        await asyncio.sleep(0.02)\n"
    "    await s.publisher('nb:live', 2)\n"
    "    second = (await asyncio.wait_for(live.__anext__(), 10))[1]\n"
    "print(json.dumps({'first': first, 'second': second, 'killed': killed,\n"
    "    'reconnects': live.stats.reconnects}))",
    "await t.cleanup()\nawait s.cleanup()\nprint('closed')",
]
HELPER = (
    "async def _take(stream, n):\n"
    "    async for item in stream:\n"
    "        yield item\n"
    "        n -= 1\n"
    "        if not n:\n"
    "            return"
)


def test_top_level_await_in_a_real_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    root = Path(redis_toolkit_nb.__file__).parent.parent
    with RedisServer("redis-server") as srv:
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "rtk-aio",
            "language": "python",
            "env": {"REDIS_URL": srv.url, "PYTHONPATH": str(root)},
        }
        (tmp_path / "kernels" / "rtk-aio").mkdir(parents=True)
        (tmp_path / "kernels" / "rtk-aio" / "kernel.json").write_text(json.dumps(spec))
        ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
        cells = [HELPER, *KERNEL_CELLS]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        km = KernelManager(kernel_name="rtk-aio", kernel_spec_manager=ksm)
        nbclient.NotebookClient(nb, km=km, timeout=60).execute()

    def out(i: int) -> str:
        return "".join(o["text"] for o in nb.cells[i].outputs if o.get("name") == "stdout")

    assert out(2).strip() == "{'got': [1, 2]}"
    assert json.loads(out(3)) == {"n": 501, "last": "end", "dropped": 0}
    live = json.loads(out(4))
    assert live["first"] == 1 and live["second"] == 2
    assert live["killed"] >= 1 and live["reconnects"] >= 1  # the fault really happened
    assert out(5).strip() == "closed"


@pytest.mark.parametrize("mode", ["auto", "json", "raw"])
def test_listen_decodes_by_the_subscribers_rules_and_counts(server, mode):
    async def main() -> None:
        options = RedisOptions(decode=mode)
        async with RedisToolkit(url=server.url, options=options) as t:
            async with t.listen("aio:mixed") as stream:
                for payload in (b'{"a": 1}', b"plain text", b"\xff\xfe", b"[1, 2]"):
                    await t.publisher("aio:mixed", payload)
                got = []
                while True:
                    try:
                        got.append((await asyncio.wait_for(stream.__anext__(), 0.5))[1])
                    except asyncio.TimeoutError:
                        break
                s = stream.stats
        assert s.received == 4
        assert s.received == s.delivered + s.dropped + s.decode_errors + s.skipped + s.pending
        if mode == "auto":
            assert got == [{"a": 1}, "plain text", b"\xff\xfe", [1, 2]]
            assert (s.raw_payloads, s.decode_errors) == (2, 0)
        elif mode == "json":
            assert got == [{"a": 1}, [1, 2]]
            assert (s.raw_payloads, s.decode_errors, s.delivered) == (0, 2, 2)
            assert s.by_channel == {"aio:mixed": 2}, "deliveries only, as the sync subscriber's"
        else:
            assert got == [b'{"a": 1}', b"plain text", b"\xff\xfe", b"[1, 2]"]

    asyncio.run(main())


def test_async_publisher_checks_and_errors_match_the_sync_one(make_server):
    from redis_toolkit_nb import MessageTooLargeError, SerializationError, ToolkitConnectionError

    srv = make_server("redis", password="aio-s3cret")
    options = RedisOptions(max_value_size=1000, connect_timeout=1.0)
    t = RedisToolkit(url=srv.url, options=options)
    wrapped = RedisToolkit(redis.Redis.from_url(srv.url))  # an existing client: thread pool

    async def first() -> None:
        assert await t.publisher("aio:x", {"ok": 1}) == 0
        assert await wrapped.publisher("aio:x", {"ok": 1}) == 0
        with pytest.raises(MessageTooLargeError):
            await t.publisher("aio:x", "x" * 2000)
        with pytest.raises(SerializationError):
            await t.publisher("aio:x", {1, 2})

    async def second() -> None:
        # A new loop (a second asyncio.run): the toolkit makes a new async client for it.
        assert await t.publisher("aio:x", 2) == 0
        srv.stop()
        with pytest.raises(ToolkitConnectionError) as info:
            await t.publisher("aio:x", 3)
        assert "aio-s3cret" not in str(info.value)
        await t.cleanup()
        await wrapped.cleanup()

    asyncio.run(first())
    asyncio.run(second())


def test_listen_figures_per_channel_and_what_the_loop_never_took(server):
    """The loop itself takes and decodes the messages: ``delivered`` is what it took, the
    per-channel, per-pattern and per-link counts are of those, and what was read but never
    taken when the loop left is counted as dropped (the invariant holds before and after)."""

    async def main() -> None:
        async with RedisToolkit(url=server.url) as t:
            async with t.listen("aio:fig:a", "aio:fig:*") as stream:
                await t.publish_many("aio:fig:a", range(300))
                await t.publish_many("aio:fig:b", range(200))
                # a: one message per subscription (channel and pattern); b: the pattern's only.
                # Nothing is parsed before the loop asks: the bytes wait in the reader's pump.
                got = [await stream.__anext__() for _ in range(700)]
                s = stream.stats
                assert s.delivered == 700 and s.dropped == 0 and s.received >= 700
                assert s.pending == s.received - 700
                assert s.by_channel == {"aio:fig:a": 600, "aio:fig:b": 100}
                assert s.by_pattern == {"aio:fig:*": 400}
                assert s.by_link == {
                    ("aio:fig:*", "aio:fig:a"): 300,
                    ("aio:fig:*", "aio:fig:b"): 100,
                }
                assert [d for c, d in got if c == "aio:fig:b"] == list(range(100))
            after = stream.stats
        assert (after.received, after.delivered, after.dropped, after.pending) == (800, 700, 100, 0)

    asyncio.run(main())


def test_listen_under_block_loses_nothing_to_a_slow_loop(server):
    """``overflow="block"``: a loop slower than the publisher holds the reader back (the
    server's buffer takes the rest); every message arrives, in order, none dropped."""
    options = RedisOptions(overflow="block", queue_size=100, max_backlog_bytes=4096)
    total = 3000

    async def main() -> list[int]:
        async with RedisToolkit(url=server.url, options=options) as t:
            async with t.listen("aio:slow") as stream:
                await t.publish_many("aio:slow", range(total))
                got = []
                async for _, data in stream:
                    got.append(data)
                    if len(got) % 500 == 0:
                        await asyncio.sleep(0.05)  # slow: the queue is full meanwhile
                    if len(got) == total:
                        break
                assert stream.stats.dropped == 0
                return got

    assert asyncio.run(main()) == list(range(total))


def test_a_cancelled_first_wait_leaves_one_subscriber_and_close_stops_it(server, admin):
    """``wait_for`` around the first ``__anext__`` cancels the wait, not the subscribing: the
    next call waits for the same subscription (never a second one), and closing stops it,
    even one still subscribing; nothing keeps running."""

    def readers() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("rtk-sub")]

    before = readers()

    async def main() -> None:
        async with RedisToolkit(url=server.url) as t:
            stream = t.listen("aio:cancel")
            for _ in range(3):
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(stream.__anext__(), 0.0005)
            await _until(lambda: admin.pubsub_numsub("aio:cancel")[0][1] == 1, what="subscribed")
            await t.publisher("aio:cancel", "hello")
            assert await asyncio.wait_for(stream.__anext__(), 5) == ("aio:cancel", "hello")
            assert admin.pubsub_numsub("aio:cancel")[0][1] == 1, "one subscription, not four"
            await stream.aclose()
            # Closed while still subscribing: stopped all the same.
            late = t.listen("aio:cancel-2")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(late.__anext__(), 0.0005)
            await late.aclose()

    asyncio.run(main())
    assert admin.pubsub_numsub("aio:cancel", "aio:cancel-2") == [
        (b"aio:cancel", 0),
        (b"aio:cancel-2", 0),
    ]
    wait_until_threads = time.monotonic() + 5
    while readers() != before and time.monotonic() < wait_until_threads:
        time.sleep(0.05)
    assert readers() == before
