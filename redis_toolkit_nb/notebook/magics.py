"""The magics: ``%rtk_connect``, ``%rtk_publish``, ``%%rtk_subscribe``, ``%rtk_request`` and
``%rtk``.

Each magic parses its line (errors become ``UsageError``: a short message, no traceback, and
Run All stops) and makes one call into ``NotebookState``, ``Subscription`` or the core.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Float, Int, TraitError, Unicode, observe, validate

from .. import ToolkitError, mask_url
from . import expect, keyspace, parsing, replay
from .errors import body_filename, register_body
from .publishing import publish_repeated
from .refresher import REFRESHER
from .state import NotebookState, default_name


def _usage_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the toolkit's errors (bad URL, unreachable server, refused subscription) into
    ``UsageError``; their messages never hold a password."""

    @functools.wraps(method)
    def wrapper(self: RtkMagics, *args: Any) -> Any:
        try:
            return method(self, *args)
        except ToolkitError as exc:
            raise UsageError(str(exc)) from None
        except redis.RedisError as exc:
            url = self.state.url or "Redis"
            text = self.state._toolkit.scrub(exc) if self.state._toolkit else str(exc)
            raise UsageError(f"{type(exc).__name__} from {mask_url(url)}: {text}") from None

    return wrapper


@magics_class
class RtkMagics(Magics):
    """Redis Pub/Sub in the notebook. ``%config RtkMagics`` lists the settings."""

    default_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="URL to connect to; None: $REDIS_URL, else redis://localhost:6379/0, else the "
        "embedded server.",
    )
    max_rows = Int(
        1000, config=True, help="Messages each subscription keeps (its DataFrame's rows)."
    )
    refresh_interval = Float(
        0.25, config=True, help="Seconds between refreshes of the live panels."
    )
    show_connection = Bool(
        True,
        config=True,
        help="Print the masked URL, server and version on the first connection.",
    )
    log_size = Int(50, config=True, help="Entries in each panel's log (one page of it).")
    timezone = Unicode(
        "UTC",
        config=True,
        help="Time zone of the DataFrames' time column and the panels' clocks (an IANA name "
        "such as 'Europe/Paris'; 'UTC' by default).",
    )

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        namespace = shell.user_ns if shell is not None else {}
        self.state = NotebookState(
            namespace, default_url=lambda: self.default_url, timezone=lambda: self.timezone
        )
        self.dashboard: Any = None  # the latest %rtk panel
        REFRESHER.interval = self.refresh_interval

    @validate("refresh_interval")
    def _check_interval(self, proposal: dict[str, Any]) -> float:
        if proposal["value"] <= 0:
            raise TraitError(f"RtkMagics.refresh_interval must be > 0, not {proposal['value']}")
        return proposal["value"]

    @validate("timezone")
    def _check_timezone(self, proposal: dict[str, Any]) -> str:
        try:
            ZoneInfo(proposal["value"])
        except (ZoneInfoNotFoundError, ValueError):
            raise TraitError(
                f"RtkMagics.timezone: unknown time zone {proposal['value']!r} (an IANA name "
                "such as 'UTC' or 'Europe/Paris')"
            ) from None
        return proposal["value"]

    @observe("refresh_interval")
    def _interval_changed(self, change: dict[str, Any]) -> None:
        REFRESHER.interval = change["new"]

    def _ensure_connected(self) -> None:
        """Connect on first use, saying where when ``show_connection`` is on."""
        if self.state._toolkit is None:
            info = self.state.server_info()
            if self.show_connection:
                print(_describe(info))

    # ---- %rtk_connect ------------------------------------------------------------------------
    @line_magic
    @_usage_errors
    @magic_arguments(name="rtk_connect")
    @argument("url", nargs="?", default=None, metavar="URL")
    @argument(
        "--embedded-cluster",
        action="store_true",
        dest="cluster",
        help="start a private Redis Cluster of the bundled Valkey on loopback (once; it stops "
        "with the kernel) and connect to it; returns it (move_slot, failover, stop)",
    )
    @argument("--masters", type=parsing.positive_int, default=3, metavar="N", help="(default 3)")
    @argument(
        "--replicas",
        type=int,
        default=0,
        metavar="N",
        help="replicas per master (default 0; 1 to demonstrate a failover)",
    )
    def rtk_connect(self, line: str) -> Any:
        """(Re)connect to URL (default: $REDIS_URL, else localhost, else the embedded server);
        show the masked URL, server name and version."""
        args = parsing.parse_magic_args(RtkMagics.rtk_connect, line, "%rtk_connect")
        if not args.cluster:
            if "--masters" in line or "--replicas" in line:
                raise UsageError("%rtk_connect: --masters/--replicas go with --embedded-cluster")
            print(_describe(self.state.connect(args.url)))
            return None
        if args.url is not None or args.replicas < 0:
            raise UsageError(
                "usage: %rtk_connect --embedded-cluster [--masters N] [--replicas N] (no URL)"
            )
        cluster = self.state.connect_embedded_cluster(args.masters, args.replicas)
        info = self.state.server_info()
        print(
            f"{_describe(info)}: an embedded cluster of {args.masters} masters x "
            f"{args.replicas} replicas (nodes {', '.join(str(p) for p in cluster.ports)})"
        )
        return cluster

    # ---- %rtk_publish ------------------------------------------------------------------------
    @no_var_expand
    @line_magic
    @_usage_errors
    def rtk_publish(self, line: str) -> Any:
        """%rtk_publish [--text] [--sharded] [--stamp FIELD] [--count N] [--rate R] CHANNEL PAYLOAD

        PAYLOAD is a Python expression evaluated in the notebook's namespace (a dict literal,
        a variable, a number, an f-string); text that is not an expression is sent as JSON if
        it is JSON, else as a plain string, but text that looks like JSON or a literal (starts
        with a bracket, quote or digit) and does not parse is an error; ``--text`` sends
        PAYLOAD as typed. IPython's ``{var}``/``$var`` expansion is off here (JSON stays
        intact); use an f-string to insert values. Returns the number of receivers; with
        --count/--rate, a report (``i`` is the message index inside PAYLOAD). ``--sharded``
        publishes to a sharded channel (SPUBLISH, to the node owning its slot on a cluster).
        ``--stamp ts`` sets the field ``ts`` of (a copy of) a dict PAYLOAD to the publish time
        (``time.time()``), for ``%%rtk_subscribe ... --latency-field ts``.
        """
        args = parsing.parse_publish(line)
        namespace = self.shell.user_ns if self.shell else {}
        payload = parsing.Payload(args.payload, namespace, as_text=args.text)
        self._ensure_connected()
        tk = self.state.toolkit
        if not args.repeat:
            # A single publish binds no index: ``i`` in PAYLOAD is the user's own variable.
            return tk.publish(
                args.channel, payload.value(None), sharded=args.sharded, stamp=args.stamp
            )
        return publish_repeated(
            tk, args.channel, payload, args.count, args.rate, sharded=args.sharded, stamp=args.stamp
        )

    # ---- %%rtk_subscribe ---------------------------------------------------------------------
    @no_var_expand
    @line_cell_magic
    @_usage_errors
    @magic_arguments(name="%rtk_subscribe")  # the help adds the other %
    @argument("names", nargs="+", metavar="CHANNEL_OR_PATTERN")
    @argument("--name", default=None, help="variable the subscription is bound to")
    @argument(
        "--max-rows",
        type=parsing.positive_int,
        default=None,
        dest="max_rows",
        metavar="N",
        help="messages kept (the DataFrame's rows; default %%config RtkMagics.max_rows)",
    )
    @argument(
        "--decode",
        choices=("auto", "json", "raw"),
        default="auto",
        help="payload decoding: auto (JSON if it parses), json (else a decode error) or raw",
    )
    @argument(
        "--seq-field",
        default=None,
        dest="seq_field",
        metavar="FIELD",
        help="check this (dotted) integer field of dict payloads for gaps, duplicates and "
        "reordering per channel: NAME.gaps() and the panel's counters",
    )
    @argument(
        "--latency-field",
        default=None,
        dest="latency_field",
        metavar="FIELD",
        help="measure receive time minus this (dotted) publish-time field of dict payloads "
        "(epoch s/ms/us/ns, by magnitude; %%rtk_publish --stamp FIELD puts it in) per "
        "channel: NAME.latency() and the panel's p50/p99/max",
    )
    @argument(
        "--no-schema",
        action="store_false",
        dest="track_schema",
        help="do not follow the payloads' fields and types (NAME.schema(), "
        "NAME.schema_changes() and the panel's drift line need it; on by default)",
    )
    @argument(
        "--sharded",
        action="store_true",
        help="sharded channels (SSUBSCRIBE, Redis 7.0+; names taken literally): on a cluster "
        "each is read from the node owning its slot and follows it when it moves",
    )
    def rtk_subscribe(self, line: str, cell: str | None = None) -> Any:
        """Start a background subscription and return at once with its live panel.

        ``%rtk_subscribe ...`` on one line, or ``%%rtk_subscribe`` with an empty body, starts
        it without a body. The cell body, if any, runs for every message with ``channel``,
        ``data`` and ``message`` bound (its ``print`` goes to the panel's log; an error is
        logged and counted). The subscription is bound to NAME (default ``sub_<channel>``);
        re-running the cell replaces it. Its ``df`` says which ``kind`` of subscription
        delivered each row (channel, pattern or sharded) and from which ``node``.
        ``--seq-field seq``: check that field of dict payloads for gaps, duplicates and
        reordering per channel (``NAME.gaps()``, and the panel's counters).
        ``--latency-field ts``: latency per channel from that stamp (``NAME.latency()``).
        """
        args = parsing.parse_magic_args(RtkMagics.rtk_subscribe, line, "%%rtk_subscribe")
        body = None
        if cell and cell.strip():
            # A file name tracebacks and linecache resolve: errors point at the body's lines.
            filename = body_filename(args.name or default_name(args.names))
            try:
                body = compile(cell, filename, "exec")
            except SyntaxError as exc:
                raise UsageError(
                    f"%%rtk_subscribe: syntax error in the cell body, line {exc.lineno}: {exc.msg}"
                ) from None
            register_body(filename, cell)
        if args.name is not None and not args.name.isidentifier():
            raise UsageError(f"%%rtk_subscribe: --name {args.name!r} is not a Python identifier")
        self._ensure_connected()
        return self.state.subscribe(
            args.names,
            name=args.name,
            max_rows=args.max_rows or self.max_rows,
            decode=args.decode,
            body=body,
            log_size=self.log_size,
            sharded=args.sharded,
            seq_field=args.seq_field,
            latency_field=args.latency_field,
            track_schema=args.track_schema,
        )

    # ---- %rtk_request -----------------------------------------------------------------------
    @no_var_expand
    @line_magic
    @_usage_errors
    def rtk_request(self, line: str) -> Any:
        """%rtk_request CHANNEL PAYLOAD [--timeout S]

        Send PAYLOAD (as in ``%rtk_publish``) as a request on CHANNEL and return the reply
        (``RedisToolkit.request``); no reply within S seconds (default 5) is a UsageError.
        """
        m = _TIMEOUT.search(line)
        timeout = float(m.group(1)) if m else 5.0
        parts = (line[: m.start()] if m else line).strip().split(None, 1)
        if len(parts) < 2 or timeout <= 0:
            raise UsageError("usage: %rtk_request CHANNEL PAYLOAD [--timeout S] (S > 0)")
        payload = parsing.Payload(parts[1], self.shell.user_ns if self.shell else {})
        self._ensure_connected()
        return self.state.toolkit.request(parts[0], payload.value(None), timeout=timeout)

    # ---- %rtk_replay (notebook/replay.py) ----------------------------------------------------
    @line_magic
    @_usage_errors
    def rtk_replay(self, line: str) -> Any:
        """%rtk_replay SOURCE [--speed X] [--map OLD=NEW ...] [--prefix P] [--limit N] [--dry-run]

        Publish a capture again (SOURCE: a DataFrame or subscription variable, or a file from
        ``feed.export()``), keeping its gaps divided by X (0: as fast as possible); returns
        the summary. ``--dry-run`` returns what would be sent where, sending nothing."""
        return replay.run(self, line)

    # ---- %rtk_expect (notebook/expect.py) ----------------------------------------------------
    @line_magic
    @_usage_errors
    def rtk_expect(self, line: str) -> Any:
        """%rtk_expect NAME [count>=N] [channel=C] [within=S] [no-gaps] [fields=a,b.c]

        ``NAME.expect(...)`` as a line: wait up to S seconds (default 5) for at least N
        messages (on channel C, a name or glob), with no sequence gap and these fields;
        otherwise an ``AssertionError`` saying what was expected and what arrived."""
        return expect.run(self, line)

    # ---- %rtk SUBCOMMAND ---------------------------------------------------------------------
    @line_magic
    @_usage_errors
    def rtk(self, line: str) -> Any:
        """%rtk channels [PATTERN] | shards [PATTERN] | numsub CHANNEL... | numpat | subs |
        stop NAME|--all | panel | keyspace [KEY_PATTERN] [--events EVENTS] [--name NAME] [--db N] |
        explain CHANNEL"""
        tokens = parsing.split_line(line, "%rtk")
        if not tokens or tokens[0] not in SUBCOMMANDS:
            raise UsageError(f"usage: %rtk {{{'|'.join(SUBCOMMANDS)}}} ...")
        return SUBCOMMANDS[tokens[0]](self, tokens[1:])


