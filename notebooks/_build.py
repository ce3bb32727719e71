"""Write the teaching notebooks from this file, so they are reviewed as Python.

Run ``.venv/bin/python notebooks/_build.py`` after editing a notebook's cells below; it
rewrites every ``notebooks/*.ipynb`` without outputs (``tests/test_notebooks_clean.py``
checks that the committed notebooks match this file and carry no outputs).

Every notebook starts with ``%load_ext redis_toolkit_nb`` and connects to ``$REDIS_URL``,
else ``localhost:6379``, else the embedded server the toolkit starts by itself. Where a
notebook waits for messages it polls to a deadline (``wait_for``), never sleeps blindly. The
last code cell before the closing notes is a *check cell*: it prints a one-line JSON summary
of the notebook's key results, which the reader can compare and the test suite asserts.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

Cell = tuple[str, str]  # ("md" | "code", source)

# The helper every notebook defines: waiting on a background thread's work with a deadline.
WAIT_FOR_DEF = '''
def wait_for(condition, timeout=10.0, what="the condition"):
    """Poll ``condition()`` until it is true; raise at the deadline instead of hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not met within {timeout:g} s")
        time.sleep(0.02)
'''


def helpers(imports: str = "import time", after: str = "") -> Cell:
    """A code cell: the imports (which must include ``time``), ``wait_for``, then ``after``."""
    parts = [textwrap.dedent(imports).strip(), WAIT_FOR_DEF.strip()]
    if after.strip():
        parts.append(textwrap.dedent(after).strip())
    return ("code", "\n\n\n".join(parts))


def md(text: str) -> Cell:
    return ("md", textwrap.dedent(text).strip())


def code(text: str) -> Cell:
    return ("code", textwrap.dedent(text).strip())


LOAD = code(
    """
    %load_ext redis_toolkit_nb
    """
)

# ---------------------------------------------------------------------------------------------
QUICKSTART: list[Cell] = [
    md(
        """
        # Quickstart: publish, subscribe, and watch a live DataFrame

        Redis Pub/Sub in three moves: **subscribe** to channels, **publish** messages to them,
        and **look** at what arrived. `%load_ext redis_toolkit_nb` connects to `$REDIS_URL`,
        else to a Redis on `localhost:6379`, else it starts an embedded server by itself, so
        this notebook runs as is. Choose *Run > Run All Cells* and scroll through.
        """
    ),
    LOAD,
    code(
        """
        %rtk_connect
        """
    ),
    md(
        """
        ## Subscribe

        `%%rtk_subscribe` starts a subscription in the background and **returns at once**: its
        output is a live panel (counters, a rate chart per channel, the newest rows, a log) that
        keeps updating while the next cells run. The subscription object is bound to the
        `--name` you give, here `news`.
        """
    ),
    code(
        """
        %%rtk_subscribe news updates --name news
        """
    ),
    md(
        """
        ## Publish

        The payload of `%rtk_publish` is a Python expression: a dict literal (JSON as is, no
        `{var}` mangling), a variable, a number, an f-string. It is serialized to JSON on the
        wire. The result is the number of subscribers that received it.
        """
    ),
    code(
        """
        %rtk_publish news {"type": "breaking_news", "title": "Big Update", "body": "v2 is out"}
        """
    ),
    code(
        """
        headline = {"title": "Second update", "tags": ["redis", "jupyter"]}
        %rtk_publish updates headline
        """
    ),
    md(
        """
        `--count` and `--rate` turn it into a small load generator: here 200 messages at up to
        1,000 per second. Inside the payload, `i` is the message's index (0, 1, 2, ...).
        """
    ),
    code(
        """
        %rtk_publish updates {"source": "load", "seq": i} --count 200 --rate 1000
        """
    ),
    md(
        """
        ## Wait for the messages, then look at them

        Messages arrive on a background thread. When a cell needs them, it waits with a
        deadline, polling, never with a blind `sleep`:
        """
    ),
    helpers(after="wait_for(lambda: news.stats.delivered >= 202, what='202 messages')"),
    md(
        """
        `news.df` is a pandas DataFrame of the newest messages, oldest first: `time` (UTC),
        `channel`, `pattern` (empty for plain channels), `data` and `size` in bytes.
        """
    ),
    code(
        """
        news.df.head()
        """
    ),
    code(
        """
        news.df.groupby("channel")["size"].agg(["count", "sum"])
        """
    ),
    md(
        """
        `df_expanded()` flattens dict payloads into columns:
        """
    ),
    code(
        """
        news.df_expanded().head(3)
        """
    ),
    md(
        """
        ## Pause, resume, and discarding on purpose

        **Pause** (the panel's button, or `news.pause()`) freezes the panel's view so you can
        read it; messages keep arriving in `news.df` and the counters, and the panel says
        "N new since paused". Resume shows them. **Discard incoming** (`news.discard()`) is
        different: messages are still read (so the server never cuts the subscriber off) but
        dropped on purpose, counted in `stats.skipped`, never lost silently.
        """
    ),
    code(
        """
        news.pause()
        %rtk_publish news "published while paused"
        wait_for(lambda: news.snapshot().new_since_pause == 1, what="the message, captured")
        print(news.df["data"].iloc[-1], "| new since paused:", news.snapshot().new_since_pause)
        news.resume()
        news.discard()
        %rtk_publish news "published while discarding"
        wait_for(lambda: news.stats.skipped >= 1, what="the discarded message")
        news.discard(False)
        news.stats
        """
    ),
    md(
        """
        ## Run code for every message

        Give `%%rtk_subscribe` a body and it runs for every message with `channel`, `data` and
        `message` bound; its `print` goes to the panel's log. An error in the body is shown in
        the log too and counted in `stats.handler_errors`; the subscription keeps going. Names
        the body assigns stay local to one message: keep state in an object you mutate, like
        the list `critical` here.
        """
    ),
    code(
        """
        critical = []
        """
    ),
    code(
        """
        %%rtk_subscribe alerts --name alerts
        if data["level"] == "critical":
            critical.append(data["text"])
            print("CRITICAL:", data["text"])  # print goes to the panel's log
        """
    ),
    code(
        """
        %rtk_publish alerts {"level": "info", "text": "disk 60% full"}
        %rtk_publish alerts {"level": "critical", "text": "disk 95% full"}
        %rtk_publish alerts "not a dict: the body raises on this one"
        %rtk_publish alerts {"level": "critical", "text": "disk full"}
        wait_for(lambda: alerts.stats.delivered >= 4, what="4 alerts")
        critical
        """
    ),
    code(
        """
        %rtk subs
        """
    ),
    md(
        """
        ## Check

        The figures this notebook should end with (the test suite reads this line too):
        """
    ),
    code(
        """
        # Check cell: a one-line summary of what this notebook did.
        import json

        summary = {
            "received": news.stats.received,
            "skipped": news.stats.skipped,
            "rows": len(news.df),
            "by_channel": news.stats.by_channel,
            "critical": critical,
            "handler_errors": alerts.stats.handler_errors,
        }
        print(json.dumps(summary))
        """
    ),
    code(
        """
        alerts.stop()
        """
    ),
    md(
        """
        `news` is still running: publish to `news` or `updates` from another notebook or a
        terminal (`redis-cli -u <url> publish news hello`) and watch its panel. Stop it with
        `news.stop()`, `%rtk stop news`, or everything with `%rtk stop --all`.

        Next: `patterns_and_routing.ipynb`.
        """
    ),
]

# ---------------------------------------------------------------------------------------------
PATTERNS: list[Cell] = [
    md(
        """
        # Patterns and multi-channel routing

        One subscription can listen to many channels: list them, or use a **glob pattern**
        (`*`, `?`, `[abc]`) that matches channels that do not even exist yet. Then route each
        message by its channel.
        """
    ),
    LOAD,
    helpers(),
    md(
        """
        ## A pattern subscription

        `user:*` matches `user:login`, `user:logout`, `user:update`... The `pattern` column
        tells which pattern matched, `channel` the channel it was published to.
        """
    ),
    code(
        """
        %%rtk_subscribe user:* --name users
        """
    ),
    code(
        """
        %rtk_publish user:login {"user_id": 1001}
        %rtk_publish user:logout {"user_id": 1002}
        %rtk_publish user:update {"user_id": 1003}
        %rtk_publish account:update {"user_id": 1004}
        wait_for(lambda: users.stats.delivered >= 3, what="3 user events")
        users.df[["channel", "pattern", "data"]]
        """
    ),
    md(
        """
        `account:update` does not match `user:*`, so it never arrived. Note what the server
        reports: `PUBSUB NUMSUB` counts only plain channel subscribers, so `user:login` shows
        **0** although `users` receives it; pattern subscriptions show in `NUMPAT`.
        """
    ),
    code(
        """
        %rtk numsub user:login
        """
    ),
    code(
        """
        %rtk numpat
        """
    ),
    md(
        """
        ## Routing by channel

        The cell body runs for every message with `channel` and `data` bound, so routing is
        an `if` on the channel. Here orders, payments and per-user notifications each go to
        their own list.
        """
    ),
    code(
        """
        routed = {"orders": [], "payments": [], "notifications": []}
        """
    ),
    code(
        """
        %%rtk_subscribe orders payments notifications:* --name router
        if channel == "orders":
            routed["orders"].append(data["order_id"])
        elif channel == "payments":
            routed["payments"].append(data["amount"])
        elif channel.startswith("notifications:"):
            user_id = channel.split(":")[1]
            routed["notifications"].append(f"user {user_id}: {data['message']}")
        """
    ),
    md(
        """
        Payloads can be f-strings and expressions over your variables (the loop variable `n`
        here):
        """
    ),
    code(
        """
        for n in range(1, 4):
            %rtk_publish orders {"order_id": f"A-{n}", "items": n}
        %rtk_publish payments {"amount": 19.99}
        %rtk_publish payments {"amount": 5.00}
        %rtk_publish notifications:1001 {"message": "Your order has shipped"}
        %rtk_publish notifications:1002 {"message": "Welcome!"}
        wait_for(lambda: router.stats.delivered >= 7, what="7 routed messages")
        routed
        """
    ),
    code(
        """
        router.df.groupby(["channel", "pattern"], dropna=False).size()
        """
    ),
    md(
        """
        ## Overlapping subscriptions deliver twice

        A subscription to a channel **and** to a pattern matching it receives each message
        twice: once as a plain message, once as a pattern message. Redis does this, not the
        toolkit; the `pattern` column shows which is which.
        """
    ),
    code(
        """
        %%rtk_subscribe alerts:disk alerts:* --name overlap
        """
    ),
    code(
        """
        receivers = %rtk_publish alerts:disk {"used": "95%"}
        wait_for(lambda: overlap.stats.delivered >= 2, what="both copies")
        print("PUBLISH reported", receivers, "receiver(s)")
        overlap.df[["channel", "pattern", "data"]]
        """
    ),
    md(
        """
        ## Check
        """
    ),
    code(
        """
        # Check cell: a one-line summary of what this notebook did.
        import json

        summary = {
            "user_channels": sorted(users.df["channel"]),
            "user_patterns": sorted(set(users.df["pattern"])),
            "routed": routed,
            "overlap_rows": len(overlap.df),
            "overlap_patterns": sorted(str(p) for p in overlap.df["pattern"]),
        }
        print(json.dumps(summary))
        """
    ),
    code(
        """
        %rtk stop --all
        """
    ),
    md(
        """
        Next: `request_response.ipynb` builds two-way communication on top of Pub/Sub.
        """
    ),
]

# ---------------------------------------------------------------------------------------------
REQUEST_RESPONSE: list[Cell] = [
    md(
        """
        # Request-response and acknowledgements

        Pub/Sub is one-way and fire-and-forget. Two small patterns make it two-way: a
        **request** carries the channel its answer should go to, and a **message with an
        acknowledgement** is confirmed by its receiver. This notebook uses the core API,
        `RedisToolkit`, the same as in a script or a service.
        """
    ),
    LOAD,
    helpers(
        """
        import threading
        import time
        import uuid

        from redis_toolkit_nb import RedisToolkit
        """
    ),
    md(
        """
        ## The request processor

        In production it is another process; here it is a background subscriber in this
        kernel. `RedisToolkit(channels=..., message_handler=...)` returns once the server has
        confirmed the subscription, so nothing published afterwards can slip past it.
        """
    ),
    code(
        """
        replies = RedisToolkit()  # one connection for every reply, reused


        def handle_request(channel, request):
            task = request["data"]
            if task.get("action") == "calculate":
                result = {"status": "success", "result": sum(task["numbers"])}
            else:
                result = {"status": "error", "error": f"unknown action {task.get('action')!r}"}
            replies.publisher(request["response_channel"], result)


        processor = RedisToolkit(channels=["requests"], message_handler=handle_request)
        """
    ),
    md(
        """
        ## The client

        Each request gets a unique reply channel; one pattern subscription (`responses:*`)
        receives every reply and wakes the waiting caller. `publisher()` returns how many
        subscribers received the request: **0 means nobody is listening**, so the client fails
        at once instead of waiting for its timeout.
        """
    ),
    code(
        """
        class NoReceiverError(RuntimeError):
            \"\"\"Nobody is subscribed to the request channel.\"\"\"


        class RequestResponse:
            def __init__(self):
                self.toolkit = RedisToolkit()
                self.responses = {}
                self.response_listener = RedisToolkit(
                    channels=["responses:*"], message_handler=self._handle_response
                )

            def send_request(self, request_data, timeout=5, channel="requests"):
                \"\"\"Send a request and wait for its response.\"\"\"
                request_id = str(uuid.uuid4())
                event = threading.Event()
                self.responses[request_id] = {"event": event, "data": None}
                request = {
                    "id": request_id,
                    "response_channel": f"responses:{request_id}",
                    "data": request_data,
                }
                try:
                    if self.toolkit.publisher(channel, request) == 0:
                        raise NoReceiverError(f"nobody is listening on {channel!r}")
                    if not event.wait(timeout):
                        raise TimeoutError(f"no response within {timeout} s")
                    return self.responses[request_id]["data"]
                finally:
                    self.responses.pop(request_id, None)

            def _handle_response(self, channel, data):
                request_id = channel.split(":", 1)[1]
                if request_id in self.responses:
                    self.responses[request_id]["data"] = data
                    self.responses[request_id]["event"].set()

            def close(self):
                self.response_listener.cleanup()
                self.toolkit.cleanup()


        client = RequestResponse()
        response = client.send_request({"action": "calculate", "numbers": [1, 2, 3, 4, 5]})
        response
        """
    ),
    md(
        """
        How long does a round trip take? Fifty of them, one after the other:
        """
    ),
    code(
        """
        start = time.perf_counter()
        answers = [
            client.send_request({"action": "calculate", "numbers": list(range(n))})["result"]
            for n in range(50)
        ]
        elapsed = time.perf_counter() - start
        print(f"50 round trips in {elapsed * 1000:.0f} ms, {elapsed / 50 * 1000:.2f} ms each")
        answers == [sum(range(n)) for n in range(50)]
        """
    ),
    md(
        """
        A request the processor does not understand gets an error *response*, not silence:
        """
    ),
    code(
        """
        unknown = client.send_request({"action": "divide", "numbers": [1, 0]})
        unknown
        """
    ),
    md(
        """
        `%rtk numsub` shows who listens where (the client's `responses:*` is a pattern, so it
        counts in `NUMPAT`, not here):
        """
    ),
    code(
        """
        %rtk numsub requests nobody-listens
        """
    ),
    md(
        """
        ## When nobody answers

        Nobody listening: the client knows at once. Somebody listening who never answers:
        the client gives up at its timeout.
        """
    ),
    code(
        """
        try:
            client.send_request({"action": "calculate", "numbers": [1]}, channel="nobody-listens")
        except NoReceiverError as exc:
            no_receiver = str(exc)
        no_receiver
        """
    ),
    code(
        """
        silent = RedisToolkit(channels=["silent-requests"], message_handler=lambda ch, req: None)
        try:
            client.send_request({"action": "calculate"}, channel="silent-requests", timeout=0.5)
        except TimeoutError as exc:
            timed_out = str(exc)
        silent.cleanup()
        timed_out
        """
    ),
    md(
        """
        ## Acknowledgements

        The sender attaches a message id and an ack channel; the receiver publishes an ack
        **after** processing succeeded. A handler that raises is logged and counted by the
        toolkit (`stats.handler_errors`) and the subscription keeps going, but no ack is sent:
        the sender sees `False` and can retry or alert.
        """
    ),
    code(
        """
        class ReliableMessaging:
            def __init__(self):
                self.toolkit = RedisToolkit()

            def publish_with_ack(self, channel, message, timeout=5):
                \"\"\"Publish a message and wait for its acknowledgement.\"\"\"
                msg_id = str(uuid.uuid4())
                ack_channel = f"ack:{msg_id}"
                ack_received = threading.Event()

                def ack_handler(ch, data):
                    if data.get("msg_id") == msg_id:
                        ack_received.set()

                ack_subscriber = RedisToolkit(channels=[ack_channel], message_handler=ack_handler)
                try:
                    message = dict(message, _msg_id=msg_id, _ack_channel=ack_channel)
                    self.toolkit.publisher(channel, message)
                    return ack_received.wait(timeout)
                finally:
                    ack_subscriber.cleanup()

            def create_ack_subscriber(self, channel, process_message):
                \"\"\"A subscriber that acknowledges every message it processed.\"\"\"

                def handler_with_ack(ch, data):
                    process_message(data)  # raises: no ack, and the toolkit counts the error
                    if "_msg_id" in data and "_ack_channel" in data:
                        ack = {"msg_id": data["_msg_id"], "status": "acknowledged"}
                        self.toolkit.publisher(data["_ack_channel"], ack)

                return RedisToolkit(channels=[channel], message_handler=handler_with_ack)


        processed = []


        def process_payment(data):
            if data["amount"] <= 0:
                raise ValueError(f"refusing a payment of {data['amount']}")
            processed.append(data["amount"])


        messaging = ReliableMessaging()
        payments = messaging.create_ack_subscriber("payments", process_payment)
        acked = messaging.publish_with_ack("payments", {"amount": 42.5})
        acked
        """
    ),
    code(
        """
        refused = messaging.publish_with_ack("payments", {"amount": -1}, timeout=1)
        wait_for(lambda: payments.stats.handler_errors >= 1, what="the counted handler error")
        print("acknowledged:", refused)
        when, channel, data, exc, tb = payments.subscriber.failures[-1]
        print(f"the handler raised on {channel}: {exc!r}")
        """
    ),
    md(
        """
        ## The same patterns as calls

        The recipes above follow the Pub/Sub guide, whose own versions carry flaws that are easy
        to copy:

        - the guide's `publish_with_ack` starts a new subscriber (a connection, two threads, a
          `SUBSCRIBE` round trip) for **every message** and never stops it: 1,000 acknowledged
          messages leave 1,000 subscribers behind. The version above stops it in `finally`,
          but still pays a subscription per message;
        - the guide's `send_request` never removes its waiter on a timeout: `self.responses`
          grows with every timed-out request (above: popped in `finally`), and its dict is
          shared by threads without a lock;
        - a reply that arrives after the timeout is silently stored for nobody.

        `RedisToolkit` offers both patterns as one call each, on the **same wire format**, so
        code written either way talks to the other. `serve(channel, fn)` answers requests with
        `fn(request["data"])`; `request(channel, data, timeout=5.0)` sends the guide's request
        and returns the reply. One reply subscription per toolkit (`responses:<toolkit id>:*`)
        serves every request, from any number of threads.
        """
    ),
    code(
        """
        calls = RedisToolkit()


        def calculate(task):
            if task.get("action") != "calculate":
                raise ValueError(f"unknown action {task.get('action')!r}")
            return {"status": "success", "result": sum(task["numbers"])}


        calc_server = calls.serve("calc", calculate)
        served = calls.request("calc", {"action": "calculate", "numbers": [1, 2, 3, 4, 5]})
        served
        """
    ),
    md(
        """
        Old and new code interoperate: the hand-written client above gets its answer from
        `serve()`, and `request()` gets its answer from the hand-written processor.
        """
    ),
    code(
        """
        interop = {
            "client -> serve()": client.send_request(
                {"action": "calculate", "numbers": [10, 20]}, channel="calc"
            ),
            "request() -> processor": calls.request(
                "requests", {"action": "calculate", "numbers": [7]}
            ),
        }
        interop
        """
    ),
    md(
        """
        When `fn` raises, the requester gets `RemoteError` with the exception's **type and
        message** only (the traceback stays in the server's log; its `stats.handler_errors`
        counts it). On the wire it is `{"_rtk_error": {"type": ..., "message": ...}}`, which is
        what a hand-written client receives as its response. No reply in time raises
        `RequestTimeout` (also a `TimeoutError`) and forgets the waiter: a reply that comes
        later is counted in `request_stats.late_replies`, never handed to another request. A
        request that reached no subscriber at all fails at once.
        """
    ),
    code(
        """
        from redis_toolkit_nb import RemoteError, RequestTimeout

        try:
            calls.request("calc", {"action": "divide", "numbers": [1, 0]})
        except RemoteError as exc:
            remote = {"type": exc.type, "message": exc.message}

        silent = RedisToolkit(channels=["silent-requests"], message_handler=lambda ch, req: None)
        try:
            calls.request("silent-requests", {"action": "calculate"}, timeout=0.5)
        except RequestTimeout as exc:
            call_timed_out = str(exc)
        silent.cleanup()
        remote, call_timed_out
        """
    ),
    md(
        """
        `%rtk_request CHANNEL PAYLOAD [--timeout S]` is the same call as a magic (PAYLOAD as in
        `%rtk_publish`; a timeout or a remote error stops the notebook like any usage error):
        """
    ),
    code(
        """
        magic_reply = %rtk_request calc {"action": "calculate", "numbers": [2, 3]}
        magic_reply
        """
    ),
    md(
        """
        `publish_with_ack(channel, message, timeout=5.0, acks=1)` adds the guide's `_msg_id`
        and `_ack_channel` to a copy of the message, waits for `acks` acknowledgements (one
        ack subscription per toolkit) and returns how many came: 0 at once when no subscriber
        received the message. `ack(data)` sends the acknowledgement for a message that asked
        for one and does nothing otherwise. Three acknowledging receivers, nobody, and the
        hand-written acknowledging subscriber from above:
        """
    ),
    code(
        """
        auditors = [
            RedisToolkit(channels=["audit"], message_handler=lambda ch, data: calls.ack(data))
            for _ in range(3)
        ]
        acks = {
            "three receivers": calls.publish_with_ack("audit", {"event": "login"}, acks=3),
            "nobody": calls.publish_with_ack("nobody-listens", {"event": "login"}),
            "hand-written receiver": calls.publish_with_ack("payments", {"amount": 7.0}),
        }
        acks
        """
    ),
    md(
        """
        ## asyncio

        `redis_toolkit_nb.aio.RedisToolkit` has the same calls as coroutines, and a cell can
        `await` them directly (the kernel runs the event loop). `listen()` yields `(channel,
        data)` pairs; leaving the loop unsubscribes.
        """
    ),
    code(
        """
        from redis_toolkit_nb.aio import RedisToolkit as AsyncToolkit

        async with AsyncToolkit() as atk:
            async_reply = await atk.request("calc", {"action": "calculate", "numbers": [4, 5]})
            async with atk.listen("audit", "audit:*") as stream:
                await atk.publisher("audit:logout", {"user": 7})
                async for channel, data in stream:
                    heard = [channel, data]
                    break
        async_reply, heard
        """
    ),
    md(
        """
        ## Check
        """
    ),
    code(
        """
        # Check cell: a one-line summary of what this notebook did.
        import json

        summary = {
            "response": response,
            "round_trips_correct": answers == [sum(range(n)) for n in range(50)],
            "unknown_action": unknown,
            "no_receiver": no_receiver,
            "timed_out": timed_out,
            "acked": acked,
            "refused_acked": refused,
            "processed": processed,
            "handler_errors": payments.stats.handler_errors,
            "served": served,
            "interop": interop,
            "remote": remote,
            "call_timed_out": call_timed_out,
            "magic_reply": magic_reply,
            "acks": acks,
            "async_reply": async_reply,
            "heard": heard,
        }
        print(json.dumps(summary))
        """
    ),
    code(
        """
        for toolkit in (payments, messaging.toolkit, processor, replies, calls, *auditors):
            toolkit.cleanup()
        client.close()
        """
    ),
    md(
        """
        Pub/Sub stays at-most-once underneath: a request published while the processor is
        restarting is lost. The timeout and the ack are how the sender finds out. Next:
        `notifications_and_chat.ipynb`.
        """
    ),
]

# ---------------------------------------------------------------------------------------------
NOTIFICATIONS: list[Cell] = [
    md(
        """
        # Real-time notifications and a chat room

        Two classic uses of Pub/Sub: pushing notifications to users (personal ones, and
        broadcasts to all), and a chat room where everyone in the room sees every message.
        """
    ),
    LOAD,
    helpers(
        """
        import time
        import uuid

        from redis_toolkit_nb import RedisToolkit
        """
    ),
    md(
        """
        ## Notifications

        The sender publishes a personal notification to `notifications:user:<id>`, plus a
        short record to `notifications:all` for monitoring; broadcasts go to
        `notifications:broadcast`.
        """
    ),
    code(
        """
        class NotificationSystem:
            def __init__(self):
                self.publisher = RedisToolkit()

            def send_notification(self, user_id, notification):
                \"\"\"Send a notification to one user.\"\"\"
                message = {
                    "id": str(uuid.uuid4()),
                    "type": notification["type"],
                    "title": notification["title"],
                    "body": notification["body"],
                    "timestamp": time.time(),
                    "read": False,
                }
                self.publisher.publisher(f"notifications:user:{user_id}", message)
                # Also a short record on a global channel, for monitoring.
                self.publisher.publisher(
                    "notifications:all", {"user_id": user_id, "notification_id": message["id"]}
                )

            def broadcast(self, notification):
                \"\"\"Send a notification to every user.\"\"\"
                self.publisher.publisher(
                    "notifications:broadcast",
                    {
                        "id": str(uuid.uuid4()),
                        "title": notification["title"],
                        "body": notification["body"],
                        "timestamp": time.time(),
                    },
                )
        """
    ),
    md(
        """
        User 1001's app subscribes to its own channel and to broadcasts; the cell body turns
        each message into the line the app would show. A second subscription plays the
        operator watching `notifications:all`.
        """
    ),
    code(
        """
        inbox = []
        """
    ),
    code(
        """
        %%rtk_subscribe notifications:user:1001 notifications:broadcast --name user_1001
        kind = "Personal" if channel == "notifications:user:1001" else "Broadcast"
        inbox.append(f"[{kind}] {data['title']}: {data['body']}")
        """
    ),
    code(
        """
        %%rtk_subscribe notifications:all --name monitor
        """
    ),
    code(
        """
        notifier = NotificationSystem()
        notifier.send_notification(
            1001, {"type": "order", "title": "Order Update", "body": "Your order has been shipped"}
        )
        # Another user's notification: user 1001 never sees it, the monitor does.
        notifier.send_notification(
            1002, {"type": "promo", "title": "Welcome", "body": "Thanks for signing up"}
        )
        notifier.broadcast(
            {"title": "System Maintenance", "body": "Maintenance at 10 PM tonight"}
        )
        wait_for(lambda: len(inbox) >= 2 and monitor.stats.delivered >= 2, what="the notifications")
        inbox
        """
    ),
    code(
        """
        monitor.df_expanded()
        """
    ),
    md(
        """
        ## A chat room

        Everyone in room `general` subscribes to `chat:room:general`; joining, talking and
        leaving are messages on it. A pattern subscription `chat:room:*` gives a moderator's
        live view of every room.
        """
    ),
    code(
        """
        %%rtk_subscribe chat:room:* --name rooms
        """
    ),
    code(
        """
        class ChatRoom:
            def __init__(self, room_id):
                self.room_id = room_id
                self.toolkit = RedisToolkit()
                self.channel = f"chat:room:{room_id}"

            def join(self, user_name, on_message):
                \"\"\"Announce the user, then subscribe them to the room.\"\"\"
                self.toolkit.publisher(
                    self.channel, {"type": "join", "user": user_name, "timestamp": time.time()}
                )
                return RedisToolkit(
                    channels=[self.channel], message_handler=lambda channel, data: on_message(data)
                )

            def send_message(self, user_name, message):
                self.toolkit.publisher(
                    self.channel,
                    {"type": "message", "user": user_name, "text": message, "at": time.time()},
                )

            def leave(self, user_name):
                self.toolkit.publisher(
                    self.channel, {"type": "leave", "user": user_name, "timestamp": time.time()}
                )


        def screen(lines):
            \"\"\"A chat window: turns room messages into lines (a list stands in for the UI).\"\"\"

            def display_message(data):
                if data["type"] == "join":
                    lines.append(f"*** {data['user']} joined the chat ***")
                elif data["type"] == "message":
                    lines.append(f"{data['user']}: {data['text']}")
                elif data["type"] == "leave":
                    lines.append(f"*** {data['user']} left the chat ***")

            return display_message
        """
    ),
    code(
        """
        room = ChatRoom("general")
        alice_screen, bob_screen = [], []

        alice = room.join("Alice", screen(alice_screen))
        room.send_message("Alice", "Hello everyone!")

        bob = room.join("Bob", screen(bob_screen))
        room.send_message("Bob", "Hi Alice!")

        room.leave("Bob")
        left = "*** Bob left the chat ***"
        wait_for(lambda: left in alice_screen and left in bob_screen, what="Bob's goodbye")
        bob.cleanup()
        print("Alice sees:", *alice_screen, sep="\\n  ")
        print("Bob sees:", *bob_screen, sep="\\n  ")
        """
    ),
    md(
        """
        Bob never sees "Hello everyone!": Pub/Sub keeps no history, a subscriber gets only
        what is published **after** it subscribed. (Alice does not see her own join either:
        she announces it before subscribing.) Keep history elsewhere (a Redis list or stream)
        if late joiners need it.

        Join the room yourself: type below and press *Send*; the `rooms` panel above and
        Alice's screen update.
        """
    ),
    code(
        """
        import ipywidgets as widgets

        text = widgets.Text(placeholder="Say something", description="You:")
        send = widgets.Button(description="Send", button_style="primary")


        def on_send(_button):
            if text.value.strip():
                room.send_message("You", text.value)
                text.value = ""


        send.on_click(on_send)
        widgets.HBox([text, send])
        """
    ),
    md(
        """
        ## Check
        """
    ),
    code(
        """
        # Check cell: a one-line summary of what this notebook did.
        import json

        wait_for(lambda: rooms.stats.delivered >= 5, what="the moderator's copy")
        summary = {
            "inbox": inbox,
            "monitored_users": sorted(monitor.df_expanded()["user_id"].tolist()),
            "alice": alice_screen,
            "bob": bob_screen,
            "room_messages": rooms.stats.delivered,
        }
        print(json.dumps(summary))
        """
    ),
    md(
        """
        `alice` and the `rooms` panel keep running so you can chat; stop them with
        `alice.cleanup()` and `%rtk stop --all`. Next: `task_queue.ipynb`.
        """
    ),
]

# ---------------------------------------------------------------------------------------------
TASK_QUEUE: list[Cell] = [
    md(
        """
        # A task queue with workers

        Producers publish tasks to `tasks:<queue>:<priority>`; workers subscribe, do the work
        and publish the outcome to `tasks:completed` or `tasks:failed`. One thing to know
        first: **Pub/Sub delivers every message to every subscriber**. Two workers on the same
        channels would both run every task, so each worker first *claims* the task with an
        atomic `SET ... NX`; exactly one claim succeeds.
        """
    ),
    LOAD,
    helpers(
        """
        import time
        import uuid

        from redis_toolkit_nb import RedisToolkit
        """
    ),
    code(
        """
        class TaskQueue:
            def __init__(self, queue_name):
                self.queue_name = queue_name
                self.toolkit = RedisToolkit()
                self.channel = f"tasks:{queue_name}"

            def submit_task(self, task_type, payload, priority="normal"):
                \"\"\"Publish a task; return its id.\"\"\"
                task = {
                    "id": str(uuid.uuid4()),
                    "type": task_type,
                    "payload": payload,
                    "priority": priority,
                    "submitted_at": time.time(),
                    "status": "pending",
                }
                receivers = self.toolkit.publisher(f"{self.channel}:{priority}", task)
                if receivers == 0:
                    # At-most-once: with no worker online the task is gone. Say so.
                    raise RuntimeError(f"no worker is listening: task {task['id']} was dropped")
                return task["id"]

            def create_worker(self, worker_id, task_handler):
                \"\"\"A worker: a background subscriber to every priority of this queue.\"\"\"

                def handle_task(channel, task):
                    # Every worker receives every task: only the one that claims it works on it.
                    claim = f"{self.channel}:claim:{task['id']}"
                    if not self.toolkit.client.set(claim, worker_id, nx=True, ex=3600):
                        return
                    task.update(status="processing", worker_id=worker_id, started_at=time.time())
                    try:
                        result = task_handler(task)
                    except Exception as exc:
                        task.update(status="failed", error=repr(exc), failed_at=time.time())
                        self.toolkit.publisher("tasks:failed", task)
                    else:
                        task.update(status="completed", result=result, completed_at=time.time())
                        self.toolkit.publisher("tasks:completed", task)

                return RedisToolkit(
                    channels=[f"{self.channel}:{p}" for p in ("high", "normal", "low")],
                    message_handler=handle_task,
                    name=worker_id,
                )
        """
    ),
    md(
        """
        Watch the queue: one panel for incoming tasks (a pattern over every priority), one for
        the outcomes.
        """
    ),
    code(
        """
        %%rtk_subscribe tasks:image_processing:* --name incoming
        """
    ),
    code(
        """
        %%rtk_subscribe tasks:completed tasks:failed --name outcomes
        """
    ),
    md(
        """
        Two workers. The handler runs on the subscriber's own thread, so slow work never
        stops the socket from being read; the simulated work below takes 20 ms per task.
        """
    ),
    code(
        """
        def process_image(task):
            payload = task["payload"]
            time.sleep(0.02)  # simulated work (a resize, say), not a wait
            return {"status": "processed", "size": f"{payload['width']}x{payload['height']}"}


        queue = TaskQueue("image_processing")
        worker1 = queue.create_worker("worker-1", process_image)
        worker2 = queue.create_worker("worker-2", process_image)
        """
    ),
    code(
        """
        priorities = ["high", "normal", "low"]
        task_ids = [
            queue.submit_task(
                "resize",
                {"image_path": f"/images/photo{n}.jpg", "width": 800, "height": 600},
                priority=priorities[n % 3],
            )
            for n in range(24)
        ]
        # A malformed task (no width or height): it ends up in tasks:failed, not lost.
        bad_id = queue.submit_task("resize", {"image_path": "/images/broken.jpg"})
        wait_for(lambda: outcomes.stats.delivered >= 25, timeout=30, what="25 outcomes")
        outcomes.stats.by_channel
        """
    ),
    md(
        """
        The outcomes, flattened with `df_expanded()`: who did what, and how long it waited.
        """
    ),
    code(
        """
        done = outcomes.df_expanded()
        done["waited_ms"] = (done["started_at"] - done["submitted_at"]) * 1000
        done.groupby(["status", "worker_id"]).agg(
            tasks=("id", "count"), waited_ms=("waited_ms", "mean")
        )
        """
    ),
    code(
        """
        wait_for(lambda: min(worker1.stats.received, worker2.stats.received) >= 25)
        print("worker-1 received", worker1.stats.received, "tasks")
        print("worker-2 received", worker2.stats.received, "tasks")
        print("tasks submitted:", len(task_ids) + 1, "- outcomes:", len(done))
        done.loc[done["status"] == "failed", ["id", "error"]]
        """
    ),
    md(
        """
        ## Check
        """
    ),
    code(
        """
        # Check cell: a one-line summary of what this notebook did.
        import json

        completed = done[done["status"] == "completed"]
        summary = {
            "submitted": len(task_ids) + 1,
            "completed": len(completed),
            "completed_unique": completed["id"].nunique(),
            "all_submitted_completed": sorted(completed["id"]) == sorted(task_ids),
            "failed_ids": done.loc[done["status"] == "failed", "id"].tolist(),
            "bad_id": bad_id,
            "by_worker": completed["worker_id"].value_counts().to_dict(),
            "each_worker_received": [worker1.stats.received, worker2.stats.received],
            "incoming_by_channel": incoming.stats.by_channel,
        }
        print(json.dumps(summary))
        """
    ),
    code(
        """
        for toolkit in (worker1, worker2, queue.toolkit):
            toolkit.cleanup()
        %rtk stop --all
        """
    ),
    md(
        """
        Pub/Sub suits workers that are online; it keeps nothing for a worker that is down.
        For durable queues (retries, a backlog while workers restart) use Redis lists or
        streams. Next: `dashboard.ipynb`.
        """
    ),
]

# ---------------------------------------------------------------------------------------------
DASHBOARD: list[Cell] = [
    md(
        """
        # A live dashboard

        `%rtk panel` is a dashboard for the whole server: **Publish** (a payload editor),
        **Subscribe** (start a subscription from a form), **Channels** (what is active, who
        listens; click one to subscribe) and **Flows** (which channels and patterns carry the
        traffic). This notebook starts some demo traffic so there is something to see; it also
        renders as a stand-alone app with Voila.
        """
    ),
    LOAD,
    code(
        """
        %rtk_connect
        """
    ),
    md(
        """
        ## Demo traffic

        A background thread publishes about 40 messages a second to a shop, a few sensors and
        a chat room, for at most 10 minutes. `stop_traffic.set()` stops it at once.
        """
    ),
    helpers(
        """
        import random
        import threading
        import time

        from redis_toolkit_nb import RedisToolkit

        """,
        after='''
