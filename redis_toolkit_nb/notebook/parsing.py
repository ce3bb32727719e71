"""Parsing magic lines: ``@magic_arguments`` errors as ``UsageError``, and ``%rtk_publish``'s
payload.

IPython expands ``{var}`` and ``$var`` in magic lines, which mangles JSON; the magics that take
a payload are ``@no_var_expand`` and evaluate it here instead, in the user's namespace.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson
from IPython.core.error import UsageError


class MagicParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors become ``UsageError`` (a short message, no traceback,
    and Run All stops) instead of printing usage and calling ``sys.exit``; for magics whose
    line is more than options (``%rtk_replay SOURCE ...``)."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        super().__init__(prog=prog, add_help=False, allow_abbrev=False, **kwargs)

    def error(self, message: str):  # noqa: ANN201 - argparse's signature
        # format_usage() already begins with "usage: ".
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None):  # noqa: ANN201
        raise UsageError(message or f"{self.prog}: invalid arguments")


def split_line(line: str, magic: str) -> list[str]:
    """Split a magic's line like a shell would; an unbalanced quote is a ``UsageError``."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{magic}: {exc}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def parse_magic_args(magic: Any, line: str, prog: str) -> Any:
    """Parse ``line`` with the ``@magic_arguments`` parser of ``magic``; a mistake is a
    ``UsageError`` naming the magic, with one "usage:" line."""
    parser = magic.parser
    try:
        return parser.parse_argstring(line)
    except (UsageError, ValueError) as exc:  # ValueError: an unbalanced quote
        # IPython's help formatter writes the usage as an indented reST block ("::"), on
        # several lines: one plain line reads better in an error.
        usage = " ".join(parser.format_usage().replace("::", " ").split())
        raise UsageError(f"{prog}: {exc}\nusage: {usage}") from None


# ---- %rtk_publish ----------------------------------------------------------------------------

_OPTION = re.compile(r"--(count|rate)(?:\s*=\s*|\s+)(\S+)")
_STAMP = re.compile(r"--stamp(?:\s*=\s*|\s+)([^\s\"']+)")
_TRAILING = re.compile(r"(?:\s+--(?:count|rate)(?:\s*=\s*|\s+)[^\s\"']+)+\s*$")
_CHANNEL = re.compile(r"\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)'|(\S+)")


@dataclass
class PublishArgs:
    channel: str
    payload: str
    count: int = 1
    rate: float | None = None
    repeat: bool = False  # --count or --rate was given
    text: bool = False  # --text: PAYLOAD is sent as typed, never evaluated
    sharded: bool = False  # --sharded: SPUBLISH (a sharded channel)
    stamp: str | None = None  # --stamp FIELD: the publish time into (a copy of) a dict payload


def _apply_option(args: PublishArgs, name: str, value: str) -> None:
    try:
        if name == "count":
            args.count = positive_int(value)
        else:
            args.rate = _positive_float(value)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"%rtk_publish: --{name}: {exc}") from None
    args.repeat = True


def parse_publish(line: str) -> PublishArgs:
    """Split ``[--text] [--sharded] [--stamp FIELD] [--count N] [--rate R] CHANNEL PAYLOAD
    [--count N] [--rate R]``.

    Options go before CHANNEL (``--text``, ``--sharded`` and ``--stamp`` only there) or at
    the very end of the line; PAYLOAD is everything between, as typed. CHANNEL may be
    quoted. ``--`` ends the options (for a channel starting with -).
    """
    usage = (
        "usage: %rtk_publish [--text] [--sharded] [--stamp FIELD] [--count N] [--rate R] "
        "CHANNEL PAYLOAD"
    )
    args = PublishArgs(channel="", payload="")
    rest = line.strip()
    while rest.startswith("-"):
        if rest == "--" or rest.startswith("-- "):
            rest = rest[2:].lstrip()
            break
        if rest == "--text" or rest.startswith("--text "):
            args.text = True
            rest = rest[6:].lstrip()
            continue
        if rest == "--sharded" or rest.startswith("--sharded "):
            args.sharded = True
            rest = rest[9:].lstrip()
            continue
        m = _STAMP.match(rest)
        if m:
            if not all(m.group(1).split(".")):
                raise UsageError(f"%rtk_publish: --stamp {m.group(1)!r} is not a field name")
            args.stamp = m.group(1)
            rest = rest[m.end() :].lstrip()
            continue
        m = _OPTION.match(rest)
        if not m:
            bad = rest.split()[0]
            raise UsageError(f"%rtk_publish: unknown or incomplete option {bad!r}\n{usage}")
        _apply_option(args, m.group(1), m.group(2))
        rest = rest[m.end() :].lstrip()
    m = _CHANNEL.match(rest)
    if not m:
        raise UsageError(f"%rtk_publish: missing CHANNEL and PAYLOAD\n{usage}")
    args.channel = next(g for g in m.groups() if g is not None)
    rest = rest[m.end() :].strip()
    tail = _TRAILING.search(" " + rest)
    if tail:
        for opt in _OPTION.finditer(tail.group(0)):
            _apply_option(args, opt.group(1), opt.group(2))
        rest = (" " + rest)[: tail.start()].strip()
    if not args.channel:
        raise UsageError(f"%rtk_publish: the channel name is empty\n{usage}")
    if not rest:
        raise UsageError(f"%rtk_publish: missing PAYLOAD after channel {args.channel!r}\n{usage}")
    args.payload = rest
    return args


