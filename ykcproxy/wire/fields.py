"""Field kinds of the YKC wire format.

Each field knows four things about itself, so that one declaration per frame
type drives everything:

- its wire layout: a :mod:`struct` code (``fmt``) and its ``size`` in bytes;
- how a raw struct value becomes the JSON-ready value (``put``) and back (``take``);
- how a JSON value from a REST client is checked and normalised (``check``);
- how it is described: a JSON schema (``schema``) and a line of docs (``wire``).

The JSON value conventions are those of INTERFACE.md section 2.
"""

from __future__ import annotations

import datetime
import struct
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

#: The default timezone of pile clocks (CP56Time2a fields).
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")

_MISSING: Any = object()


class FieldError(ValueError):
    """A value that does not fit its field; the message names the field."""

    def __init__(self, path: str, rule: str) -> None:
        super().__init__(f"{path}: {rule}")
        self.path = path
        self.rule = rule


@attrs.frozen
class Context:
    """What a field needs to know beyond its own bytes (the pile clock's zone)."""

    tz: datetime.tzinfo = SHANGHAI


Putter = Callable[[dict[str, Any], Any], None]


@attrs.frozen
class Field:
    """Base of all fixed-size fields; ``name`` is the JSON key."""

    name: str
    doc: str = attrs.field(default="", kw_only=True)
    #: Value a REST client may omit (``_MISSING``: required).
    default: Any = attrs.field(default=_MISSING, kw_only=True)

    # -- layout ---------------------------------------------------------
    @property
    def size(self) -> int:
        return struct.calcsize("<" + self.fmt)

    @property
    def fmt(self) -> str:
        raise NotImplementedError

    @property
    def keys(self) -> tuple[str, ...]:
        """The JSON keys this field produces."""
        return (self.name,)

    # -- decode / encode --------------------------------------------------
    def from_raw(self, raw: Any, ctx: Context) -> Any:
        """The JSON value of a raw struct value."""
        return raw

    def to_raw(self, value: Any, ctx: Context) -> Any:
        """The raw struct value of a (checked) JSON value."""
        return value

    def converter(self, ctx: Context) -> Callable[[Any], Any] | None:
        """A function from the raw struct value to the JSON value (None: the raw value is it)."""
        if type(self).from_raw is Field.from_raw:
            return None
        from_raw = self.from_raw
        return lambda raw: from_raw(raw, ctx)

    def decode_expr(self, raw: str) -> str | None:
        """Python source computing the JSON value from a raw struct value named ``raw``.

        The codec compiles these into one decoding function per frame type;
        None means "call :meth:`converter`" (or use the raw value when that is None).
        Besides builtins, an expression may use the names of :data:`DECODE_NAMES`.
        """
        return None

    def putter(self, ctx: Context) -> Putter:
        """A function storing the decoded raw value into a message dict."""
        name = self.name
        conv = self.from_raw
        if type(self).from_raw is Field.from_raw:

            def put_plain(out: dict[str, Any], raw: Any) -> None:
                out[name] = raw

            return put_plain

        def put(out: dict[str, Any], raw: Any) -> None:
            out[name] = conv(raw, ctx)

        return put

    def take(self, msg: Mapping[str, Any], ctx: Context) -> Any:
        """The raw struct value for this field, from a checked message."""
        return self.to_raw(msg[self.name], ctx)

    # -- REST validation ---------------------------------------------------
    def check_into(self, src: Mapping[str, Any], dst: dict[str, Any], prefix: str = "") -> None:
        """Check this field's key(s) in ``src`` and put normalised values in ``dst``."""
        path = prefix + self.name
        if self.name not in src or src[self.name] is None:
            if self.default is _MISSING:
                raise FieldError(path, "is required")
            dst[self.name] = self.default
            return
        dst[self.name] = self.check(src[self.name], path)

    def check(self, value: Any, path: str) -> Any:
        """Return ``value`` normalised, or raise :class:`FieldError`."""
        raise NotImplementedError

    # -- description -------------------------------------------------------
    def schema(self) -> dict[str, Any]:
        """JSON schema of this field's value."""
        raise NotImplementedError

    def schemas(self) -> dict[str, dict[str, Any]]:
        """JSON schema per key (with the doc as description)."""
        s = dict(self.schema())
        if self.doc:
            s["description"] = self.doc
        if self.default is not _MISSING and not callable(self.default):
            s["default"] = self.default
        return {self.name: s}

    @property
    def required(self) -> tuple[str, ...]:
        return () if self.default is not _MISSING else self.keys

    def wire(self) -> str:
        """Short description of the wire type, for docs."""
        raise NotImplementedError


