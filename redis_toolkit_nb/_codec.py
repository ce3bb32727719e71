"""Serialization rules: plain JSON on the wire, never pickle, never eval.

Publishing (``encode``):

- ``bytes``, ``bytearray`` and ``memoryview`` are sent exactly as given (binary stays binary).
- Everything else is encoded as JSON with orjson: dicts, lists, tuples (as lists), ``str``
  (as a JSON string, quotes included), numbers, booleans, ``None``, plus what orjson knows
  (datetime, UUID, dataclasses, numpy arrays). Anything else raises ``SerializationError``,
  and so does an integer beyond 64 bits: JSON readers (orjson, JavaScript) turn it into a
  float, so it could not arrive exactly; publish it as a string.

Receiving (``decode``, mode ``"auto"``, the default):

- a payload that parses as JSON becomes that Python value, so every JSON value published by
  the toolkit round-trips exactly, and ``json.dumps`` output from any other client decodes
  naturally;
- a payload that is not JSON but is UTF-8 becomes ``str`` (``redis-cli PUBLISH ch hello``
  arrives as ``"hello"``);
- anything else arrives as ``bytes``, untouched.

Mode ``"json"`` counts a non-JSON payload as a decode error and does not deliver it; mode
``"raw"`` delivers the payload bytes as they came.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from .exceptions import SerializationError

DECODE_MODES = ("auto", "json", "raw")

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_dumps = orjson.dumps
_loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError


class NotJSON(Exception):
    """Internal: a payload is not JSON (mode ``"json"`` counts it as a decode error)."""


def encode(value: Any) -> bytes:
    """Encode ``value`` for the wire following the module's rules."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    try:
        return _dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        if "Integer exceeds 64-bit range" in str(exc):
            raise SerializationError(
                "cannot publish an integer beyond 64 bits exactly: JSON readers turn it into a "
                "float; send it as a string (str(n))"
            ) from exc
        raise SerializationError(
            f"cannot encode a value of type {type(value).__name__} as JSON: {exc}; "
            "publish bytes to send binary data as it is"
        ) from exc


def decode_fallback(payload: bytes) -> Any:
    """Decode a payload orjson refused: big-integer JSON, else text, else bytes."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload
    head = text.lstrip()[:1]
    if head and head in "[{-0123456789":
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            pass
    return text


def decode_json_fallback(payload: bytes) -> Any:
    """JSON that orjson refused but the standard library reads (``1e400``), else ``NotJSON``."""
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise NotJSON(str(exc)) from None


def decode(payload: bytes, mode: str = "auto") -> Any:
    """Decode one payload (see the module docstring for the rules)."""
    if mode == "raw":
        return payload
    try:
        return _loads(payload)
    except JSONDecodeError:
        if mode == "json":
            return decode_json_fallback(payload)
        return decode_fallback(payload)
