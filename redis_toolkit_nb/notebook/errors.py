"""Handler errors of a ``%%rtk_subscribe`` cell body, with the body line they came from.

The magic compiles the body under a file name of its own and registers its source with
``linecache`` (``register_body``), so a traceback shows the body's lines like any file's, and
the panel can name the line that raised.
"""

from __future__ import annotations

import linecache
import re
from html import escape
from typing import Any

from .snapshot import clock


def body_filename(name: str) -> str:
    """The file name a subscription's cell body is compiled with."""
    return f"<rtk_subscribe {name} cell body>"


def register_body(filename: str, source: str) -> None:
    """Let ``linecache`` (hence tracebacks and debuggers) read the cell body's lines. An entry
    without a modification time is never invalidated by ``linecache.checkcache``."""
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)


def body_line(traceback_text: str, filename: str | None) -> tuple[int, str] | None:
    """(line number, source line) of the innermost cell-body frame of a traceback."""
    if not filename:
        return None
    found = re.findall(rf'File "{re.escape(filename)}", line (\d+)', traceback_text)
    if not found:
        return None
    lineno = int(found[-1])
    return lineno, linecache.getline(filename, lineno).strip()


def failure_html(
    failure: tuple[float, Any, Any, BaseException, str], filename: str | None, tz: str = "UTC"
) -> str:
    """One log entry: time, channel, the error, the body line; the traceback expandable."""
    t, channel, _data, exc, tb = failure
    where = body_line(tb, filename)
    at = f" · cell body line {where[0]}: <code>{escape(where[1])}</code>" if where else ""
    message = str(exc)
    if len(message) > 160:
        message = message[:159] + "\u2026"
    return (
        f'<details class="rtk-failure" style="display:inline-block"><summary style="color:#c00">'
        f"{clock(t, tz)} {escape(str(channel))}: handler error {escape(type(exc).__name__)}: "
        f'{escape(message)}{at}</summary><pre style="margin:0 0 0 1em;white-space:pre-wrap">'
        f"{escape(tb)}</pre></details>"
    )
