"""CRC-16/MODBUS as YKC uses it, and the two byte orders piles write it in.

The spec says the CRC is sent low byte first; piles built from the spec's own
C function send it high byte first.  See ``spec/NOTES.md``.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable

import attrs


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_python(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """Return the CRC-16/MODBUS (init 0xFFFF, reflected 0xA001) of ``data``.

    ``crc`` is the register to start from (the init value, or the CRC of what
    came before).
    """
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def _fast_crc16() -> Callable[[bytes], int] | None:
    """crcmod-plus's C implementation, if installed and agreeing with ours (15x faster)."""
    try:
        from crcmod.predefined import mkCrcFun
    except ImportError:
        return None
    fast: Callable[[bytes], int] = mkCrcFun("modbus")
    probe = bytes(range(256))
    return fast if fast(probe) == crc16_python(probe) and fast(b"123456789") == 0x4B37 else None


crc16: Callable[[bytes], int] = _fast_crc16() or crc16_python


@functools.cache
def _seq_tables(tail_length: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """What each value of a seq's low byte and of its high byte adds to the CRC (see :class:`SeqCrc`)."""
    zeros = bytes(tail_length)
    low = tuple(crc16_python(bytes((b, 0)) + zeros, 0) for b in range(256))
    high = tuple(crc16_python(bytes((0, b)) + zeros, 0) for b in range(256))
    return low, high


@attrs.frozen
class SeqCrc:
    """The CRC-16 of ``seq + tail`` for every 16-bit ``seq`` (little-endian) and one fixed ``tail``.

    A platform→pile frame that always carries the same body (a heartbeat's
    answer) differs from the last one only in its first two CRC'd bytes, the
    seq.  The CRC is linear: for messages of one length, the CRC of
    ``a XOR b`` is the CRC of ``a`` XOR the CRC of ``b`` computed from a zero
    register.  So the CRC of ``seq + tail`` is the CRC of ``00 00 + tail``
    (``base``) XOR what the seq's low byte and its high byte each add at their
    place (two tables of 256 per length of ``tail``, shared): two lookups
    instead of a pass over the bytes.
    """

    base: int
    low: tuple[int, ...]
    high: tuple[int, ...]

    @classmethod
    def of_tail(cls, tail: bytes) -> SeqCrc:
        """The CRCs of the frames whose CRC'd bytes are a seq and then ``tail``."""
        low, high = _seq_tables(len(tail))
        return cls(crc16(bytes(2) + tail), low, high)

    def crc(self, seq: int) -> int:
        """The CRC-16 of ``seq`` (two bytes, little-endian) followed by the tail."""
        return self.base ^ self.low[seq & 0xFF] ^ self.high[seq >> 8]


class CrcOrder(enum.Enum):
    """The byte order of the CRC field on the wire."""

    LOW_FIRST = "low-first"  #: what the spec says, and what its samples use
    HIGH_FIRST = "high-first"  #: what piles built from the appendix C code send

    def pack(self, crc: int) -> bytes:
        """The two CRC bytes in this order."""
        if self is CrcOrder.LOW_FIRST:
            return bytes((crc & 0xFF, crc >> 8))
        return bytes((crc >> 8, crc & 0xFF))

    def unpack(self, two: bytes | bytearray) -> int:
        """The CRC value of two bytes written in this order."""
        if self is CrcOrder.LOW_FIRST:
            return two[0] | (two[1] << 8)
        return (two[0] << 8) | two[1]
