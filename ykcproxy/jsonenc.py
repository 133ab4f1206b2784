"""Compact JSON to bytes: orjson when installed (about 10x faster), else the standard library."""

from __future__ import annotations

import json
from typing import Any

_std = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps_std(obj: Any) -> bytes:
    """UTF-8 compact JSON with the standard library."""
    return _std(obj).encode()


try:
    import orjson

    def dumps(obj: Any) -> bytes:
        """UTF-8 compact JSON with orjson, copied to an exactly sized bytes.

        orjson's own result keeps its growable buffer (4 KiB and up) allocated;
        a message that waits in the outbox queue would hold all of it.
        """
        return bytes(memoryview(orjson.dumps(obj)))

except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a broken install working
    dumps = dumps_std
