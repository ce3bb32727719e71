"""Serialization rules: plain JSON on the wire, never pickle, never eval.

Publishing (``encode``):

- ``bytes``, ``bytearray`` and ``memoryview`` are sent exactly as given (binary stays binary).
- Everything else is encoded as JSON with orjson: dicts, lists, tuples (as lists), ``str``
  (as a JSON string, quotes included), numbers, booleans, ``None``, plus what orjson knows
  (datetime, UUID, dataclasses, enums, numpy arrays). Anything else raises
  ``SerializationError``, and so do two values JSON cannot carry exactly: an integer beyond
  64 bits (orjson and most readers would turn it into a float) and NaN or ±Infinity, anywhere
  in the value (JSON has no such numbers; orjson would write ``null``).

Receiving (``decode``; the subscriber's inline fast path calls the same ``Decoder``). One
table, the same in every mode: a payload is JSON if orjson reads it, after a leading UTF-8
byte-order mark is dropped. orjson refuses NaN/Infinity, a number beyond a double (``1e400``),
lone surrogate escapes, nesting deeper than 1024 and invalid UTF-8, and reads an integer
beyond 64 bits as a float. Then:

- ``"auto"`` (the default): JSON becomes that Python value; anything else arrives as ``str``
  if it is UTF-8 (``redis-cli PUBLISH ch hello`` arrives as ``"hello"``), else as ``bytes``,
  untouched;
- ``"json"``: a payload that is not JSON is a decode error (``NotJSON``; the subscriber
  counts it and does not deliver it);
- ``"raw"``: the payload bytes as they came, nothing decoded or unwrapped.

Legacy envelopes (``legacy=True``, ``RedisOptions.legacy_envelopes``): the original
redis-toolkit 0.4.0 wraps every value as ``{"__type__": t, "__data__": v}`` (written by
Python's json, so NaN may appear inside), numpy arrays as ``{"__type__": "numpy",
"__dtype__", "__shape__", "__data__"}``, and ``None`` as the bare text ``__NONE__``. Under
``"auto"`` and ``"json"`` a dict with exactly those keys and a type name 0.4.0 writes arrives
as the value it carries (any other dict stays a dict). A type that would need unpickling is
never decoded: it arrives as it is, counted (``Decoder.unsafe``) and logged.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import logging
import math
import sys
from typing import Any

import orjson

from ._ratelimit import RateLimitedLog
from .exceptions import SerializationError

logger = logging.getLogger("redis_toolkit_nb")

DECODE_MODES = ("auto", "json", "raw")

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_dumps = orjson.dumps
_loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError

_BOM = b"\xef\xbb\xbf"
# redis-toolkit 0.4.0's None, and how every envelope it writes with json.dumps begins.
_LEGACY_NONE = b"__NONE__"
_LEGACY_HEAD = b'{"__type__": "'
_NUMPY_KEYS = {"__type__", "__dtype__", "__shape__", "__data__"}
# Envelope types that only an unsafe loader could decode (older redis-toolkit versions).
_UNSAFE = frozenset({"pickle"})
_MISSING: Any = object()
_FINITE_LEAVES = frozenset({str, int, bool})


class NotJSON(SerializationError, ValueError):
    """A payload is not JSON under ``decode="json"`` (a subscriber counts a decode error)."""


# ---- publishing ------------------------------------------------------------------------------
def encode(value: Any) -> bytes:
    """Encode ``value`` for the wire following the module's rules."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    try:
        payload = _dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        if "Integer exceeds 64-bit range" in str(exc):
            raise SerializationError(
                "cannot publish an integer beyond 64 bits exactly: orjson and most JSON readers "
                "would turn it into a float; send it as a string (str(n))"
            ) from exc
        raise SerializationError(
            f"cannot encode a value of type {type(value).__name__} as JSON: {exc}; "
            "publish bytes to send binary data as it is"
        ) from exc
    # rfind: measured 2-3x faster than ``in`` on small payloads (CPython 3.11).
    if payload.rfind(b"null") != -1:
        check_finite(value)
    return payload


def check_finite(value: Any) -> None:
    """Raise ``SerializationError`` if ``value`` holds NaN or ±Infinity anywhere.

    orjson writes them as ``null``, so a caller runs this only when its output contains
    ``null`` (rare, and then None is the usual reason): no second pass over normal values.
    """
    found = _non_finite(value)
    if found is not None:
        path, number = found
        where = "value" + "".join(reversed(path))
        raise SerializationError(
            f"cannot publish {number!r} at {where}: JSON has no NaN or Infinity (orjson would "
            "send null, a different value); send None or a string such as 'NaN' instead"
        )


