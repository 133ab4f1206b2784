"""Plausible, valid example messages for every frame type, built from the declarations.

Used by the simulator, the benchmarks and the tests: ``example(code)`` gives a
message that :meth:`Codec.check` accepts and that round-trips through the codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ykcproxy.wire.fields import Ascii, Bcd, Bits, Bool, Bytes, Cp56, Field, GunBin, Hex, ListOf, Record, UInt
from ykcproxy.wire.frames import CATALOGUE, FrameType

EXAMPLE_PILE = "55031412782305"
#: 2025-01-02 03:04:05 Asia/Shanghai, in unix ms.
EXAMPLE_TIME = 1735758245000


def example_value(field: Field, pile_id: str = EXAMPLE_PILE, salt: int = 0) -> Any:
    """A valid value of ``field`` (deterministic for a given ``salt``)."""
    name = field.name
    if isinstance(field, GunBin):
        return "01"
    if isinstance(field, Hex):
        return f"{0x10 + salt % 200:02X}" * field.n
    if isinstance(field, Bcd):
        if name == "id":
            return pile_id
        if name in ("gun", "gunId"):
            return "01"
        if name == "tradeSeq":
            return (pile_id + "01" + "250102030405" + f"{salt % 10000:04d}")[: 2 * field.n]
        digits = "".join(str((i + salt) % 10) for i in range(2 * field.n))
        return digits
    if isinstance(field, Bool):
        return True
    if isinstance(field, UInt):
        if field.choices:
            return field.choices[salt % len(field.choices)]
        return min(field.maximum, max(field.lo, 1 + salt % 200))
    if isinstance(field, Ascii):
        return ("VIN" if field.reverse else "T") + "1234567890ABCDEFGHIJ"[: field.n - 3]
    if isinstance(field, Cp56):
        return EXAMPLE_TIME + 1000 * salt
    if isinstance(field, Bytes):
        return [(i // 12 + salt) % (field.hi + 1) for i in range(field.n)]
    raise TypeError(f"no example for {field!r}")


def _bits(field: Bits, salt: int) -> dict[str, int]:
    return {name: (i + salt) % (1 << width) for i, (name, width) in enumerate(field.parts) if name}


def _list(tail: ListOf, pile_id: str, salt: int) -> list[Any]:
    count = min(tail.hi, max(tail.lo, 2))
    out: list[Any] = []
    for i in range(count):
        if isinstance(tail.item, Record):
            entry: dict[str, Any] = {}
            for f in tail.item.fields:
                entry[f.name] = example_value(f, pile_id, salt + i)
            out.append(entry)
        else:
            out.append(example_value(tail.item, pile_id, salt + i))
    return out


def example(code: int, pile_id: str = EXAMPLE_PILE, salt: int = 0, **override: Any) -> dict[str, Any]:
    """A valid message of frame type ``code``; keyword arguments replace values."""
    frame: FrameType = CATALOGUE[code]
    msg: dict[str, Any] = {}
    for slot in frame.slots:
        if isinstance(slot, Bits):
            msg.update(_bits(slot, salt))
        elif isinstance(slot, Field):
            msg[slot.name] = example_value(slot, pile_id, salt)
    if frame.tail is not None:
        msg[frame.tail.name] = _list(frame.tail, pile_id, salt)
    msg.update(override)
    return msg


def examples(pile_id: str = EXAMPLE_PILE) -> Mapping[int, dict[str, Any]]:
    """An example of every frame type."""
    return {code: example(code, pile_id) for code in CATALOGUE}