def _require_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise FieldError(path, f"must be a string, not {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _require_int(value: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(path, f"must be an integer, not {_json_type(value)}")
    if not lo <= value <= hi:
        raise FieldError(path, f"must be between {lo} and {hi}, got {value}")
    return value


_HEX = frozenset("0123456789ABCDEFabcdef")

#: Each one-byte string → its two uppercase hex digits.
BYTE_HEX: dict[bytes, str] = {bytes((b,)): f"{b:02X}" for b in range(256)}
#: Names the expressions of :meth:`Field.decode_expr` may use besides builtins.
DECODE_NAMES: dict[str, Any] = {"_BYTE_HEX": BYTE_HEX}


def _int_le(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


_DIGITS = frozenset("0123456789")


@attrs.frozen
class Bcd(Field):
    """BCD, ``n`` bytes, as a string of ``2n`` digits (nibbles >9 decode as A-F).

    With ``pad`` (card numbers) a REST value may be shorter; it is
    left-padded with zeros.
    """

    n: int = attrs.field(default=1, kw_only=True)
    pad: bool = attrs.field(default=False, kw_only=True)

    @property
    def fmt(self) -> str:
        return f"{self.n}s"

    def from_raw(self, raw: bytes, ctx: Context) -> str:
        return raw.hex().upper()

    def decode_expr(self, raw: str) -> str | None:
        if self.n == 1:
            return f"_BYTE_HEX[{raw}]"  # a gun number: one lookup instead of two method calls
        return f"{raw}.hex().upper()"

    def to_raw(self, value: str, ctx: Context) -> bytes:
        return bytes.fromhex(value)

    def check(self, value: Any, path: str) -> str:
        text = _require_str(value, path)
        width = 2 * self.n
        if not set(text) <= _DIGITS:
            raise FieldError(path, f"must be BCD: decimal digits only, got {text!r}")
        if self.pad and 0 < len(text) <= width:
            return text.rjust(width, "0")
        if len(text) != width:
            more = f"at most {width}" if self.pad else f"exactly {width}"
            raise FieldError(path, f"must have {more} digits, got {len(text)}")
        return text

    def schema(self) -> dict[str, Any]:
        width = 2 * self.n
        if self.pad:
            return {"type": "string", "pattern": f"^[0-9]{{1,{width}}}$"}
        return {"type": "string", "pattern": f"^[0-9]{{{width}}}$"}

    def wire(self) -> str:
        return f"BCD {self.n}"


@attrs.frozen
class Hex(Bcd):
    """A BIN byte string (card number, serial, version bytes) as uppercase hex."""

    def to_raw(self, value: str, ctx: Context) -> bytes:
        return bytes.fromhex(value)

    def check(self, value: Any, path: str) -> str:
        text = _require_str(value, path)
        width = 2 * self.n
        if not set(text) <= _HEX:
            raise FieldError(path, f"must be hexadecimal digits, got {text!r}")
        if self.pad and 0 < len(text) <= width:
            return text.rjust(width, "0").upper()
        if len(text) != width:
            more = f"at most {width}" if self.pad else f"exactly {width}"
            raise FieldError(path, f"must have {more} hex digits, got {len(text)}")
        return text.upper()

    def schema(self) -> dict[str, Any]:
        width = 2 * self.n
        if self.pad:
            return {"type": "string", "pattern": f"^[0-9A-Fa-f]{{1,{width}}}$"}
        return {"type": "string", "pattern": f"^[0-9A-Fa-f]{{{width}}}$"}

    def wire(self) -> str:
        return f"BIN {self.n} (hex)"


_UINT_FMT = {1: "B", 2: "H", 4: "I", 8: "Q"}


@attrs.frozen
class UInt(Field):
    """Little-endian unsigned integer of ``n`` bytes, raw (unscaled) value.

    ``lo``/``hi`` narrow the accepted REST range; ``scale`` documents the unit.
    """

    n: int = attrs.field(default=1, kw_only=True)
    lo: int = attrs.field(default=0, kw_only=True)
    hi: int | None = attrs.field(default=None, kw_only=True)
    choices: tuple[int, ...] = attrs.field(default=(), kw_only=True)
    scale: str = attrs.field(default="", kw_only=True)

    @property
    def fmt(self) -> str:
        return _UINT_FMT.get(self.n, f"{self.n}s")

    @property
    def maximum(self) -> int:
        return self.hi if self.hi is not None else (1 << (8 * self.n)) - 1

    def putter(self, ctx: Context) -> Putter:
        if self.n in _UINT_FMT:
            return super().putter(ctx)
        name = self.name
        frombytes = int.from_bytes

        def put(out: dict[str, Any], raw: bytes) -> None:
            out[name] = frombytes(raw, "little")

        return put

    def from_raw(self, raw: Any, ctx: Context) -> int:
        return raw if self.n in _UINT_FMT else int.from_bytes(raw, "little")

    def converter(self, ctx: Context) -> Callable[[Any], Any] | None:
        return None if self.n in _UINT_FMT else _int_le

    def to_raw(self, value: int, ctx: Context) -> Any:
        return value if self.n in _UINT_FMT else value.to_bytes(self.n, "little")

    def check(self, value: Any, path: str) -> int:
        number = _require_int(value, path, self.lo, self.maximum)
        if self.choices and number not in self.choices:
            raise FieldError(path, f"must be one of {list(self.choices)}, got {number}")
        return number

    def schema(self) -> dict[str, Any]:
        if self.choices:
            return {"type": "integer", "enum": list(self.choices)}
        return {"type": "integer", "minimum": self.lo, "maximum": self.maximum}

    def wire(self) -> str:
        text = f"BIN u{8 * self.n}"
        return f"{text}, {self.scale}" if self.scale else text


@attrs.frozen
class Bool(Field):
    """One byte read as a JSON boolean: ``true_byte`` is true, anything else false."""

    true_byte: int = attrs.field(default=1, kw_only=True)

    @property
    def fmt(self) -> str:
        return "B"

    def putter(self, ctx: Context) -> Putter:
        name = self.name
        true_byte = self.true_byte

        def put(out: dict[str, Any], raw: int) -> None:
            out[name] = raw == true_byte

        return put

    def converter(self, ctx: Context) -> Callable[[Any], Any] | None:
        return self.true_byte.__eq__

    def decode_expr(self, raw: str) -> str | None:
        return f"{raw} == {self.true_byte:d}"

    def from_raw(self, raw: int, ctx: Context) -> bool:
        return raw == self.true_byte

    def to_raw(self, value: bool, ctx: Context) -> int:
        return self.true_byte if value else (1 - self.true_byte if self.true_byte in (0, 1) else 0)

    def check(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise FieldError(path, f"must be a boolean, not {_json_type(value)}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def wire(self) -> str:
        other = self.to_raw(False, Context())
        return f"BIN u8, 0x{self.true_byte:02X} = true, 0x{other:02X} = false"


@attrs.frozen
class Ascii(Field):
    """ASCII text in ``n`` bytes, zero-padded; ``reverse`` for VINs in 0x31/0xA1."""

    n: int = attrs.field(default=1, kw_only=True)
    reverse: bool = attrs.field(default=False, kw_only=True)

    @property
    def fmt(self) -> str:
        return f"{self.n}s"

    def from_raw(self, raw: bytes, ctx: Context) -> str:
        if self.reverse:
            raw = raw[::-1]
        return raw.rstrip(b"\0").decode("ascii", "replace")

    def to_raw(self, value: str, ctx: Context) -> bytes:
        data = value.encode("ascii", "replace").ljust(self.n, b"\0")
        return data[::-1] if self.reverse else data

    def check(self, value: Any, path: str) -> str:
        text = _require_str(value, path)
        if not text.isascii():
            raise FieldError(path, "must be ASCII text")
        if "\0" in text:
            raise FieldError(path, "must not contain NUL characters")
        if len(text) > self.n:
            raise FieldError(path, f"must be at most {self.n} characters, got {len(text)}")
        return text

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": self.n}

    def wire(self) -> str:
        return f"ASCII {self.n}" + (" (reversed on the wire)" if self.reverse else "")


@attrs.frozen
class GunBin(Field):
    """A gun number written as a BIN byte (0x61-0x63): ``"12"`` is byte 12."""

    @property
    def fmt(self) -> str:
        return "B"

    def from_raw(self, raw: int, ctx: Context) -> str:
        return f"{raw:02d}"

    def to_raw(self, value: str, ctx: Context) -> int:
        return int(value)

    def check(self, value: Any, path: str) -> str:
        text = _require_str(value, path)
        if not (set(text) <= _DIGITS and 1 <= len(text) <= 3 and int(text) <= 255):
            raise FieldError(path, f"must be a gun number of decimal digits up to 255, got {text!r}")
        return f"{int(text):02d}"

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": "^[0-9]{1,3}$"}

    def wire(self) -> str:
        return "BIN u8 (gun number)"


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_ONE_MS = datetime.timedelta(milliseconds=1)


def cp56_to_ms(raw: bytes, tz: datetime.tzinfo) -> int | None:
    """Unix milliseconds of a CP56Time2a value read in ``tz``; None if no valid date."""
    ms = raw[0] | (raw[1] << 8)
    try:
        moment = datetime.datetime(
            2000 + (raw[6] & 0x7F),
            raw[5] & 0x0F,
            raw[4] & 0x1F,
            raw[3] & 0x1F,
            raw[2] & 0x3F,
            ms // 1000,
            (ms % 1000) * 1000,
            tzinfo=tz,
        )
    except ValueError:
        return None
    if ms >= 60000:
        return None
    # Integer arithmetic: a float timestamp × 1000 can come out one ms short.
    return (moment - _EPOCH) // _ONE_MS


def ms_to_cp56(ms: int | None, tz: datetime.tzinfo) -> bytes:
    """CP56Time2a bytes of unix milliseconds in ``tz``; None gives seven zeros."""
    if ms is None:
        return bytes(7)
    moment = datetime.datetime.fromtimestamp(ms // 1000, tz)
    millis = moment.second * 1000 + ms % 1000
    weekday = moment.isoweekday()
    return bytes(
        (
            millis & 0xFF,
            millis >> 8,
            moment.minute,
            moment.hour,
            moment.day | (weekday << 5),
            moment.month,
            moment.year - 2000,
        )
    )


#: Earliest and latest unix ms a CP56Time2a can hold (years 2000–2127, read in
#: Asia/Shanghai): later values would wrap the 7-bit year and not decode back.
_CP56_MIN_MS = 946_656_000_000  # 2000-01-01 00:00:00.000 +08:00
_CP56_MAX_MS = 4_985_942_399_999  # 2127-12-31 23:59:59.999 +08:00


@attrs.frozen
class Cp56(Field):
    """CP56Time2a, 7 bytes, as unix milliseconds (``null`` if not a valid date)."""

    @property
    def fmt(self) -> str:
        return "7s"

    def putter(self, ctx: Context) -> Putter:
        name = self.name
        tz = ctx.tz

        def put(out: dict[str, Any], raw: bytes) -> None:
            out[name] = cp56_to_ms(raw, tz)

        return put

    def converter(self, ctx: Context) -> Callable[[Any], Any] | None:
        tz = ctx.tz
        return lambda raw: cp56_to_ms(raw, tz)

    def from_raw(self, raw: bytes, ctx: Context) -> int | None:
        return cp56_to_ms(raw, ctx.tz)

    def to_raw(self, value: int | None, ctx: Context) -> bytes:
        return ms_to_cp56(value, ctx.tz)

    def check(self, value: Any, path: str) -> int | None:
        if value is None:
            return None
        return _require_int(value, path, _CP56_MIN_MS, _CP56_MAX_MS)

    def check_into(self, src: Mapping[str, Any], dst: dict[str, Any], prefix: str = "") -> None:
        if src.get(self.name) is None and callable(self.default):
            dst[self.name] = self.default()
            return
        if self.name in src and src[self.name] is None and self.default is _MISSING:
            # ``null`` is what an invalid (e.g. all-zero) time decodes to; it encodes as zeros.
            dst[self.name] = None
            return
        super().check_into(src, dst, prefix)

    def schema(self) -> dict[str, Any]:
        return {"type": ["integer", "null"], "minimum": 0}

    def wire(self) -> str:
        return "CP56Time2a 7 (unix ms)"


@attrs.frozen
class Bytes(Field):
    """A fixed array of ``n`` small integers (the 48 time-slot rates of 0x0A/0x58)."""

    n: int = attrs.field(default=1, kw_only=True)
    hi: int = attrs.field(default=255, kw_only=True)

    @property
    def fmt(self) -> str:
        return f"{self.n}s"

    def from_raw(self, raw: bytes, ctx: Context) -> list[int]:
        return list(raw)

    def to_raw(self, value: Sequence[int], ctx: Context) -> bytes:
        return bytes(value)

    def check(self, value: Any, path: str) -> list[int]:
        if not isinstance(value, list):
            raise FieldError(path, f"must be an array of {self.n} integers, not {_json_type(value)}")
        if len(value) != self.n:
            raise FieldError(path, f"must have exactly {self.n} values, got {len(value)}")
        return [_require_int(v, f"{path}[{i}]", 0, self.hi) for i, v in enumerate(value)]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": self.hi},
            "minItems": self.n,
            "maxItems": self.n,
        }

    def wire(self) -> str:
        return f"BIN {self.n} × u8 (0–{self.hi})"


@attrs.frozen
class Bits(Field):
    """A group of bit fields packed from the least significant bit up.

    ``parts`` is a sequence of ``(name, width)``; a ``None`` name is reserved.
    ``name`` is only a label for docs.
    """

    parts: tuple[tuple[str | None, int], ...] = attrs.field(default=(), kw_only=True)
    n: int = attrs.field(default=1, kw_only=True)
    #: Optional ``(name, doc)`` pairs describing single parts.
    part_docs: tuple[tuple[str, str], ...] = attrs.field(default=(), kw_only=True)

    def part_doc(self, name: str) -> str:
        """The description of part ``name`` ("" if none)."""
        return dict(self.part_docs).get(name, "")

    @property
    def fmt(self) -> str:
        return _UINT_FMT.get(self.n, f"{self.n}s")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.parts if name)

    def _layout(self) -> list[tuple[str, int, int]]:
        shift = 0
        layout = []
        for name, width in self.parts:
            if name:
                layout.append((name, shift, (1 << width) - 1))
            shift += width
        return layout

    def putter(self, ctx: Context) -> Putter:
        layout = self._layout()
        wide = self.n not in _UINT_FMT

        def put(out: dict[str, Any], raw: Any) -> None:
            value = int.from_bytes(raw, "little") if wide else raw
            for name, shift, mask in layout:
                out[name] = (value >> shift) & mask

        return put

    def take(self, msg: Mapping[str, Any], ctx: Context) -> Any:
        value = 0
        for name, shift, _ in self._layout():
            value |= msg[name] << shift
        return value.to_bytes(self.n, "little") if self.n not in _UINT_FMT else value

    def check_into(self, src: Mapping[str, Any], dst: dict[str, Any], prefix: str = "") -> None:
        for name, width in self.parts:
            if not name:
                continue
            if name not in src:
                raise FieldError(prefix + name, "is required")
            dst[name] = _require_int(src[name], prefix + name, 0, (1 << width) - 1)

    def schemas(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, width in self.parts:
            if name:
                out[name] = {"type": "integer", "minimum": 0, "maximum": (1 << width) - 1}
                if self.part_doc(name):
                    out[name]["description"] = self.part_doc(name)
        return out

    def wire(self) -> str:
        return f"BIN {self.n}, bit fields"

    def bit_rows(self) -> list[tuple[str | None, int, int]]:
        """(name, first bit, width) for docs."""
        rows, shift = [], 0
        for name, width in self.parts:
            rows.append((name, shift, width))
            shift += width
        return rows


@attrs.frozen
class Reserved:
    """Reserved bytes: not in JSON, written as zeros."""

    n: int = 1

    @property
    def fmt(self) -> str:
        return f"{self.n}x"

    @property
    def size(self) -> int:
        return self.n

    keys: tuple[str, ...] = ()


@attrs.frozen
class Record:
    """A fixed-size group of fields, one element of a card list."""

    fields: tuple[Field, ...]

    @property
    def fmt(self) -> str:
        return "".join(f.fmt for f in self.fields)

    @property
    def size(self) -> int:
        return struct.calcsize("<" + self.fmt)


@attrs.frozen
class ListOf:
    """A list at the end of a body.

    The element is a :class:`Record` (elements are JSON objects) or a single
    field (elements are plain values).  With ``counted`` a count byte comes
    first; otherwise the count follows from the frame length.
    """

    name: str
    item: Record | Field
    counted: bool = True
    lo: int = 1
    hi: int = 255
    doc: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def item_size(self) -> int:
        return self.item.size

    def _struct(self) -> struct.Struct:
        return struct.Struct("<" + self.item.fmt)

    def decode(self, data: bytes, ctx: Context) -> list[Any]:
        """Decode the list from the rest of a body; raises ValueError if it does not fit."""
        size = self.item_size
        if self.counted:
            if not data:
                raise ValueError(f"{self.name}: the count byte is missing")
            count, data = data[0], data[1:]
            if len(data) != count * size:
                raise ValueError(
                    f"{self.name}: count byte says {count} entries of {size} bytes, "
                    f"but {len(data)} bytes follow"
                )
        elif len(data) % size:
            raise ValueError(f"{self.name}: {len(data)} bytes is not a whole number of {size}-byte entries")
        layout = self._struct()
        out: list[Any] = []
        if isinstance(self.item, Record):
            putters = [f.putter(ctx) for f in self.item.fields]
            for raws in layout.iter_unpack(data):
                entry: dict[str, Any] = {}
                for put, raw in zip(putters, raws, strict=True):
                    put(entry, raw)
                out.append(entry)
        else:
            field = self.item
            for (raw,) in layout.iter_unpack(data):
                out.append(field.from_raw(raw, ctx))
        return out

    def encode(self, value: Sequence[Any], ctx: Context) -> bytes:
        """The wire bytes of a checked list."""
        layout = self._struct()
        parts = [bytes((len(value),))] if self.counted else []
        if isinstance(self.item, Record):
            fields = self.item.fields
            for entry in value:
                parts.append(layout.pack(*(f.take(entry, ctx) for f in fields)))
        else:
            field = self.item
            for element in value:
                parts.append(layout.pack(field.to_raw(element, ctx)))
        return b"".join(parts)

    def check_into(self, src: Mapping[str, Any], dst: dict[str, Any], prefix: str = "") -> None:
        path = prefix + self.name
        if self.name not in src:
            raise FieldError(path, "is required")
        value = src[self.name]
        if not isinstance(value, list):
            raise FieldError(path, f"must be an array, not {_json_type(value)}")
        if not self.lo <= len(value) <= self.hi:
            raise FieldError(path, f"must have {self.lo} to {self.hi} entries, got {len(value)}")
        checked: list[Any] = []
        for i, element in enumerate(value):
            where = f"{path}[{i}]"
            if isinstance(self.item, Record):
                if not isinstance(element, dict):
                    raise FieldError(where, f"must be an object, not {_json_type(element)}")
                entry: dict[str, Any] = {}
                for f in self.item.fields:
                    f.check_into(element, entry, where + ".")
                checked.append(entry)
            else:
                checked.append(self.item.check(element, where))
        dst[self.name] = checked

    def schemas(self) -> dict[str, dict[str, Any]]:
        if isinstance(self.item, Record):
            props: dict[str, Any] = {}
            required: list[str] = []
            for f in self.item.fields:
                props.update(f.schemas())
                required.extend(f.required)
            items: dict[str, Any] = {"type": "object", "properties": props, "required": required}
        else:
            items = self.item.schema()
        s: dict[str, Any] = {"type": "array", "items": items, "minItems": self.lo, "maxItems": self.hi}
        if self.doc:
            s["description"] = self.doc
        return {self.name: s}

    @property
    def required(self) -> tuple[str, ...]:
        return (self.name,)

    def wire(self) -> str:
        how = "count byte, then" if self.counted else "as many as the length holds:"
        return f"{how} {self.lo}–{self.hi} × {self.item_size} bytes"


#: Anything a frame declaration can list in its fixed part.
Slot = Field | Reserved