def _non_finite(obj: Any) -> tuple[list[str], float] | None:
    """(path parts, innermost first; the number) of the first NaN/±Infinity in ``obj``."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else ([], float(obj))  # float(): numpy's float64
    if isinstance(obj, dict):
        items: Any = obj.items()
        part = "[{!r}]"
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
        part = "[{}]"
    elif obj is None or isinstance(obj, (str, int)):
        return None
    elif isinstance(obj, enum.Enum):
        return _non_finite(obj.value)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
        part = ".{}"
    else:
        return _non_finite_numpy(obj)
    for key, item in items:
        # Leaves are checked inline (this runs for every value holding a None): x - x is 0.0
        # for a finite float, NaN for NaN and ±Infinity.
        cls = item.__class__
        if cls is float:
            if item - item == 0.0:
                continue
            return [part.format(key)], item
        if item is None or cls in _FINITE_LEAVES:
            continue
        found = _non_finite(item)
        if found is not None:
            found[0].append(part.format(key))
            return found
    return None


def _non_finite_numpy(obj: Any) -> tuple[list[str], float] | None:
    np = sys.modules.get("numpy")  # a numpy value means numpy is imported already
    if np is None:
        return None
    if isinstance(obj, np.floating):
        number = float(obj)
        return None if math.isfinite(number) else ([], number)
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
        bad = np.argwhere(~np.isfinite(obj))
        if len(bad):
            index = tuple(int(i) for i in bad[0])
            part = f"[{', '.join(map(str, index))}]" if index else ""
            return [part], float(obj[index])
    return None


# ---- receiving -------------------------------------------------------------------------------
class Decoder:
    """What a subscriber does with a payload orjson refused, and with a legacy envelope.

    ``decode()`` and the dispatcher's inline fast path (``orjson.loads`` first) both call
    ``fallback`` and ``unwrap`` of one of these, so their rules cannot drift apart.
    ``unsafe`` counts legacy envelopes delivered as they are because decoding them is unsafe.
    """

    def __init__(self, mode: str = "auto", legacy: bool = True) -> None:
        if mode not in DECODE_MODES:
            raise ValueError(f"decode mode {mode!r} is not one of {', '.join(DECODE_MODES)}")
        self.mode = mode
        self.legacy = legacy and mode != "raw"
        self._strict = mode == "json"
        self.unsafe = 0
        self._unsafe_log = RateLimitedLog(logger, logging.WARNING, period=10.0, burst=5)

    def fallback(self, payload: bytes) -> tuple[Any, bool]:
        """Decode a payload ``orjson.loads`` refused: ``(value, True if it is delivered as
        text or bytes)``. Under ``"json"`` a payload that is not JSON raises ``NotJSON``."""
        body = payload
        if payload[:3] == _BOM:  # RFC 8259 lets a reader ignore it; orjson does not
            body = payload[3:]
            try:
                data = _loads(body)
            except JSONDecodeError:
                pass
            else:
                if self.legacy and data.__class__ is dict and "__type__" in data:
                    data = self.unwrap(data, body)
                return data, False
        if self.legacy:
            if body == _LEGACY_NONE:
                return None, False
            if body.startswith(_LEGACY_HEAD):
                data = self._python_json_envelope(body)
                if data is not _MISSING:
                    return data, False
        if self._strict:
            raise NotJSON(f"payload is not JSON (decode='json'): {payload[:80]!r}")
        try:
            return body.decode("utf-8"), True
        except UnicodeDecodeError:
            return payload, True

    def _python_json_envelope(self, body: bytes) -> Any:
        """A 0.4.0 envelope orjson refused because Python's json wrote NaN or Infinity in it
        (only an envelope is read this way: elsewhere NaN is not JSON)."""
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            return _MISSING
        if data.__class__ is dict and "__type__" in data:
            value = self.unwrap(data, body)
            if value is not data:
                return value
        return _MISSING

    def unwrap(self, data: dict, payload: bytes) -> Any:
        """The value a redis-toolkit 0.4.0 envelope carries, or ``data`` itself if ``data``
        (a dict with a ``__type__`` key) is not one. Never raises."""
        kind = data["__type__"]
        if kind.__class__ is not str:
            return data
        if len(data) == 4 and kind == "numpy" and data.keys() == _NUMPY_KEYS:
            return self._numpy(data)
        if len(data) != 2 or "__data__" not in data:
            return data
        inner = data["__data__"]
        restore = _RESTORE.get(kind)
        if restore is None:
            if kind in _UNSAFE:
                return self._refuse(data, f"type {kind!r} needs unpickling")
            # Not a type 0.4.0 writes: an application's own {"__type__", "__data__"} message.
            return data
        try:
            value = restore(inner, payload)
        except (ValueError, TypeError, LookupError, RecursionError):
            value = _MISSING
        return data if value is _MISSING else value

    def _numpy(self, data: dict) -> Any:
        try:
            import numpy as np
        except ImportError:
            return self._refuse(data, "numpy is not installed")
        try:
            dtype = np.dtype(data["__dtype__"]) if isinstance(data["__dtype__"], str) else None
            if dtype is None or dtype.kind not in "biufU":  # never object or raw-memory dtypes
                return self._refuse(data, f"dtype {data['__dtype__']!r} is not a plain one")
            return np.array(data["__data__"], dtype=dtype).reshape(data["__shape__"])
        except (ValueError, TypeError, RecursionError) as exc:
            return self._refuse(data, f"not a valid array ({exc})")

    def _refuse(self, data: dict, why: str) -> dict:
        self.unsafe += 1
        self._unsafe_log.emit(
            "a redis-toolkit envelope was delivered as it is, not decoded: %s (%d so far)",
            why,
            self.unsafe,
        )
        return data


def _exact_int(inner: Any, payload: bytes) -> Any:
    if inner.__class__ is int:
        return inner
    if inner.__class__ is float:  # orjson read an integer beyond 64 bits as a float
        exact = json.loads(payload)["__data__"]
        return exact if exact.__class__ is int else _MISSING
    return _MISSING


def _bytes(inner: Any) -> bytes:
    if inner.__class__ is not str:
        raise TypeError("base64 data must be a str")
    return base64.b64decode(inner, validate=True)


def _restore_bytes(obj: Any) -> Any:
    """0.4.0's containers hold bytes as ``{"__type__": "bytes", "__data__": base64}``."""
    if obj.__class__ is dict:
        if len(obj) == 2 and obj.get("__type__") in ("bytes", "bytearray") and "__data__" in obj:
            raw = _bytes(obj["__data__"])
            return raw if obj["__type__"] == "bytes" else bytearray(raw)
        return {k: _restore_bytes(v) for k, v in obj.items()}
    if obj.__class__ is list:
        return [_restore_bytes(v) for v in obj]
    return obj