_TIMEOUT = re.compile(r"\s--timeout(?:\s*=\s*|\s+)(\d+(?:\.\d*)?|\.\d+)\s*$")


def _describe(info: dict[str, str]) -> str:
    return f"connected to {info['url']} ({info['server']} {info['version']})"


def _decode(name: Any) -> str:
    return name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else str(name)


def _no_args(name: str, args: list[str]) -> None:
    if args:
        raise UsageError(f"%rtk {name} takes no arguments (got {' '.join(args)!r})")


def _channels(m: RtkMagics, args: list[str]) -> list[str]:
    if len(args) > 1:
        raise UsageError("usage: %rtk channels [PATTERN]")
    m._ensure_connected()
    found = m.state.toolkit.client.pubsub_channels(args[0] if args else "*")
    return sorted(_decode(c) for c in found)


def _shards(m: RtkMagics, args: list[str]) -> Any:
    if len(args) > 1:
        raise UsageError("usage: %rtk shards [PATTERN]")
    m._ensure_connected()
    from .cluster_tab import shards_frame

    return shards_frame(m.state.toolkit, args[0] if args else "*")


def _numsub(m: RtkMagics, args: list[str]) -> dict[str, int]:
    if not args:
        raise UsageError("usage: %rtk numsub CHANNEL [CHANNEL ...]")
    m._ensure_connected()
    return {_decode(c): int(n) for c, n in m.state.toolkit.client.pubsub_numsub(*args)}


