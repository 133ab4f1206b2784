"""Incremental frame splitter: bytes in, whole frames and framing errors out.

The framer keeps one buffer.  It looks for the start byte 0x68, reads the
length byte (4..255), waits until the whole frame is there and checks the
CRC in either byte order.  Anything that is not a frame is skipped one byte
at a time, so a frame that follows garbage, a false start or a corrupted
frame is still found.

One bad frame is one error: the bytes of a candidate that failed its CRC
are *covered*.  While the framer rescans them, garbage among them and the
failed candidates that start inside them fold into that ``crc`` error (they
are not reported again); a valid frame among them is still delivered.
"""

from __future__ import annotations

from typing import NamedTuple

import attrs

from ykcproxy.wire.crc import CrcOrder, crc16

START = 0x68
MIN_LENGTH = 4
#: Bytes around the inner part: start, length, and two CRC bytes.
OVERHEAD = 4


class RawFrame(NamedTuple):
    """One frame as it came off the wire (CRC already checked).

    A NamedTuple rather than a frozen attrs class: one is built per frame,
    and a tuple is the cheapest immutable value to build.
    """

    seq: int
    encrypted: bool
    code: int
    body: bytes
    raw: bytes
    crc_order: CrcOrder

    @property
    def length(self) -> int:
        """The frame's length byte."""
        return self.raw[1]


@attrs.frozen(slots=True)
class FramingError:
    """Bytes that were dropped, and why (``kind``: garbage, length, crc)."""

    kind: str
    data: bytes
    detail: str = ""


class Framer:
    """Split a byte stream into frames.

    ``orders`` lists the CRC byte orders accepted (both by default).
    """

    def __init__(self, orders: tuple[CrcOrder, ...] = (CrcOrder.LOW_FIRST, CrcOrder.HIGH_FIRST)) -> None:
        self._buf = bytearray()
        self._orders = orders
        #: How many bytes at the start of the buffer an emitted ``crc`` error covers.
        self._covered = 0

    @property
    def pending(self) -> int:
        """How many bytes are waiting for the rest of their frame."""
        return len(self._buf)

    def resync(self) -> list[RawFrame | FramingError]:
        """Give up on a stalled partial frame: drop its start byte and look again.

        A false start byte with a large length byte makes the framer wait for
        bytes that will never come; the real frames behind it are found by
        this rescan.
        """
        if not self._buf:
            return []
        dropped = bytes(self._buf[:1])
        del self._buf[:1]
        if self._covered:
            # The byte was reported in a crc error already.
            self._covered -= 1
            return self.feed(b"")
        return [FramingError("stall", dropped, "partial frame never completed"), *self.feed(b"")]

    def feed(self, data: bytes) -> list[RawFrame | FramingError]:
        """Add ``data`` and return every frame and error it completes, in order."""
        out: list[RawFrame | FramingError] = []
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        orders = self._orders
        #: Bytes before this index were reported in a crc error.
        covered = self._covered
        try:
            while pos < end:
                if buf[pos] != START:
                    nxt = buf.find(START, pos)
                    if nxt < 0:
                        nxt = end
                    if nxt > covered:
                        run = bytes(buf[max(pos, covered) : nxt])
                        out.append(FramingError("garbage", run, "bytes before a start byte"))
                    pos = nxt
                    continue
                if end - pos < 2:
                    break
                length = buf[pos + 1]
                if length < MIN_LENGTH:
                    if pos >= covered:
                        out.append(
                            FramingError(
                                "length",
                                bytes(buf[pos : pos + 2]),
                                f"length byte {length} < 4",
                            )
                        )
                    pos += 1
                    continue
                total = length + OVERHEAD
                if end - pos < total:
                    break
                inner = bytes(buf[pos + 2 : pos + 2 + length])
                crc = crc16(inner)
                lo, hi = buf[pos + total - 2], buf[pos + total - 1]
                if lo == (crc & 0xFF) and hi == (crc >> 8) and CrcOrder.LOW_FIRST in orders:
                    order = CrcOrder.LOW_FIRST
                elif hi == (crc & 0xFF) and lo == (crc >> 8) and CrcOrder.HIGH_FIRST in orders:
                    order = CrcOrder.HIGH_FIRST
                else:
                    if pos >= covered:
                        out.append(
                            FramingError(
                                "crc",
                                bytes(buf[pos : pos + total]),
                                f"CRC {lo:02x}{hi:02x} does not match {crc:04x}",
                            )
                        )
                        covered = pos + total
                    pos += 1
                    continue
                out.append(
                    RawFrame(
                        seq=inner[0] | (inner[1] << 8),
                        encrypted=inner[2] != 0,
                        code=inner[3],
                        body=inner[4:],
                        raw=bytes(buf[pos : pos + total]),
                        crc_order=order,
                    )
                )
                pos += total
        finally:
            del buf[:pos]
            self._covered = covered - pos if covered > pos else 0
        return out
