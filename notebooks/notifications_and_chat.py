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
# # Real-time notifications and a chat room
#
# Two classic uses of Pub/Sub: pushing notifications to users (personal ones, and
# broadcasts to all), and a chat room where everyone in the room sees every message.

# %%
# %load_ext redis_toolkit_nb

# %%
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
# ## Notifications
#
# The sender publishes a personal notification to `notifications:user:<id>`, plus a
# short record to `notifications:all` for monitoring; broadcasts go to
# `notifications:broadcast`.

# %%
class NotificationSystem:
    def __init__(self):
        self.publisher = RedisToolkit()

    def send_notification(self, user_id, notification):
        """Send a notification to one user."""
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
        """Send a notification to every user."""
        self.publisher.publisher(
            "notifications:broadcast",
            {
                "id": str(uuid.uuid4()),
                "title": notification["title"],
                "body": notification["body"],
                "timestamp": time.time(),
            },
        )


# %% [markdown]
# User 1001's app subscribes to its own channel and to broadcasts; the cell body turns
# each message into the line the app would show. A second subscription plays the
# operator watching `notifications:all`.

# %%
inbox = []

# %%
# %%rtk_subscribe notifications:user:1001 notifications:broadcast --name user_1001
kind = "Personal" if channel == "notifications:user:1001" else "Broadcast"
inbox.append(f"[{kind}] {data['title']}: {data['body']}")

# %%
# %%rtk_subscribe notifications:all --name monitor

# %%
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

# %%
monitor.df_expanded()


# %% [markdown]
# ## A chat room
#
# Everyone in room `general` subscribes to `chat:room:general`; joining, talking and
# leaving are messages on it. A pattern subscription `chat:room:*` gives a moderator's
# live view of every room.

# %%
# %%rtk_subscribe chat:room:* --name rooms

# %%
class ChatRoom:
    def __init__(self, room_id):
        self.room_id = room_id
        self.toolkit = RedisToolkit()
        self.channel = f"chat:room:{room_id}"

    def join(self, user_name, on_message):
        """Announce the user, then subscribe them to the room."""
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
    """A chat window: turns room messages into lines (a list stands in for the UI)."""

    def display_message(data):
        if data["type"] == "join":
            lines.append(f"*** {data['user']} joined the chat ***")
        elif data["type"] == "message":
            lines.append(f"{data['user']}: {data['text']}")
        elif data["type"] == "leave":
            lines.append(f"*** {data['user']} left the chat ***")

    return display_message


# %%
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
print("Alice sees:", *alice_screen, sep="\n  ")
print("Bob sees:", *bob_screen, sep="\n  ")

# %% [markdown]
# Bob never sees "Hello everyone!": Pub/Sub keeps no history, a subscriber gets only
# what is published **after** it subscribed. (Alice does not see her own join either:
# she announces it before subscribing.) Keep history elsewhere (a Redis list or stream)
# if late joiners need it.
#
# Join the room yourself: type below and press *Send*; the `rooms` panel above and
# Alice's screen update.

# %%
import ipywidgets as widgets

text = widgets.Text(placeholder="Say something", description="You:")
send = widgets.Button(description="Send", button_style="primary")


def on_send(_button):
    if text.value.strip():
        room.send_message("You", text.value)
        text.value = ""


send.on_click(on_send)
widgets.HBox([text, send])

# %% [markdown]
# ## Check

# %%
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

# %% [markdown]
# `alice` and the `rooms` panel keep running so you can chat; stop them with
# `alice.cleanup()` and `%rtk stop --all`. Next: `task_queue.ipynb`.