_LITERAL_START = re.compile(r"\s*(?:[{\[(\"']|[-+]?\.?\d)")


class Payload:
    """PAYLOAD of ``%rtk_publish``: a Python expression evaluated in the user's namespace.

    Text that is not a Python expression is JSON if it parses as JSON (``{"ok": true}``), else a
    plain string (``hello world``), unless it looks like JSON or a Python literal (it starts
    with a bracket, a quote or a number): then it is a ``UsageError`` showing the parse error,
    so a typo is never published as text (``text=True``, ``--text``, sends any text as is). An
    expression that fails to evaluate (an undefined name, a ZeroDivisionError) is a
    ``UsageError`` too. With ``--count``, the name ``i`` is the message's index (0, 1, ...)
    everywhere in the expression, comprehensions and generator expressions included.
    """

    def __init__(self, text: str, namespace: Mapping[str, Any], *, as_text: bool = False) -> None:
        self.text = text
        self.namespace = namespace
        self.constant: Any = None
        self.code = None
        self.uses_index = False
        self._indexed: Any = None
        if as_text:
            self.constant = text
            return
        try:
            code = compile(text, "<rtk_publish payload>", "eval")
        except SyntaxError as exc:
            self.constant = self._json_or_text(exc)
            return
        if code.co_names or code.co_consts and any(hasattr(c, "co_code") for c in code.co_consts):
            self.code = code  # depends on names (or builds a comprehension): evaluate per use
            self.uses_index = "i" in _all_names(code)
        else:
            self.constant = self._eval(code, None)

    def _json_or_text(self, syntax: SyntaxError) -> Any:
        try:
            return orjson.loads(self.text)
        except orjson.JSONDecodeError as exc:
            if not _LITERAL_START.match(self.text):
                return self.text  # plain words: text, as documented
            where = f" (column {syntax.offset})" if syntax.offset else ""
            raise UsageError(
                f"%rtk_publish: PAYLOAD {self.text!r} looks like JSON or a Python literal but "
                f"does not parse: JSON: {exc}; Python: {syntax.msg}{where}. Fix it, or send it "
                f"as text with --text (%rtk_publish --text CHANNEL {self.text})"
            ) from None

    def _function(self) -> Any:
        """``lambda i: (PAYLOAD)``: ``i`` is then a closure variable that comprehensions and
        generator expressions inside PAYLOAD see too (a local of ``eval`` they would not)."""
        if self._indexed is None:
            source = f"lambda i: (\n{self.text}\n)"
            code = compile(source, "<rtk_publish payload>", "eval")
            # The user's own typed expression, never a received payload.
            self._indexed = eval(code, cast("dict[str, Any]", self.namespace))  # noqa: S307
        return self._indexed

    def _eval(self, code: Any, index: int | None) -> Any:
        try:
            if index is not None:
                return self._function()(index)
            # The user's own typed expression, never a received payload.
            return eval(code, cast("dict[str, Any]", self.namespace))  # noqa: S307
        except NameError as exc:
            # JSON literals (true/false/null) are names to Python: accept JSON as typed.
            try:
                return orjson.loads(self.text)
            except orjson.JSONDecodeError:
                pass
            raise UsageError(
                f"%rtk_publish: {exc} in PAYLOAD {self.text!r}; quote it or use --text to send "
                f"text (%rtk_publish --text CHANNEL {self.text})"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any failure of the user's expression
            raise UsageError(
                f"%rtk_publish: evaluating PAYLOAD {self.text!r} raised {type(exc).__name__}: {exc}"
            ) from None

    def value(self, index: int | None = None) -> Any:
        """The value to publish (``index``: the message number under ``--count``)."""
        if self.code is None:
            return self.constant
        return self._eval(self.code, index if self.uses_index else None)

    @property
    def varies(self) -> bool:
        """Whether each message may differ (the expression uses ``i``)."""
        return self.code is not None and self.uses_index


def _all_names(code: Any) -> set[str]:
    names = set(code.co_names) | set(getattr(code, "co_varnames", ()))
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            names |= _all_names(const) | set(const.co_freevars)
    return names
