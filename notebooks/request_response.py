# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Request-response and acknowledgements
#
# Pub/Sub is one-way and fire-and-forget. Two small patterns make it two-way: a
# **request** carries the channel its answer should go to, and a **message with an
# acknowledgement** is confirmed by its receiver. This notebook uses the core API,
# `RedisToolkit`, the same as in a script or a service.

# %%
# %load_ext redis_toolkit_nb

# %%
import threading
import time
import uuid

from redis_toolkit_nb import RedisToolkit


def wait_for(condition, timeout=10.0, what="the condition"):
    """Poll ``condition()`` until it is true; raise at the deadline instead of hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not met within {timeout:g} s")
        time.sleep(0.02)


# %% [markdown]
# ## The request processor
#
# In production it is another process; here it is a background subscriber in this
# kernel. `RedisToolkit(channels=..., message_handler=...)` returns once the server has
# confirmed the subscription, so nothing published afterwards can slip past it.

# %%
replies = RedisToolkit()  # one connection for every reply, reused


def handle_request(channel, request):
    task = request["data"]
    if task.get("action") == "calculate":
        result = {"status": "success", "result": sum(task["numbers"])}
    else:
        result = {"status": "error", "error": f"unknown action {task.get('action')!r}"}
    replies.publisher(request["response_channel"], result)


processor = RedisToolkit(channels=["requests"], message_handler=handle_request)


# %% [markdown]
# ## The client
#
# Each request gets a unique reply channel; one pattern subscription (`responses:*`)
# receives every reply and wakes the waiting caller. `publisher()` returns how many
# subscribers received the request: **0 means nobody is listening**, so the client fails
# at once instead of waiting for its timeout.

# %%
class NoReceiverError(RuntimeError):
    """Nobody is subscribed to the request channel."""


class RequestResponse:
    def __init__(self):
        self.toolkit = RedisToolkit()
        self.responses = {}
        self.response_listener = RedisToolkit(
            channels=["responses:*"], message_handler=self._handle_response
        )

    def send_request(self, request_data, timeout=5, channel="requests"):
        """Send a request and wait for its response."""
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

# %% [markdown]
# How long does a round trip take? Fifty of them, one after the other:

# %%
start = time.perf_counter()
answers = [
    client.send_request({"action": "calculate", "numbers": list(range(n))})["result"]
    for n in range(50)
]
elapsed = time.perf_counter() - start
print(f"50 round trips in {elapsed * 1000:.0f} ms, {elapsed / 50 * 1000:.2f} ms each")
answers == [sum(range(n)) for n in range(50)]

# %% [markdown]
# A request the processor does not understand gets an error *response*, not silence:

# %%
unknown = client.send_request({"action": "divide", "numbers": [1, 0]})
unknown

# %% [markdown]
# `%rtk numsub` shows who listens where (the client's `responses:*` is a pattern, so it
# counts in `NUMPAT`, not here):

# %%
# %rtk numsub requests nobody-listens

# %% [markdown]
# ## When nobody answers
#
# Nobody listening: the client knows at once. Somebody listening who never answers:
# the client gives up at its timeout.

# %%
try:
    client.send_request({"action": "calculate", "numbers": [1]}, channel="nobody-listens")
except NoReceiverError as exc:
    no_receiver = str(exc)
no_receiver

# %%
silent = RedisToolkit(channels=["silent-requests"], message_handler=lambda ch, req: None)
try:
    client.send_request({"action": "calculate"}, channel="silent-requests", timeout=0.5)
except TimeoutError as exc:
    timed_out = str(exc)
silent.cleanup()
timed_out


# %% [markdown]
# ## Acknowledgements
#
# The sender attaches a message id and an ack channel; the receiver publishes an ack
# **after** processing succeeded. A handler that raises is logged and counted by the
# toolkit (`stats.handler_errors`) and the subscription keeps going, but no ack is sent:
# the sender sees `False` and can retry or alert.

# %%
class ReliableMessaging:
    def __init__(self):
        self.toolkit = RedisToolkit()

    def publish_with_ack(self, channel, message, timeout=5):
        """Publish a message and wait for its acknowledgement."""
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
        """A subscriber that acknowledges every message it processed."""

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

# %%
refused = messaging.publish_with_ack("payments", {"amount": -1}, timeout=1)
wait_for(lambda: payments.stats.handler_errors >= 1, what="the counted handler error")
print("acknowledged:", refused)
when, channel, data, exc, tb = payments.subscriber.failures[-1]
print(f"the handler raised on {channel}: {exc!r}")

# %% [markdown]
# ## The same patterns as calls
#
# The recipes above follow the Pub/Sub guide, whose own versions carry flaws that are easy
# to copy:
#
# - the guide's `publish_with_ack` starts a new subscriber (a connection, two threads, a
#   `SUBSCRIBE` round trip) for **every message** and never stops it: 1,000 acknowledged
#   messages leave 1,000 subscribers behind. The version above stops it in `finally`,
#   but still pays a subscription per message;
# - the guide's `send_request` never removes its waiter on a timeout: `self.responses`
#   grows with every timed-out request (above: popped in `finally`), and its dict is
#   shared by threads without a lock;
# - a reply that arrives after the timeout is silently stored for nobody.
#
# `RedisToolkit` offers both patterns as one call each, on the **same wire format**, so
# code written either way talks to the other. `serve(channel, fn)` answers requests with
# `fn(request["data"])`; `request(channel, data, timeout=5.0)` sends the guide's request
# and returns the reply. One reply subscription per toolkit (`responses:<toolkit id>:*`)
# serves every request, from any number of threads.

# %%
calls = RedisToolkit()


def calculate(task):
    if task.get("action") != "calculate":
        raise ValueError(f"unknown action {task.get('action')!r}")
    return {"status": "success", "result": sum(task["numbers"])}


calc_server = calls.serve("calc", calculate)
served = calls.request("calc", {"action": "calculate", "numbers": [1, 2, 3, 4, 5]})
served

# %% [markdown]
# Old and new code interoperate: the hand-written client above gets its answer from
# `serve()`, and `request()` gets its answer from the hand-written processor.

# %%
interop = {
    "client -> serve()": client.send_request(
        {"action": "calculate", "numbers": [10, 20]}, channel="calc"
    ),
    "request() -> processor": calls.request(
        "requests", {"action": "calculate", "numbers": [7]}
    ),
}
interop

# %% [markdown]
# When `fn` raises, the requester gets `RemoteError` with the exception's **type and
# message** only (the traceback stays in the server's log; its `stats.handler_errors`
# counts it). On the wire it is `{"_rtk_error": {"type": ..., "message": ...}}`, which is
# what a hand-written client receives as its response. No reply in time raises
# `RequestTimeout` (also a `TimeoutError`) and forgets the waiter: a reply that comes
# later is counted in `request_stats.late_replies`, never handed to another request. A
# request that reached no subscriber at all fails at once.

# %%
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

# %% [markdown]
# `%rtk_request CHANNEL PAYLOAD [--timeout S]` is the same call as a magic (PAYLOAD as in
# `%rtk_publish`; a timeout or a remote error stops the notebook like any usage error):

# %%
# magic_reply = %rtk_request calc {"action": "calculate", "numbers": [2, 3]}
magic_reply

# %% [markdown]
# `publish_with_ack(channel, message, timeout=5.0, acks=1)` adds the guide's `_msg_id`
# and `_ack_channel` to a copy of the message, waits for `acks` acknowledgements (one
# ack subscription per toolkit) and returns how many came: 0 at once when no subscriber
# received the message. `ack(data)` sends the acknowledgement for a message that asked
# for one and does nothing otherwise. Three acknowledging receivers, nobody, and the
# hand-written acknowledging subscriber from above:

# %%
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

# %% [markdown]
# ## asyncio
#
# `redis_toolkit_nb.aio.RedisToolkit` has the same calls as coroutines, and a cell can
# `await` them directly (the kernel runs the event loop). `listen()` yields `(channel,
# data)` pairs; leaving the loop unsubscribes.

# %%
from redis_toolkit_nb.aio import RedisToolkit as AsyncToolkit

async with AsyncToolkit() as atk:
    async_reply = await atk.request("calc", {"action": "calculate", "numbers": [4, 5]})
    async with atk.listen("audit", "audit:*") as stream:
        await atk.publisher("audit:logout", {"user": 7})
        async for channel, data in stream:
            heard = [channel, data]
            break
async_reply, heard

# %% [markdown]
# ## Check

# %%
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

# %%
for toolkit in (payments, messaging.toolkit, processor, replies, calls, *auditors):
    toolkit.cleanup()
client.close()

# %% [markdown]
# Pub/Sub stays at-most-once underneath: a request published while the processor is
# restarting is lost. The timeout and the ack are how the sender finds out. Next:
# `notifications_and_chat.ipynb`.
