"""Compact JSON to bytes: orjson when installed (about 10x faster), else the standard library."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_std = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps_std(obj: Any) -> bytes:
    """UTF-8 compact JSON with the standard library."""
    return _std(obj).encode()


try:
    import orjson

    dumps: Callable[[Any], bytes] = orjson.dumps
except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a broken install working
    dumps = dumps_std
