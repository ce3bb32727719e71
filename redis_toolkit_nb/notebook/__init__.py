"""The notebook layer: ``%load_ext redis_toolkit_nb`` registers the magics.

Magics: ``%rtk_connect [URL]``, ``%rtk_publish CHANNEL PAYLOAD``, ``%%rtk_subscribe
CHANNEL_OR_PATTERN ...`` and ``%rtk SUBCOMMAND`` (see ``magics``). Settings:
``%config RtkMagics``. ``%unload_ext``/``%reload_ext`` stop every subscription it started.
"""

from __future__ import annotations

import logging
from typing import Any

from .dashboard import Dashboard
from .logs import LOG
from .magics import RtkMagics
from .refresher import REFRESHER
from .subscription import Subscription

__all__ = [
    "Dashboard",
    "RtkMagics",
    "Subscription",
    "load_ipython_extension",
    "unload_ipython_extension",
]

_loaded: dict[int, RtkMagics] = {}


def empty_subscribe_cell(lines: list[str]) -> list[str]:
    """Input transformer: a ``%%rtk_subscribe ...`` cell with no body becomes the line magic
    ``%rtk_subscribe ...`` (IPython refuses a cell magic with an empty body)."""
    if lines and lines[0].startswith("%%rtk_subscribe") and not "".join(lines[1:]).strip():
        return [lines[0][1:]]
    return lines


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics on ``ipython`` (connects lazily, on first use)."""
    if id(ipython) in _loaded:
        return
    magics = RtkMagics(ipython)
    ipython.register_magics(magics)
    if empty_subscribe_cell not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(empty_subscribe_cell)
    core_logger = logging.getLogger("redis_toolkit_nb")
    if LOG not in core_logger.handlers:
        core_logger.addHandler(LOG)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """Stop every subscription the extension started, the refresher, and the connection."""
    magics = _loaded.pop(id(ipython), None)
    if magics is None:
        return
    try:
        magics.state.close()
    finally:
        if not _loaded:
            REFRESHER.stop()
            logging.getLogger("redis_toolkit_nb").removeHandler(LOG)
        if empty_subscribe_cell in ipython.input_transformers_cleanup:
            ipython.input_transformers_cleanup.remove(empty_subscribe_cell)
        if magics in ipython.configurables:
            ipython.configurables.remove(magics)
        table = ipython.magics_manager.magics
        for kind, names in magics.magics.items():
            for name in names:
                table[kind].pop(name, None)