def _numpat(m: RtkMagics, args: list[str]) -> int:
    _no_args("numpat", args)
    m._ensure_connected()
    return int(m.state.toolkit.client.pubsub_numpat())


def _explain(m: RtkMagics, args: list[str]) -> Any:
    if len(args) != 1:
        raise UsageError("usage: %rtk explain CHANNEL")
    m._ensure_connected()
    from .explain import explain

    return explain(m.state.toolkit, dict(m.state.subscriptions), args[0])


def _subs(m: RtkMagics, args: list[str]) -> Any:
    _no_args("subs", args)
    from .frames import subscriptions_frame

    return subscriptions_frame(list(m.state.subscriptions.values()))


def _stop(m: RtkMagics, args: list[str]) -> None:
    if args == ["--all"]:
        names = m.state.stop_all()
        print(f"stopped {len(names)} subscription(s){': ' if names else ''}{', '.join(names)}")
        return
    if len(args) != 1 or args[0].startswith("-"):
        raise UsageError("usage: %rtk stop NAME | %rtk stop --all")
    if not m.state.stop(args[0]):
        running = ", ".join(m.state.subscriptions) or "none"
        raise UsageError(f"%rtk stop: no running subscription {args[0]!r} (running: {running})")
    print(f"stopped {args[0]}")


def _panel(m: RtkMagics, args: list[str]) -> Any:
    _no_args("panel", args)
    from .dashboard import Dashboard

    # Re-running the cell replaces the dashboard (as it replaces a subscription): the old one
    # stops being refreshed instead of adding work for good.
    if m.dashboard is not None:
        m.dashboard.close()
    m.dashboard = Dashboard(m.state, max_rows=m.max_rows, log_size=m.log_size)
    return m.dashboard


SUBCOMMANDS: dict[str, Callable[[RtkMagics, list[str]], Any]] = {
    "channels": _channels,
    "shards": _shards,
    "numsub": _numsub,
    "numpat": _numpat,
    "subs": _subs,
    "stop": _stop,
    "panel": _panel,
    "keyspace": keyspace.run,
    "explain": _explain,
}