stop_traffic = threading.Event()
CHANNELS = ["orders", "payments", "sensors:temp", "sensors:humidity", "chat:room:general"]


def demo_traffic(rate=40.0, minutes=10.0):
    """Publish random events until stopped or for ``minutes`` (never forever)."""
    deadline = time.monotonic() + minutes * 60
    with RedisToolkit() as toolkit:
        n = 0
        while not stop_traffic.is_set() and time.monotonic() < deadline:
            channel = random.choices(CHANNELS, weights=[3, 2, 4, 4, 1])[0]
            toolkit.publisher(channel, {"n": n, "value": round(random.uniform(0, 100), 1)})
            n += 1
            stop_traffic.wait(1 / rate)  # paces the traffic; returns at once on stop


traffic = threading.Thread(target=demo_traffic, name="demo-traffic", daemon=True)
traffic.start()
''',
    ),
    md(
        """
        ## Subscriptions to watch

        Each has its own live panel; the dashboard below lists them all.
        """
    ),
    code(
        """
        %%rtk_subscribe orders payments --name shop
        """
    ),
    code(
        """
        %%rtk_subscribe sensors:* --name sensors
        """
    ),
    md(
        """
        ## The dashboard
        """
    ),
    code(
        """
        %rtk panel
        """
    ),
    md(
        """
        ## The same figures from code

        `%rtk channels` lists the active channels (`PUBSUB CHANNELS`), `%rtk numsub` counts
        channel subscribers, `%rtk numpat` the patterns, `%rtk subs` this notebook's
        subscriptions and their figures. Note that the sensor channels are missing from the
        first two: Redis counts only *channel* subscribers there, and `sensors` listens
        through the pattern `sensors:*`.
        """
    ),
    code(
        """
        wait_for(
            lambda: shop.stats.delivered >= 10 and sensors.stats.delivered >= 10,
            timeout=20,
            what="10 messages in each subscription",
        )
        %rtk channels
        """
    ),
    code(
        """
        %rtk numsub orders payments sensors:temp
        """
    ),
    code(
        """
        %rtk subs
        """
    ),
    md(
        """
        Rates: messages per channel since the start, and per second over the last seconds
        (from each subscription's DataFrame).
        """
    ),
    code(
        """
        import pandas as pd

        pd.DataFrame({"shop": shop.stats.by_channel, "sensors": sensors.stats.by_channel}).fillna(0)
        """
    ),
    code(
        """
        frames = pd.concat([shop.df, sensors.df])
        per_second = pd.crosstab(frames["time"].dt.floor("1s"), frames["channel"])
        per_second.tail(5)
        """
    ),
    md(
        """
        ## Check
        """
    ),
    code(
        """
        # Check cell: a one-line summary of what this notebook did.
        import json

        summary = {
            "shop_received": shop.stats.received,
            "sensors_received": sensors.stats.received,
            "shop_channels": sorted(shop.stats.by_channel),
            "sensor_patterns": list(sensors.stats.patterns),
            "traffic_running": traffic.is_alive(),
        }
        print(json.dumps(summary))
        """
    ),
    md(
        """
        The traffic and the panels keep running. Stop them with `stop_traffic.set()` and
        `%rtk stop --all`. Next: `exploring_traffic.ipynb`.
        """
    ),
]

# ---------------------------------------------------------------------------------------------
EXPLORING: list[Cell] = [
    md(
        """
        # Exploring captured traffic with pandas

        A subscription's `.df` is an ordinary pandas DataFrame, so everything pandas does
        applies: filter, group by channel, resample into rates, plot, export. First capture
        some traffic, then explore it.
        """
    ),
    LOAD,
    helpers(),
    md(
        """
        ## Capture

        `--max-rows` bounds how many of the newest messages the DataFrame keeps.
        """
    ),
    code(
        """
        %%rtk_subscribe sensors:* orders --name capture --max-rows 5000
        """
    ),
    md(
        """
        Two seconds of traffic whose rate changes over time: temperatures from three sensors
        (busier and busier), humidity at a steady pace, and a trickle of orders.
        `publish_many` sends each batch in one pipelined write.
        """
    ),
    code(
        """
        import random

        from redis_toolkit_nb import RedisToolkit

        random.seed(7)
        sent = {"sensors:temp": 0, "sensors:humidity": 0, "orders": 0}
        with RedisToolkit() as toolkit:
            start = time.monotonic()
            for tick in range(20):
                temps = [
                    {"sensor": f"t{i % 3}", "value": round(random.gauss(21, 1.5), 2)}
                    for i in range(10 * (1 + tick // 5))
                ]
                hums = [{"sensor": "h1", "value": round(random.uniform(30, 60), 1)} for _ in "abcd"]
                orders = [
                    {"order_id": f"A-{tick}-{i}", "amount": round(random.uniform(5, 200), 2)}
                    for i in range(tick % 3)
                ]
                sent["sensors:temp"] += toolkit.publish_many("sensors:temp", temps)
                sent["sensors:humidity"] += toolkit.publish_many("sensors:humidity", hums)
                sent["orders"] += toolkit.publish_many("orders", orders)
                next_tick = start + (tick + 1) * 0.1
                time.sleep(max(0.0, next_tick - time.monotonic()))  # pacing, not a wait

        total = sum(sent.values())
        wait_for(lambda: capture.stats.delivered >= total, what=f"all {total} messages")
        sent
        """
    ),
    md(
        """
        ## Look
        """
    ),
    code(
        """
        df = capture.df
        print(len(df), "rows")
        df.dtypes
        """
    ),
    md(
        """
        `df_expanded()` turns the dict payloads into columns (`sensor`, `value`, `order_id`,
        `amount`), which makes filtering easy:
        """
    ),
    code(
        """
        flat = capture.df_expanded()
        hot = flat[(flat["channel"] == "sensors:temp") & (flat["value"] > 23)]
        hot[["time", "sensor", "value"]].head()
        """
    ),
    md(
        """
        ## Group by channel
        """
    ),
    code(
        """
        by_channel = df.groupby("channel").agg(
            messages=("size", "count"), bytes=("size", "sum"), mean_size=("size", "mean")
        )
        by_channel
        """
    ),
    code(
        """
        flat[flat["channel"] == "sensors:temp"].groupby("sensor")["value"].describe()
        """
    ),
    md(
        """
        ## Resample into rates

        One column per channel (`get_dummies`), summed into 200 ms bins, times 5: messages
        per second over time.
        """
    ),
    code(
        """
        import pandas as pd

        per_channel = pd.get_dummies(df.set_index("time")["channel"])
        rates = per_channel.resample("200ms").sum() * 5
        rates.tail()
        """
    ),
    code(
        """
        import matplotlib.pyplot as plt

        ax = rates.plot(figsize=(8, 3), title="Messages per second, by channel")
        ax.set_ylabel("msg/s")
        plt.show()
        """
    ),
    md(
        """
        ## Export

        `capture.export(path)` writes the DataFrame to `.csv`, `.parquet` or `.json`, with
        each payload as JSON text, so any mix of payload types fits one column. Any other frame
        exports with pandas itself, like the flattened hot readings below. (A temporary folder
        here; use your own path.)
        """
    ),
    code(
        """
        import json
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="rtk-export-") as tmp:
            folder = Path(tmp)
            csv_path = capture.export(folder / "traffic.csv")
            parquet_path = capture.export(folder / "traffic.parquet")
            hot.to_parquet(folder / "hot.parquet", index=False)
            for path in sorted(folder.iterdir()):
                print(f"{path.name}: {path.stat().st_size:,} bytes")

            csv_back = pd.read_csv(csv_path)
            parquet_back = pd.read_parquet(parquet_path)
            hot_back = pd.read_parquet(folder / "hot.parquet")

        first_payload = json.loads(parquet_back["data"].iloc[0])
        first_payload
        """
    ),
    md(
        """
        ## Check
        """
    ),
    code(
        """
        # Check cell: a one-line summary of what this notebook did.
        summary = {
            "sent": sent,
            "rows": len(df),
            "by_channel": by_channel["messages"].to_dict(),
            "hot_readings": len(hot),
            "hot_all_above_23": bool((hot["value"] > 23).all()),
            "peak_temp_rate": int(rates["sensors:temp"].max()),
            "messages_in_rates": int(rates.sum().sum() / 5),
            "csv_rows": len(csv_back),
            "parquet_rows": len(parquet_back),
            "parquet_columns": sorted(parquet_back.columns),
            "hot_rows_exported": len(hot_back),
            "first_payload": first_payload,
        }
        print(json.dumps(summary))
        """
    ),
    code(
        """
        capture.stop()
        """
    ),
]

NOTEBOOKS: dict[str, list[Cell]] = {
    "quickstart": QUICKSTART,
    "patterns_and_routing": PATTERNS,
    "request_response": REQUEST_RESPONSE,
    "notifications_and_chat": NOTIFICATIONS,
    "task_queue": TASK_QUEUE,
    "dashboard": DASHBOARD,
    "exploring_traffic": EXPLORING,
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` as an nbformat node, without outputs, with stable cell ids."""
    nb = new_notebook(
        metadata={
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            },
            "language_info": {"name": "python"},
        }
    )
    for index, (kind, source) in enumerate(NOTEBOOKS[name]):
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        # Stable ids keep a rebuild from rewriting every cell in the diff.
        cell["id"] = f"{name.replace('_', '-')}-{index:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    """The file text ``build(name)`` writes (what the committed .ipynb must equal)."""
    return nbformat.writes(build(name)) + "\n"


def main(argv: list[str]) -> int:
    names = argv or list(NOTEBOOKS)
    for name in names:
        path = HERE / f"{name}.ipynb"
        path.write_text(render(name), encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
