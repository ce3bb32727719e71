"""Every example of the Pub/Sub guide (``shared/seed/pubsub-guide.md``), run as written.

Each test keeps the example's code as it is in the guide, with only the import line changed
to ``redis_toolkit_nb``; ``REDIS_URL`` (set by the ``guide_env`` fixture) points
``RedisToolkit()`` at a private server, as it would for a user. Where the guide leaves a
helper undefined (``process_message``, ``allowed_users``...), the test defines it. The
assertions check what the example promises a reader, on both engines.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid

import redis
from conftest import wait_until

from redis_toolkit_nb import RedisOptions, RedisToolkit  # the guide's only changed line


def _printed(capsys, seen: list[str]) -> str:
    """Everything printed so far (capsys hands each chunk out once, so keep them)."""
    seen.append(capsys.readouterr().out)
    return "".join(seen)


def _wait_printed(capsys, text: str, count: int = 1, timeout: float = 10.0) -> str:
    seen: list[str] = []
    wait_until(lambda: _printed(capsys, seen).count(text) >= count, timeout, f"{count} x {text!r}")
    return "".join(seen)


# ---- Quick Start ---------------------------------------------------------------------------
def test_basic_subscriber_and_publisher(guide_env, capsys):
    received = []

    # Define message handler function
    def handle_message(channel, data):
        received.append((channel, data))  # the test's addition: keep what arrived
        print(f"Received message from {channel}:")
        print(f"Content: {data}")

    # Create subscriber
    subscriber = RedisToolkit(
        channels=["news", "updates"],  # Subscribe to multiple channels
        message_handler=handle_message,
    )

    # Subscriber automatically listens for messages in background
    print("Subscriber is listening...")

    # Create publisher
    publisher = RedisToolkit()

    # Send message (auto-serialization)
    message = {
        "type": "breaking_news",
        "title": "Important Update",
        "content": "Redis Toolkit new version released!",
        "timestamp": "2024-01-01 10:00:00",
    }

    receivers = publisher.publisher("news", message)
    print("Message sent")

    # The constructor returned only after the server confirmed both channels, so the
    # message published right after it reaches the subscriber.
    assert receivers == 1
    out = _wait_printed(capsys, f"Content: {message}")
    assert "Received message from news:" in out
    assert received == [("news", message)]
    publisher.publisher("updates", [1, "two", 3.0, None, True])
    wait_until(lambda: len(received) == 2, what="the message on 'updates'")
    assert received[1] == ("updates", [1, "two", 3.0, None, True])
    subscriber.cleanup()
    publisher.cleanup()


# ---- Advanced Subscription Features ----------------------------------------------------------
def test_pattern_subscription_gets_actual_channel_names(guide_env, capsys):
    publisher = RedisToolkit()

    # Use pattern to subscribe to multiple related channels
    def pattern_handler(channel, data):
        print(f"Channel {channel}: {data}")

    # Subscribe to all channels starting with "user:"
    pattern_subscriber = RedisToolkit(
        channels=["user:*"],  # Pattern matching
        message_handler=pattern_handler,
    )

    # All these messages will be received
    publisher.publisher("user:login", {"user_id": 1001})
    publisher.publisher("user:logout", {"user_id": 1002})
    publisher.publisher("user:update", {"user_id": 1003})

    out = _wait_printed(capsys, "Channel user:update: {'user_id': 1003}")
    lines = [line for line in out.splitlines() if line.startswith("Channel ")]
    # The handler sees the channel each message was published to, not the pattern.
    assert lines == [
        "Channel user:login: {'user_id': 1001}",
        "Channel user:logout: {'user_id': 1002}",
        "Channel user:update: {'user_id': 1003}",
    ]
    assert pattern_subscriber.subscriber.patterns == ["user:*"]
    assert pattern_subscriber.stats.by_pattern == {"user:*": 3}
    pattern_subscriber.cleanup()


def test_multi_channel_routing(guide_env, capsys):
    # Route different processing logic based on channel
    def multi_channel_handler(channel, data):
        if channel == "orders":
            process_order(data)
        elif channel == "payments":
            process_payment(data)
        elif channel.startswith("notifications:"):
            send_notification(channel, data)

    def process_order(order_data):
        print(f"Processing order: {order_data['order_id']}")

    def process_payment(payment_data):
        print(f"Processing payment: ${payment_data['amount']}")

    def send_notification(channel, notification):
        user_id = channel.split(":")[1]
        print(f"Sending notification to user {user_id}: {notification['message']}")

    # Subscribe to multiple types of channels
    subscriber = RedisToolkit(
        channels=["orders", "payments", "notifications:*"],
        message_handler=multi_channel_handler,
    )

    publisher = RedisToolkit()
    publisher.publisher("orders", {"order_id": "A-17"})
    publisher.publisher("payments", {"amount": 12.5})
    publisher.publisher("notifications:1001", {"message": "hello"})
    out = _wait_printed(capsys, "Sending notification to user 1001: hello")
    assert "Processing order: A-17" in out
    assert "Processing payment: $12.5" in out
    # Channels and a pattern live in one subscriber.
    assert subscriber.subscriber.channels == ["orders", "payments"]
    assert subscriber.subscriber.patterns == ["notifications:*"]
    assert subscriber.stats.handler_errors == 0


# ---- Two-Way Communication -------------------------------------------------------------------
class RequestResponse:
    def __init__(self):
        self.toolkit = RedisToolkit()
        self.responses = {}

        # 啟動回應監聽器
        self.response_listener = RedisToolkit(
            channels=["responses:*"], message_handler=self._handle_response
        )

    def send_request(self, request_data, timeout=5):
        """Send request and wait for response"""
        request_id = str(uuid.uuid4())
        response_channel = f"responses:{request_id}"

        # Prepare to wait for response
        event = threading.Event()
        self.responses[request_id] = {"event": event, "data": None}

        # Send request
        request = {"id": request_id, "response_channel": response_channel, "data": request_data}
        self.toolkit.publisher("requests", request)

        # Wait for response
        if event.wait(timeout):
            return self.responses[request_id]["data"]
        else:
            raise TimeoutError("Request timeout")

    def _handle_response(self, channel, data):
        """Handle response"""
        request_id = channel.split(":")[1]
        if request_id in self.responses:
            self.responses[request_id]["data"] = data
            self.responses[request_id]["event"].set()


# Request processor (another process)
def request_processor():
    def handle_request(channel, request):
        print(f"Processing request: {request['id']}")

        # Process request
        result = {"status": "success", "result": len(request["data"])}

        # Send response
        toolkit = RedisToolkit()
        toolkit.publisher(request["response_channel"], result)

    processor = RedisToolkit(channels=["requests"], message_handler=handle_request)  # noqa: F841


def test_request_response(guide_env, capsys):
    # The processor's subscriber is made inside a function that keeps no reference to it:
    # it must keep running anyway.
    request_processor()

    # Usage example
    client = RequestResponse()
    response = client.send_request({"action": "calculate", "data": [1, 2, 3, 4, 5]})
    print(f"Received response: {response}")

    # len(request['data']) is the length of the request dict ("action", "data").
    assert response == {"status": "success", "result": 2}
    out = capsys.readouterr().out
    assert "Processing request: " in out
    assert "Received response: {'status': 'success', 'result': 2}" in out
    # A second request on the same objects works too (nothing was torn down in between).
    assert client.send_request([1, 2, 3]) == {"status": "success", "result": 3}


# ---- Real-World Use Cases --------------------------------------------------------------------
class NotificationSystem:
    def __init__(self):
        self.publisher = RedisToolkit()

    def send_notification(self, user_id, notification):
        """Send notification to specific user"""
        channel = f"notifications:user:{user_id}"

        message = {
            "id": str(uuid.uuid4()),
            "type": notification["type"],
            "title": notification["title"],
            "body": notification["body"],
            "timestamp": time.time(),
            "read": False,
        }

        self.publisher.publisher(channel, message)

        # Also send to global channel for monitoring
        self.publisher.publisher(
            "notifications:all", {"user_id": user_id, "notification_id": message["id"]}
        )

    def broadcast(self, notification):
        """Broadcast notification to all users"""
        self.publisher.publisher(
            "notifications:broadcast",
            {
                "id": str(uuid.uuid4()),
                "title": notification["title"],
                "body": notification["body"],
                "timestamp": time.time(),
            },
        )


# Client-side subscription
class UserNotificationClient:
    def __init__(self, user_id):
        self.user_id = user_id

        def handle_notification(channel, data):
            if channel == f"notifications:user:{user_id}":
                self.show_personal_notification(data)
            elif channel == "notifications:broadcast":
                self.show_broadcast_notification(data)

        self.subscriber = RedisToolkit(
            channels=[f"notifications:user:{user_id}", "notifications:broadcast"],
            message_handler=handle_notification,
        )

    def show_personal_notification(self, notification):
        print(f"[Personal] {notification['title']}: {notification['body']}")

    def show_broadcast_notification(self, notification):
        print(f"[Broadcast] {notification['title']}: {notification['body']}")


def test_notification_system(guide_env, capsys):
    monitored = []
    monitor = RedisToolkit(
        channels=["notifications:all"], message_handler=lambda ch, data: monitored.append(data)
    )

    # Usage example
    notifier = NotificationSystem()
    client = UserNotificationClient(user_id=1001)
    other = UserNotificationClient(user_id=2002)

    # Send personal notification
    notifier.send_notification(
        1001, {"type": "order", "title": "Order Update", "body": "Your order has been shipped"}
    )

    # Broadcast notification
    notifier.broadcast(
        {
            "title": "System Maintenance",
            "body": "System will undergo maintenance at 10 PM tonight",
        }
    )

    broadcast = "[Broadcast] System Maintenance: System will undergo maintenance at 10 PM tonight"
    out = _wait_printed(capsys, broadcast, count=2)  # both users get the broadcast
    # Only user 1001 gets the personal one.
    assert out.count("[Personal] Order Update: Your order has been shipped") == 1
    assert client.subscriber.stats.delivered == 2
    assert other.subscriber.stats.delivered == 1
    wait_until(lambda: monitored, what="the monitoring message")
    assert monitored[0]["user_id"] == 1001
    assert uuid.UUID(monitored[0]["notification_id"])
    monitor.cleanup()


class ChatRoom:
    def __init__(self, room_id):
        self.room_id = room_id
        self.toolkit = RedisToolkit()
        self.channel = f"chat:room:{room_id}"

    def join(self, user_name, on_message):
        """Join chat room"""
        # Send join message
        self.toolkit.publisher(
            self.channel, {"type": "join", "user": user_name, "timestamp": time.time()}
        )

        # Subscribe to chat room channel
        def message_handler(channel, data):
            on_message(data)

        subscriber = RedisToolkit(channels=[self.channel], message_handler=message_handler)

        return subscriber

    def send_message(self, user_name, message):
        """Send message"""
        self.toolkit.publisher(
            self.channel,
            {"type": "message", "user": user_name, "text": message, "timestamp": time.time()},
        )

    def leave(self, user_name):
        """Leave chat room"""
        self.toolkit.publisher(
            self.channel, {"type": "leave", "user": user_name, "timestamp": time.time()}
        )


def display_message(data):
    if data["type"] == "join":
        print(f"*** {data['user']} joined the chat ***")
    elif data["type"] == "message":
        print(f"{data['user']}: {data['text']}")
    elif data["type"] == "leave":
        print(f"*** {data['user']} left the chat ***")


def test_chat_room(guide_env, capsys):
    # Create chat room
    room = ChatRoom("general")

    # Alice joins
    alice_sub = room.join("Alice", display_message)
    room.send_message("Alice", "Hello everyone!")

    # Bob joins
    bob_sub = room.join("Bob", display_message)
    room.send_message("Bob", "Hi Alice!")
    room.leave("Alice")

    out = _wait_printed(capsys, "*** Alice left the chat ***", count=2)
    # Alice's join went out before anyone listened; Bob's reached Alice; Bob joined after
    # Alice's greeting, so only Alice saw it; both saw Bob's reply and Alice leaving.
    assert "*** Alice joined the chat ***" not in out
    assert out.count("*** Bob joined the chat ***") == 1
    assert out.count("Alice: Hello everyone!") == 1
    assert out.count("Bob: Hi Alice!") == 2
    assert alice_sub.stats.delivered == 4
    assert bob_sub.stats.delivered == 2
    assert [m.data["type"] for m in alice_sub.subscriber.buffer.snapshot()] == [
        "message",
        "join",
        "message",
        "leave",
    ]


class TaskQueue:
    def __init__(self, queue_name):
        self.queue_name = queue_name
        self.toolkit = RedisToolkit()
        self.channel = f"tasks:{queue_name}"

    def submit_task(self, task_type, payload, priority="normal"):
        """Submit task"""
        task = {
            "id": str(uuid.uuid4()),
            "type": task_type,
            "payload": payload,
            "priority": priority,
            "submitted_at": time.time(),
            "status": "pending",
        }

        # Send to different channels based on priority
        channel = f"{self.channel}:{priority}"
        self.toolkit.publisher(channel, task)

        return task["id"]

    def create_worker(self, worker_id, task_handler):
        """Create worker"""

        def handle_task(channel, task):
            print(f"Worker {worker_id} processing task: {task['id']}")

            try:
                # Update task status
                task["status"] = "processing"
                task["worker_id"] = worker_id
                task["started_at"] = time.time()

                # Execute task
                result = task_handler(task)

                # Complete task
                task["status"] = "completed"
                task["result"] = result
                task["completed_at"] = time.time()

                # Publish completion event
                self.toolkit.publisher("tasks:completed", task)

            except Exception as e:
                # Task failed
                task["status"] = "failed"
                task["error"] = str(e)
                task["failed_at"] = time.time()

                # Publish failure event
                self.toolkit.publisher("tasks:failed", task)

        # Subscribe to tasks of different priorities
        return RedisToolkit(
            channels=[f"{self.channel}:high", f"{self.channel}:normal", f"{self.channel}:low"],
            message_handler=handle_task,
        )


def test_task_queue_workers(guide_env, capsys):
    completed, failed = [], []
    results = RedisToolkit(
        channels=["tasks:completed", "tasks:failed"],
        message_handler=lambda ch, task: (completed if ch == "tasks:completed" else failed).append(
            task
        ),
    )

    # Usage example
    queue_ = TaskQueue("image_processing")

    # Define task handler function
    def process_image(task):
        print(f"Processing image: {task['payload']['image_path']}")
        time.sleep(0.2)  # Simulate processing (the guide sleeps 2 s)
        return {"status": "processed", "size": "1024x768"}

    # Create workers
    worker1 = queue_.create_worker("worker-1", process_image)
    worker2 = queue_.create_worker("worker-2", process_image)

    # Submit task
    task_id = queue_.submit_task(
        "resize", {"image_path": "/images/photo.jpg", "width": 800, "height": 600}, priority="high"
    )

    print(f"Task submitted: {task_id}")

    # Pub/Sub is fan-out: both workers get the task, both complete it and say so.
    wait_until(lambda: len(completed) == 2, what="both workers' completion events")
    assert failed == []
    assert sorted(t["worker_id"] for t in completed) == ["worker-1", "worker-2"]
    for task in completed:
        assert task["id"] == task_id
        assert task["status"] == "completed"
        assert task["priority"] == "high"
        assert task["result"] == {"status": "processed", "size": "1024x768"}
        assert task["submitted_at"] <= task["started_at"] <= task["completed_at"]
    out = capsys.readouterr().out
    assert f"Worker worker-1 processing task: {task_id}" in out
    assert f"Worker worker-2 processing task: {task_id}" in out
    assert out.count("Processing image: /images/photo.jpg") == 2

    # A task that fails is reported on tasks:failed by each worker.
    queue_.submit_task("resize", {"no_image_path": True}, priority="low")
    wait_until(lambda: len(failed) == 2, what="both workers' failure events")
    assert all(t["status"] == "failed" and "image_path" in t["error"] for t in failed)
    for toolkit in (worker1, worker2, results):
        toolkit.cleanup()


# ---- Error Handling and Reconnection ---------------------------------------------------------
def test_resilient_handler_and_reconnection(guide_env, admin, capsys):
    handled = []

    def process_message(data):
        if data.get("bad"):
            raise ValueError(f"cannot process {data}")
        handled.append(data)

    # Configure reconnection options
    options = RedisOptions(
        subscriber_retry_delay=5,  # Reconnection delay (seconds)
        is_logger_info=True,  # Enable logging
    )

    def resilient_handler(channel, data):
        try:
            # Process message
            process_message(data)
        except Exception as e:
            # Log error but don't interrupt subscription
            print(f"Error processing message: {e}")

    # Subscriber automatically handles disconnection and reconnection
    subscriber = RedisToolkit(
        channels=["important_events"], message_handler=resilient_handler, options=options
    )

    publisher = RedisToolkit()
    publisher.publisher("important_events", {"bad": True})
    publisher.publisher("important_events", {"n": 1})
    wait_until(lambda: handled == [{"n": 1}], what="the message after the failing one")
    assert "Error processing message: cannot process {'bad': True}" in capsys.readouterr().out

    # Drop the connection: it comes back by itself and the channel is resubscribed.
    killed = admin.client_kill_filter(_type="pubsub")
    assert killed >= 1
    wait_until(lambda: subscriber.stats.reconnects == 1, what="the reconnect")
    wait_until(lambda: subscriber.subscriber.channels == ["important_events"], what="resubscribe")
    assert publisher.publisher("important_events", {"n": 2}) == 1
    wait_until(lambda: handled == [{"n": 1}, {"n": 2}], what="the message after reconnecting")
    subscriber.cleanup()


class ReliableMessaging:
    def __init__(self):
        self.toolkit = RedisToolkit()

    def publish_with_ack(self, channel, message, timeout=5):
        """Publish message and wait for acknowledgment"""
        msg_id = str(uuid.uuid4())
        ack_channel = f"ack:{msg_id}"

        # Prepare to receive acknowledgment
        ack_received = threading.Event()

        def ack_handler(ch, data):
            if data.get("msg_id") == msg_id:
                ack_received.set()

        ack_subscriber = RedisToolkit(  # noqa: F841
            channels=[ack_channel], message_handler=ack_handler
        )

        # Send message
        message["_msg_id"] = msg_id
        message["_ack_channel"] = ack_channel
        self.toolkit.publisher(channel, message)

        # Wait for acknowledgment
        if ack_received.wait(timeout):
            print(f"Message {msg_id} acknowledged")
            return True
        else:
            print(f"Message {msg_id} not acknowledged")
            return False

    def create_ack_subscriber(self, channel):
        """Create subscriber that sends acknowledgments"""

        def handler_with_ack(ch, data):
            try:
                # Process message
                process_message(data)

                # Send acknowledgment
                if "_msg_id" in data and "_ack_channel" in data:
                    self.toolkit.publisher(
                        data["_ack_channel"], {"msg_id": data["_msg_id"], "status": "acknowledged"}
                    )
            except Exception as e:
                print(f"Processing failed: {e}")

        return RedisToolkit(channels=[channel], message_handler=handler_with_ack)


processed_for_ack: list = []


def process_message(data):
    """The guide leaves this undefined; here it records what it was given."""
    processed_for_ack.append(data)


def test_message_acknowledgement(guide_env, capsys):
    processed_for_ack.clear()
    messaging = ReliableMessaging()
    consumer = messaging.create_ack_subscriber("orders:ack")

    assert messaging.publish_with_ack("orders:ack", {"order": 42}) is True
    assert "acknowledged" in capsys.readouterr().out
    assert processed_for_ack[0]["order"] == 42
    # Nobody listening: no acknowledgement, and the caller is told so.
    assert messaging.publish_with_ack("nobody:listens", {"order": 43}, timeout=0.3) is False
    assert "not acknowledged" in capsys.readouterr().out
    consumer.cleanup()


# ---- Performance Optimization ----------------------------------------------------------------
def test_batch_publish_1000_in_order(guide_env):
    got = []
    subscriber = RedisToolkit(
        channels=["bulk_updates"], message_handler=lambda ch, data: got.append(data)
    )

    # Batch send multiple messages
    def batch_publish(channel, messages):
        toolkit = RedisToolkit()
        pipe = toolkit.client.pipeline()

        for msg in messages:
            serialized = json.dumps(msg)
            pipe.publish(channel, serialized)

        pipe.execute()

    # Usage example
    messages = [{"id": i, "data": f"Message {i}"} for i in range(1000)]

    batch_publish("bulk_updates", messages)

    # Published by raw redis-py with json.dumps, decoded naturally, all there, in order.
    wait_until(lambda: len(got) == 1000, what="1,000 messages")
    assert got == messages
    stats = subscriber.stats
    assert stats.received == stats.delivered == 1000
    assert stats.dropped == stats.decode_errors == stats.raw_payloads == 0
    subscriber.cleanup()


def test_message_filtering(guide_env):
    important = []
    allowed_users = {7}

    def process_important_message(data):
        important.append(data)

    def filtered_handler(channel, data):
        # Filter messages in handler
        if data.get("priority") != "high":
            return  # Ignore non-high priority messages

        if data.get("user_id") not in allowed_users:
            return  # Ignore unauthorized users

        # Process messages that meet criteria
        process_important_message(data)

    sub = RedisToolkit(channels=["system:alerts:critical"], message_handler=filtered_handler)
    pub = RedisToolkit()
    for msg in (
        {"priority": "low", "user_id": 7},
        {"priority": "high", "user_id": 8},
        {"priority": "high", "user_id": 7, "n": 1},
    ):
        pub.publisher("system:alerts:critical", msg)
    wait_until(lambda: sub.stats.delivered == 3, what="three messages")
    assert important == [{"priority": "high", "user_id": 7, "n": 1}]
    sub.cleanup()


# ---- Best Practices --------------------------------------------------------------------------
def test_non_blocking_handler_and_standard_format(guide_env):
    task_queue: queue.Queue = queue.Queue()

    def non_blocking_handler(channel, data):
        # Put time-consuming operations in queue
        task_queue.put({"channel": channel, "data": data})
        # Return immediately, don't block subscription

    subscriber = RedisToolkit(
        channels=["users:1001:notifications"], message_handler=non_blocking_handler
    )
    # Unified message format
    message = {
        "id": str(uuid.uuid4()),
        "type": "event_type",
        "timestamp": time.time(),
        "version": "1.0",
        "data": {"k": [1, 2]},
    }
    RedisToolkit().publisher("users:1001:notifications", message)
    item = task_queue.get(timeout=10)
    assert item == {"channel": "users:1001:notifications", "data": message}
    subscriber.cleanup()


def test_resource_cleanup(guide_env, no_thread_leaks):
    admin = redis.Redis.from_url(guide_env.url)
    before = len(admin.client_list(_type="pubsub"))
    # Properly clean up subscriber
    try:
        # Use subscriber
        subscriber = RedisToolkit(channels=["orders:status:pending"], message_handler=print)
        assert len(admin.client_list(_type="pubsub")) == before + 1
    finally:
        # Ensure cleanup
        subscriber.cleanup()

    assert not subscriber.subscriber.running
    assert len(admin.client_list(_type="pubsub")) == before
    assert admin.pubsub_numsub("orders:status:pending") == [(b"orders:status:pending", 0)]
    subscriber.cleanup()  # idempotent
    admin.close()
