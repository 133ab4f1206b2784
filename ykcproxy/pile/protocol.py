"""The Protocol of one pile TCP connection: framing, silence timer, writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import error
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from ykcproxy.pile.session import PileSession
from ykcproxy.wire.codec import encode_frame
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.framer import Framer, FramingError, RawFrame

if TYPE_CHECKING:
    from ykcproxy.pile.server import PileServerFactory


#: Seconds a partial frame may wait for the rest of its bytes before the framer
#: gives up on its start byte and rescans (a false 0x68 with a large length byte).
STALL_TIMEOUT = 3.0


class PileProtocol(Protocol):
    """One TCP connection from a pile (or a concentrator carrying several).

    Bytes go through a :class:`Framer`; whole frames and framing errors go to
    the factory, which holds the policy.  The connection remembers the CRC
    byte order its pile uses and answers in it.  A connection that stays
    silent for the factory's silence timeout is closed (reason ``timeout``).
    """

    factory: PileServerFactory

    def __init__(self) -> None:
        self.sessions: dict[str, PileSession] = {}
        self.crc_order = CrcOrder.LOW_FIRST
        self.remote = ""
        #: The remote address without its port (for per-address limits).
        self.host = ""
        self.connected_at = 0.0
        self.last_seen = 0.0
        self.close_reason: str | None = None
        self._framer: Framer | None = None
        self._silence: IDelayedCall | None = None
        self._silence_suspended = False
        #: When silence counting last restarted (a pause of reading ended).
        self._heard_floor = 0.0
        self._stall: IDelayedCall | None = None

    # -- connection lifecycle --------------------------------------------------
    def connectionMade(self) -> None:
        f = self.factory
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.host = str(getattr(peer, "host", "?"))
        self.remote = f"{self.host}:{getattr(peer, 'port', '?')}"
        self.connected_at = self.last_seen = f.clock.seconds()
        self.crc_order = f.initial_crc_order
        self._framer = Framer(f.config.crc_mode.orders)
        self._arm_silence(f.config.silence_timeout)
        f.connection_made(self)

    def connectionLost(self, reason: Failure = Failure(error.ConnectionDone())) -> None:
        for timer in (self._silence, self._stall):
            if timer is not None and timer.active():
                timer.cancel()
        self._silence = self._stall = None
        if self.close_reason is None:
            self.close_reason = "closed" if reason.check(error.ConnectionDone) else "error"
        self.factory.connection_lost(self, self.close_reason)

    def close(self, reason: str, abort: bool = False) -> None:
        """Close the connection, recording why (closed, timeout, replaced, error, shutdown)."""
        if self.close_reason is None:
            self.close_reason = reason
        if self.transport is not None:
            if abort:
                self.transport.abortConnection()  # type: ignore[attr-defined]
            else:
                self.transport.loseConnection()

    # -- input ------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:
        assert self._framer is not None
        self._handle(self._framer.feed(data))
        stall = self._stall
        if self._framer.pending:
            if stall is None or not stall.active():
                self._stall = self.factory.clock.callLater(STALL_TIMEOUT, self._stalled)
            else:
                stall.reset(STALL_TIMEOUT)
        elif stall is not None and stall.active():
            stall.cancel()

    def _stalled(self) -> None:
        self._stall = None
        assert self._framer is not None
        self._handle(self._framer.resync())
        if self._framer.pending and self.close_reason is None:
            self._stall = self.factory.clock.callLater(STALL_TIMEOUT, self._stalled)

    def _handle(self, items: list[RawFrame | FramingError]) -> None:
        f = self.factory
        now = f.clock.seconds()
        for item in items:
            if type(item) is RawFrame:
                self.last_seen = now
                if (
                    f.follow_crc_order
                    and self.crc_order is not item.crc_order
                    and item.raw[-2] != item.raw[-1]
                ):
                    self.crc_order = item.crc_order
                f.frame_received(self, item)
            else:
                f.framing_error(self, item)  # type: ignore[arg-type]  # not narrowed by `type() is`
            if self.close_reason is not None:
                break

    # -- output -----------------------------------------------------------------
    def send(self, code: int, seq: int, body: bytes) -> bytes:
        """Write one frame to the pile in its CRC order; return the bytes written."""
        frame = encode_frame(code, seq, body, self.crc_order)
        if self.transport is not None and self.close_reason is None:
            self.transport.write(frame)
        return frame

    # -- silence ------------------------------------------------------------------
    def _arm_silence(self, delay: float) -> None:
        self._silence = self.factory.clock.callLater(delay, self._check_silence)

    def _check_silence(self) -> None:
        self._silence = None
        timeout = self.factory.config.silence_timeout
        now = self.factory.clock.seconds()
        if self._silence_suspended:
            self.last_seen = now
        idle = now - self.last_seen
        if idle >= timeout:
            self.factory.log.info(
                "pile connection {remote} silent for {idle:.0f}s; closing",
                remote=self.remote,
                idle=idle,
                piles=list(self.sessions),
            )
            self.close("timeout", abort=True)
            return
        next_check = timeout - idle
        if len(self.sessions) > 1 and not self._silence_suspended:
            # A concentrator link: one of its piles can fall silent while the others talk.
            next_check = min(next_check, self.factory.expire_silent_piles(self, now, self._heard_floor))
        self._arm_silence(next_check)

    def pause(self, paused: bool) -> None:
        """Stop or resume reading from this pile; its silence timer is suspended meanwhile."""
        if self.transport is None:
            return
        if paused:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        else:
            self.transport.resumeProducing()  # type: ignore[attr-defined]
        stall = self._stall
        if paused and stall is not None and stall.active():
            stall.cancel()
            self._stall = None
        elif not paused and self._stall is None and self._framer is not None and self._framer.pending:
            self._stall = self.factory.clock.callLater(STALL_TIMEOUT, self._stalled)
        self.suspend_silence(paused)

    def suspend_silence(self, suspended: bool) -> None:
        """While the proxy itself does not read this pile, its silence is not its fault."""
        self._silence_suspended = suspended
        self.last_seen = self._heard_floor = self.factory.clock.seconds()

    def describe(self) -> dict[str, Any]:
        """A short view for logs."""
        return {"remote": self.remote, "piles": list(self.sessions)}
