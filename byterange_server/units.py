"""Byte sizes as people write them, one syntax for the server's settings and the client's options.

``8MiB``, ``512KiB``, ``1GiB``, ``1TiB`` are powers of 1024 (IEC); ``10GB``, ``8M``, ``64k`` are
powers of 1000 (SI); a plain number is bytes. Units are case-insensitive and may follow a space.
Numbers are whole (``1536MiB``, not ``1.5GiB``), so a size is always an exact byte count.
"""

from __future__ import annotations

import re

__all__ = ["format_size", "parse_size"]

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"([0-9]+)\s*([a-zA-Z]*)", re.ASCII)


def parse_size(text: str | int) -> int:
    """``"8MiB"`` → 8388608, ``"10GB"`` → 10000000000; an ``int`` is returned as it is.

    :raises ValueError: not a whole number with a known unit.
    """
    if isinstance(text, int):
        return text
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None or match[2].lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 1048576, 8MiB, 512KiB, 10GB)")
    return int(match[1]) * _UNITS[match[2].lower()]


def format_size(n: int) -> str:
    """``8388608`` → ``8.0 MiB``; below 1 KiB, plain bytes."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if round(value, 1) < 1024 or unit == "PiB":
            break
    return f"{value:.1f} {unit}"
