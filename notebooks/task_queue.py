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
# # A task queue with workers
#
# Producers publish tasks to `tasks:<queue>:<priority>`; workers subscribe, do the work
# and publish the outcome to `tasks:completed` or `tasks:failed`. One thing to know
# first: **Pub/Sub delivers every message to every subscriber**. Two workers on the same
# channels would both run every task, so each worker first *claims* the task with an
# atomic `SET ... NX`; exactly one claim succeeds.

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


# %%
class TaskQueue:
    def __init__(self, queue_name):
        self.queue_name = queue_name
        self.toolkit = RedisToolkit()
        self.channel = f"tasks:{queue_name}"

    def submit_task(self, task_type, payload, priority="normal"):
        """Publish a task; return its id."""
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
        """A worker: a background subscriber to every priority of this queue."""

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


# %% [markdown]
# Watch the queue: one panel for incoming tasks (a pattern over every priority), one for
# the outcomes.

# %%
# %%rtk_subscribe tasks:image_processing:* --name incoming

# %%
# %%rtk_subscribe tasks:completed tasks:failed --name outcomes

# %% [markdown]
# Two workers. The handler runs on the subscriber's own thread, so slow work never
# stops the socket from being read; the simulated work below takes 20 ms per task.

# %%
def process_image(task):
    payload = task["payload"]
    time.sleep(0.02)  # simulated work (a resize, say), not a wait
    return {"status": "processed", "size": f"{payload['width']}x{payload['height']}"}


queue = TaskQueue("image_processing")
worker1 = queue.create_worker("worker-1", process_image)
worker2 = queue.create_worker("worker-2", process_image)

# %%
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

# %% [markdown]
# The outcomes, flattened with `df_expanded()`: who did what, and how long it waited.

# %%
done = outcomes.df_expanded()
done["waited_ms"] = (done["started_at"] - done["submitted_at"]) * 1000
done.groupby(["status", "worker_id"]).agg(
    tasks=("id", "count"), waited_ms=("waited_ms", "mean")
)

# %%
wait_for(lambda: min(worker1.stats.received, worker2.stats.received) >= 25)
print("worker-1 received", worker1.stats.received, "tasks")
print("worker-2 received", worker2.stats.received, "tasks")
print("tasks submitted:", len(task_ids) + 1, "- outcomes:", len(done))
done.loc[done["status"] == "failed", ["id", "error"]]

# %% [markdown]
# ## Check

# %%
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

# %%
for toolkit in (worker1, worker2, queue.toolkit):
    toolkit.cleanup()
# %rtk stop --all

# %% [markdown]
# Pub/Sub suits workers that are online; it keeps nothing for a worker that is down.
# For durable queues (retries, a backlog while workers restart) use Redis lists or
# streams. Next: `dashboard.ipynb`.
