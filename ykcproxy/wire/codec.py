"""Decode, encode and check frame bodies, driven by the frame declarations.

Nothing here is specific to one frame type: :class:`Codec` compiles every
:class:`~ykcproxy.wire.frames.FrameType` of the catalogue once into a
:class:`struct.Struct` plus one small function per field.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ykcproxy.wire.crc import CrcOrder, crc16
from ykcproxy.wire.fields import Bits, Context, Field, FieldError, Putter
from ykcproxy.wire.frames import CATALOGUE, FrameType

START = 0x68


class DecodeError(ValueError):
    """A frame body that does not fit its declaration."""

    def __init__(self, ft: str, reason: str, kind: str = "length") -> None:
        super().__init__(f"frame 0x{ft}: {reason}")
        self.ft = ft
        self.kind = kind


class UnknownFrameType(KeyError):
    """A frame type code that V1.6 does not define."""

    def __str__(self) -> str:
        return f"unknown frame type 0x{self.args[0]:02x}"


@attrs.frozen
class _Compiled:
    frame: FrameType
    layout: struct.Struct
    putters: tuple[Putter, ...]
    fields: tuple[Field, ...]
    #: Fast path (frames without bit groups): one key per raw value, then conversions.
    names: tuple[str, ...] | None
    conversions: tuple[tuple[str, Callable[[Any], Any]], ...]


class Codec:
    """Decoder, encoder and validator for every frame type of a catalogue."""

    def __init__(self, catalogue: Mapping[int, FrameType] = CATALOGUE, ctx: Context | None = None) -> None:
        self.ctx = ctx or Context()
        self.catalogue = catalogue
        self._compiled: dict[int, _Compiled] = {}
        for code, frame in catalogue.items():
            fields = tuple(s for s in frame.slots if isinstance(s, Field))
            simple = not any(isinstance(f, Bits) for f in fields)
            conversions = []
            for f in fields if simple else ():
                conv = f.converter(self.ctx)
                if conv is not None:
                    conversions.append((f.name, conv))
            self._compiled[code] = _Compiled(
                frame=frame,
                layout=struct.Struct("<" + "".join(s.fmt for s in frame.slots)),
                putters=tuple(f.putter(self.ctx) for f in fields),
                fields=fields,
                names=tuple(f.name for f in fields) if simple else None,
                conversions=tuple(conversions),
            )

    def frame_type(self, code: int) -> FrameType:
        """The declaration of ``code``; raises :class:`UnknownFrameType`."""
        try:
            return self.catalogue[code]
        except KeyError:
            raise UnknownFrameType(code) from None

    def _get(self, code: int) -> _Compiled:
        try:
            return self._compiled[code]
        except KeyError:
            raise UnknownFrameType(code) from None

    def decode_body(self, code: int, body: bytes) -> dict[str, Any]:
        """The JSON-ready fields of a plain (unencrypted) body of type ``code``."""
        c = self._get(code)
        layout = c.layout
        fixed = layout.size
        tail = c.frame.tail
        if tail is None:
            if len(body) != fixed:
                raise DecodeError(c.frame.ft, f"body is {len(body)} bytes, expected {fixed}")
            raws = layout.unpack(body)
        else:
            if len(body) < fixed:
                raise DecodeError(c.frame.ft, f"body is {len(body)} bytes, expected at least {fixed}")
            raws = layout.unpack_from(body)
        if c.names is not None:
            out = dict(zip(c.names, raws))
            for name, conv in c.conversions:
                out[name] = conv(out[name])
        else:
            out = {}
            for put, raw in zip(c.putters, raws):
                put(out, raw)
        if tail is not None:
            try:
                out[tail.name] = tail.decode(body[fixed:], self.ctx)
            except ValueError as e:
                raise DecodeError(c.frame.ft, str(e)) from None
        return out

    def encode_body(self, code: int, msg: Mapping[str, Any]) -> bytes:
        """The body bytes of a message whose values were checked (see :meth:`check`)."""
        c = self._get(code)
        ctx = self.ctx
        body = c.layout.pack(*(f.take(msg, ctx) for f in c.fields))
        if c.frame.tail is not None:
            body += c.frame.tail.encode(msg[c.frame.tail.name], ctx)
        return body

    def check(self, code: int, src: Any) -> dict[str, Any]:
        """Validate and normalise a JSON object for frame ``code``.

        Unknown keys are ignored; raises :class:`FieldError` naming the field.
        """
        c = self._get(code)
        if not isinstance(src, dict):
            raise FieldError("body", "must be a JSON object")
        out: dict[str, Any] = {}
        for f in c.fields:
            f.check_into(src, out)
        if c.frame.tail is not None:
            c.frame.tail.check_into(src, out)
        return out


def encode_frame(
    code: int,
    seq: int,
    body: bytes,
    crc_order: CrcOrder = CrcOrder.LOW_FIRST,
    encrypted: bool = False,
) -> bytes:
    """A whole frame: start, length, seq (LE), encryption flag, type, body, CRC."""
    length = 4 + len(body)
    if length > 255:
        raise ValueError(f"frame 0x{code:02x}: body of {len(body)} bytes does not fit a frame")
    inner = struct.pack("<HBB", seq & 0xFFFF, 1 if encrypted else 0, code) + body
    return bytes((START, length)) + inner + crc_order.pack(crc16(inner))
