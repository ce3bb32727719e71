"""Redis's glob patterns (``PSUBSCRIBE``, ``PUBSUB CHANNELS``), matched as Redis matches them.

They are matched as in Redis (``stringmatchlen`` in Redis's ``util.c``), which
is not Python's ``fnmatch``: a class is negated by ``[^...]`` (``[!a]`` is the set ``!``,
``a``), ``\\`` escapes the next character anywhere, ``[]`` is an empty class (``]`` first
does not stand for itself), an unclosed ``[`` runs to the end of the pattern, and a range
may be written backwards (``[z-a]``).
"""

from __future__ import annotations

from typing import Any

_STAR = object()
_ANY = object()


def _tokens(pattern: bytes) -> list[Any]:
    """The pattern as ``_STAR``, ``_ANY``, a byte (an int) or a class ``(negated, set)``: each
    token but the star matches exactly one byte, so matching needs no recursion."""
    out: list[Any] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # *
            if not out or out[-1] is not _STAR:
                out.append(_STAR)
        elif c == 0x3F:  # ?
            out.append(_ANY)
        elif c == 0x5B:  # [
            i += 1
            negated = i < n and pattern[i] == 0x5E  # ^
            if negated:
                i += 1
            members: set[int] = set()
            while i < n:
                c = pattern[i]
                if c == 0x5C and n - i >= 2:  # \x: x itself
                    i += 1
                    members.add(pattern[i])
                elif c == 0x5D:  # ]
                    break
                elif n - i >= 3 and pattern[i + 1] == 0x2D:  # a-z (the end may be ']')
                    lo, hi = sorted((c, pattern[i + 2]))
                    members.update(range(lo, hi + 1))
                    i += 2
                else:
                    members.add(c)
                i += 1
            out.append((negated, frozenset(members)))
        elif c == 0x5C and n - i >= 2:  # \x
            i += 1
            out.append(pattern[i])
        else:
            out.append(c)
        i += 1
    return out


def _one(token: Any, byte: int) -> bool:
    if token is _ANY:
        return True
    if isinstance(token, int):
        return token == byte
    negated, members = token
    return (byte in members) != negated


def glob_match(pattern: str | bytes, name: str | bytes) -> bool:
    """Whether Redis's pattern ``pattern`` (as in ``PSUBSCRIBE``, ``PUBSUB CHANNELS``)
    matches the channel ``name``."""
    p = pattern.encode() if isinstance(pattern, str) else pattern
    s = name.encode() if isinstance(name, str) else name
    tokens = _tokens(p)
    i = j = 0
    star, mark = -1, 0
    while j < len(s):
        if i < len(tokens) and tokens[i] is _STAR:
            star, mark = i, j  # try the star matching nothing first
            i += 1
        elif i < len(tokens) and _one(tokens[i], s[j]):
            i += 1
            j += 1
        elif star >= 0:  # give the last star one more byte
            mark += 1
            i, j = star + 1, mark
        else:
            return False
    while i < len(tokens) and tokens[i] is _STAR:
        i += 1
    return i == len(tokens)
