"""Where each field of a frame sits in its bytes, for highlighting in the console."""

from __future__ import annotations

from functools import cache

import attrs

from ykcproxy.wire.fields import Bits, ListOf, Record, Reserved
from ykcproxy.wire.frames import CATALOGUE

#: Bytes before the body: start, length, seq (2), encryption flag, type.
HEADER = 6


@attrs.frozen
class Span:
    """Bytes ``start`` (inclusive) to ``end`` (exclusive) of a frame hold ``field``."""

    field: str
    start: int
    end: int

    def to_json(self) -> dict[str, object]:
        """The JSON form in ``GET /piles/<id>/frames``."""
        return {"field": self.field, "start": self.start, "end": self.end}


@cache
def _fixed(code: int) -> tuple[tuple[Span, ...], int]:
    frame = CATALOGUE[code]
    spans: list[Span] = []
    offset = HEADER
    for slot in frame.slots:
        size = slot.size
        if isinstance(slot, Bits):
            spans += [Span(name, offset, offset + size) for name in slot.keys]
        elif not isinstance(slot, Reserved):
            spans.append(Span(slot.name, offset, offset + size))
        offset += size
    return tuple(spans), offset


def _tail(tail: ListOf, offset: int, end: int) -> list[Span]:
    spans: list[Span] = []
    if tail.counted:
        spans.append(Span(tail.name, offset, offset + 1))
        offset += 1
    size = tail.item_size
    index = 0
    while offset + size <= end and size > 0:
        if isinstance(tail.item, Record):
            inner = offset
            for field in tail.item.fields:
                spans.append(Span(f"{tail.name}[{index}].{field.name}", inner, inner + field.size))
                inner += field.size
        else:
            spans.append(Span(f"{tail.name}[{index}]", offset, offset + size))
        offset += size
        index += 1
    return spans


def field_spans(code: int, frame_length: int) -> list[Span]:
    """The spans of a frame of type ``code`` that is ``frame_length`` bytes long (CRC included)."""
    if code not in CATALOGUE:
        return []
    spans, offset = _fixed(code)
    tail = CATALOGUE[code].tail
    result = list(spans)
    if tail is not None:
        result += _tail(tail, offset, frame_length - 2)
    return result
