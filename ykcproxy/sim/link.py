"""The client side of one pile TCP connection, speaking frames with the project's codec.

:class:`PileLink` is deliberately thin: it writes frames (or raw bytes, for
fault injection) and hands every frame it reads to a callback or to a
waiter.  Pile behaviour lives above it (the simulator); tests use it
directly as a raw-socket pile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from ykcproxy.wire.codec import Codec, encode_frame
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.framer import Framer, RawFrame

_DEFAULT_CODEC = Codec()


@attrs.frozen
class Received:
    """A frame the pile read from the platform, decoded."""

    code: int
    seq: int
    fields: dict[str, Any]
    raw: bytes
    crc_order: CrcOrder


class PileLink(Protocol):
    """A pile's end of the TCP connection.

    Frames read are given to the oldest :meth:`expect` waiting for their
    type, else to ``on_frame``, else kept in ``unclaimed`` for a later
    :meth:`expect`.  ``received`` keeps every frame in order (unless
    ``keep`` is false).  ``on_connect``, ``on_lost`` and ``on_error`` (bytes
    or bodies that could not be read; else kept in ``errors``) let a
    simulated pile drive the link without subclassing it.
    """

    def __init__(
        self,
        codec: Codec = _DEFAULT_CODEC,
        crc_order: CrcOrder = CrcOrder.LOW_FIRST,
        on_frame: Callable[[Received], None] | None = None,
        *,
        on_connect: Callable[[PileLink], None] | None = None,
        on_lost: Callable[[PileLink, Failure], None] | None = None,
        on_error: Callable[[PileLink, Any], None] | None = None,
        keep: bool = True,
    ) -> None:
        self.codec = codec
        self.crc_order = crc_order
        self.on_frame = on_frame
        self.on_connect = on_connect
        self.on_lost = on_lost
        self.on_error = on_error
        #: Whether ``received`` keeps every frame (a long-running simulated pile does not).
        self.keep = keep
        self.received: list[Received] = []
        self.unclaimed: list[Received] = []
        self.errors: list[Any] = []
        self.seq = 0
        self.connected = False
        self.lost: Deferred[None] = Deferred()
        self._framer = Framer()
        self._waiters: list[tuple[int | None, Deferred[Received]]] = []

    def connectionMade(self) -> None:
        self.connected = True
        if self.on_connect is not None:
            self.on_connect(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = False
        failure = reason or Failure(ConnectionError("lost"))
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(failure)
        if self.on_lost is not None:
            self.on_lost(self, failure)
        if not self.lost.called:
            self.lost.callback(None)

    def dataReceived(self, data: bytes) -> None:
        for item in self._framer.feed(data):
            if not isinstance(item, RawFrame):
                self._error(item)
                continue
            try:
                fields = self.codec.decode_body(item.code, item.body)
            except Exception as e:  # a pile records what it cannot read
                self._error(e)
                continue
            got = Received(item.code, item.seq, fields, item.raw, item.crc_order)
            if self.keep:
                self.received.append(got)
            self._dispatch(got)

    def _error(self, error: Any) -> None:
        if self.on_error is not None:
            self.on_error(self, error)
        else:
            self.errors.append(error)

    def _dispatch(self, got: Received) -> None:
        for i, (code, d) in enumerate(self._waiters):
            if code is None or code == got.code:
                del self._waiters[i]
                d.callback(got)
                return
        if self.on_frame is not None:
            self.on_frame(got)
        else:
            self.unclaimed.append(got)

    # -- writing --------------------------------------------------------------
    def frame(self, code: int, fields: Mapping[str, Any], seq: int | None = None) -> bytes:
        """The bytes of a frame (checked by the codec), without sending it."""
        if seq is None:
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFFFF
        body = self.codec.encode_body(code, self.codec.check(code, dict(fields)))
        return encode_frame(code, seq, body, self.crc_order)

    def frame_body(self, code: int, body: bytes, seq: int | None = None) -> bytes:
        """The bytes of a frame around an already encoded ``body`` (no checks: the fast path)."""
        if seq is None:
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFFFF
        return encode_frame(code, seq, body, self.crc_order)

    def send(self, code: int, fields: Mapping[str, Any], seq: int | None = None) -> bytes:
        """Encode and write one frame; return its bytes."""
        data = self.frame(code, fields, seq)
        self.write(data)
        return data

    def write(self, data: bytes) -> None:
        """Write raw bytes (fault injection: split, merged, corrupted frames)."""
        assert self.transport is not None
        self.transport.write(data)

    # -- reading --------------------------------------------------------------
    def expect(self, code: int | None = None) -> Deferred[Received]:
        """The next unclaimed frame of type ``code`` (any type if None)."""
        for i, got in enumerate(self.unclaimed):
            if code is None or got.code == code:
                del self.unclaimed[i]
                return succeed(got)
        d: Deferred[Received] = Deferred()
        self._waiters.append((code, d))
        return d
