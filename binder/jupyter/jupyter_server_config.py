"""Jupyter Server settings for Binder: a kernel whose page is gone does not live on.

binder/start puts this folder on JUPYTER_CONFIG_PATH, so JupyterLab and Voila's server
extension (``/voila/render/...``) read it; ``voila.py`` beside it loads it for a stand-alone
``voila``. tests/test_binder.py checks the values.

Why: the dashboard notebook publishes demo traffic from its kernel. Closing a Voila page
normally shuts its kernel down (Voila asks on ``beforeunload``), but a browser that is killed,
or a notebook tab closed without shutting its kernel down, leaves the kernel running. The
culler shuts down such a kernel: one that no page shows any more and that has run for
``cull_idle_timeout`` seconds goes at the next check (every ``cull_interval`` seconds).
"""

c = get_config()  # noqa: F821 (defined by the config loader)

# Only kernels with no page connected are culled (cull_connected=False): an open notebook or
# Voila page keeps its kernel however quiet it is.
c.MappingKernelManager.cull_idle_timeout = 120
c.MappingKernelManager.cull_interval = 30
c.MappingKernelManager.cull_connected = False
c.MappingKernelManager.cull_busy = False

# "Activity" is every message a kernel sends on IOPub, unless both its type and its parent's
# type are listed here. A live panel sends widget updates (comm_msg) from a background thread
# several times a second while traffic flows, and their parent is the last request the kernel
# handled (usually an execute_request): counted, they keep a page-less kernel alive forever
# (measured: last_activity advanced every second, no cull in 30 s). So nothing a kernel
# sends counts: with no page connected, a kernel that has run for cull_idle_timeout seconds
# is shut down at the next check, even in the middle of a cell. (Jupyter Server's defaults,
# then every request a page sends and the comm messages.)
c.MappingKernelManager.untracked_message_types = [
    "comm_info_request",
    "comm_info_reply",
    "kernel_info_request",
    "kernel_info_reply",
    "shutdown_request",
    "shutdown_reply",
    "interrupt_request",
    "interrupt_reply",
    "debug_request",
    "debug_reply",
    "stream",
    "display_data",
    "update_display_data",
    "execute_input",
    "execute_result",
    "error",
    "status",
    "clear_output",
    "debug_event",
    "input_request",
    "input_reply",
    "execute_request",
    "inspect_request",
    "complete_request",
    "history_request",
    "is_complete_request",
    "comm_open",
    "comm_msg",
    "comm_close",
]

# A preheated kernel runs the notebook before anyone opens it: the demo traffic would run
# with no page at all. Kernels start when a page asks for one.
c.VoilaConfiguration.preheat_kernel = False
