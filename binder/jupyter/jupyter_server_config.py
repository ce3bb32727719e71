"""Jupyter Server settings for Binder: a kernel whose page is gone does not live on.

binder/start puts this folder on JUPYTER_CONFIG_PATH, so JupyterLab and Voila's server
extension (``/voila/render/...``) read it; ``voila.py`` beside it loads it for a stand-alone
``voila``. tests/test_binder.py checks the values.

Why: the dashboard notebook publishes demo traffic from its kernel. Closing a Voila page
normally shuts its kernel down (Voila asks on ``beforeunload``), but a browser that is killed,
or a notebook tab closed without shutting its kernel down, leaves the kernel running. The
culler shuts down such a kernel once it has had no page connected and no activity for
``cull_idle_timeout`` seconds.
"""

c = get_config()  # noqa: F821 (defined by the config loader)

# Only kernels with no page connected are culled (cull_connected=False): an open notebook or
# Voila page keeps its kernel however quiet it is.
c.MappingKernelManager.cull_idle_timeout = 120
c.MappingKernelManager.cull_interval = 30
c.MappingKernelManager.cull_connected = False
c.MappingKernelManager.cull_busy = False

# Activity is any kernel message the server does not list here. A live panel sends widget
# updates (comm messages) from its kernel by itself, several times a second while traffic
# flows, which would count as activity forever: with no page connected nobody sees them, so
# they do not keep a kernel alive. (Jupyter Server's own defaults, then the comm messages.)
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
    "comm_open",
    "comm_msg",
    "comm_close",
]

# A preheated kernel runs the notebook before anyone opens it: the demo traffic would run
# with no page at all. Kernels start when a page asks for one.
c.VoilaConfiguration.preheat_kernel = False
