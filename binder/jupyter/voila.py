"""Stand-alone ``voila`` settings: the same kernel culling as the Jupyter server (see
jupyter_server_config.py beside this file; binder/start puts this folder on
JUPYTER_CONFIG_PATH, where ``voila`` looks for voila.py)."""

c = get_config()  # noqa: F821 (defined by the config loader)
load_subconfig("jupyter_server_config.py")  # noqa: F821 (read from this folder)
