"""Byte sizes as people write them ("512MB", "2GB"), for the cache budget and the local Hub's bandwidth."""

from __future__ import annotations


_UNITS = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}


def parse_bytes(value: int | str) -> int | str:
    """`"auto"`, an int, or a size like "512MB" / "2GB" -> bytes."""
    if isinstance(value, int) or value == "auto":
        return value
    text = str(value).strip().lower()
    for unit, factor in _UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)