def _container(kind: type) -> Any:
    def restore(inner: Any, payload: bytes) -> Any:
        if inner.__class__ is not (dict if kind is dict else list):
            return _MISSING
        value = _restore_bytes(inner)
        return tuple(value) if kind is tuple else value

    return restore


_RESTORE = {
    "str": lambda inner, _: inner if inner.__class__ is str else _MISSING,
    "int": _exact_int,
    "float": lambda inner, _: float(inner) if inner.__class__ in (int, float) else _MISSING,
    "bool": lambda inner, _: inner if inner.__class__ is bool else _MISSING,
    "bytes": lambda inner, _: _bytes(inner),
    "bytearray": lambda inner, _: bytearray(_bytes(inner)),
    "dict": _container(dict),
    "list": _container(list),
    "tuple": _container(tuple),
}
# 0.4.0 names a value by type(value).__name__: numpy's float64 and str_ subclass float and str.
_RESTORE["float64"], _RESTORE["str_"] = _RESTORE["float"], _RESTORE["str"]
_DECODERS = {(m, legacy): Decoder(m, legacy) for m in DECODE_MODES for legacy in (True, False)}


def decode(payload: bytes, mode: str = "auto", legacy: bool = True) -> Any:
    """Decode one payload as a subscriber with ``RedisOptions(decode=mode,
    legacy_envelopes=legacy)`` would (see the module docstring for the rules).
    Under ``"json"`` a payload that is not JSON raises ``NotJSON`` (a ``SerializationError``)."""
    if mode != "auto" and mode != "json":
        if mode == "raw":
            return payload
        raise ValueError(f"decode mode {mode!r} is not one of {', '.join(DECODE_MODES)}")
    try:
        data = _loads(payload)
    except JSONDecodeError:
        return _DECODERS[mode, bool(legacy)].fallback(payload)[0]
    if legacy and data.__class__ is dict and "__type__" in data:
        return _DECODERS[mode, True].unwrap(data, payload)
    return data
