"""The Protocol of one pile TCP connection: framing, silence timer, writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import error
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ykcproxy.pile.limits import ErrorBudget, FrameRate, ThrottledLog
from ykcproxy.pile.session import PileSession
from ykcproxy.wire.codec import encode_frame
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.framer import Framer, FramingError, RawFrame

if TYPE_CHECKING:
    from ykcproxy.pile.server import PileServerFactory


#: Seconds a partial frame may wait for the rest of its bytes before the framer
#: gives up on its start byte and rescans (a false 0x68 with a large length byte).
STALL_TIMEOUT = 3.0
#: What a transport buffers before it tells its producer to pause (Twisted's default).
TRANSPORT_BUFFER = 65536


@implementer(IPushProducer)
class OutputWatch:
    """Registered as the transport's producer only to learn when its write buffer is full.

    While it is full, ``queued`` counts the bytes written since; the connection
    adds the transport's own buffer size to judge ``--maxOutputBuffer``.
    """

    def __init__(self) -> None:
        self.full = False
        self.queued = 0

    def pauseProducing(self) -> None:
        self.full = True
        self.queued = 0

    def resumeProducing(self) -> None:
        self.full = False
        self.queued = 0

    def stopProducing(self) -> None:
        self.full = False


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
        #: The seq of the latest whole frame read (None: none yet), for log lines.
        self.last_seq: int | None = None
        self.close_reason: str | None = None
        self._framer: Framer | None = None
        self._silence: IDelayedCall | None = None
        self._silence_suspended = False
        #: When silence counting last restarted (a pause of reading ended).
        self._heard_floor = 0.0
        self._stall: IDelayedCall | None = None
        self._login_timer: IDelayedCall | None = None
        #: Seconds of the login timeout left while reading is paused.
        self._login_left: float | None = None
        #: How many piles have an accepted login on this link (kept by the registry).
        self.accepted = 0
        self.rate: FrameRate | None = None
        self.budget: ErrorBudget | None = None
        self.bad_log: ThrottledLog | None = None
        self._output: OutputWatch | None = None
        self._output_limit = 0
        self._transport_buffer = TRANSPORT_BUFFER

    # -- connection lifecycle --------------------------------------------------
    def connectionMade(self) -> None:
        f = self.factory
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.host = str(getattr(peer, "host", "?"))
        self.remote = f"{self.host}:{getattr(peer, 'port', '?')}"
        self.connected_at = self.last_seen = f.clock.seconds()
        self.crc_order = f.initial_crc_order
        config = f.config
        self._framer = Framer(config.crc_mode.orders)
        self._arm_silence(config.silence_timeout)
        now = self.connected_at
        if config.max_frame_rate > 0:
            self.rate = FrameRate(config.max_frame_rate, now)
        if config.error_budget > 0:
            self.budget = ErrorBudget(config.error_budget, now)
        self.bad_log = ThrottledLog(f.clock, f.log, self.remote)
        if config.login_timeout > 0:
            self._login_timer = f.clock.callLater(config.login_timeout, self._login_expired)
        if config.max_output_buffer > 0:
            self._output = OutputWatch()
            self._output_limit = config.max_output_buffer
            self._transport_buffer = getattr(self.transport, "bufferSize", TRANSPORT_BUFFER)
            self.transport.registerProducer(self._output, True)  # type: ignore[union-attr]
        f.connection_made(self)

    def connectionLost(self, reason: Failure = Failure(error.ConnectionDone())) -> None:
        for timer in (self._silence, self._stall, self._login_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._silence = self._stall = self._login_timer = None
        self._output = None
        if self.bad_log is not None:
            self.bad_log.flush()
        if self.close_reason is None:
            self.close_reason = "closed" if reason.check(error.ConnectionDone) else "error"
        self.factory.connection_lost(self, self.close_reason)

    def close(self, reason: str, abort: bool = False) -> None:
        """Close the connection, recording why (closed, timeout, replaced, error, shutdown...)."""
        if self.close_reason is None:
            self.close_reason = reason
        if self._output is not None and self.transport is not None:
            self._output = None
            self.transport.unregisterProducer()  # type: ignore[attr-defined]  # or loseConnection waits
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
        rate = self.rate
        tokens = rate.refill(now, self.accepted) if rate is not None else 0.0
        for item in items:
            if type(item) is RawFrame:
                if rate is not None:
                    if tokens < 1.0:
                        f.over_rate(self, item)
                        continue
                    tokens -= 1.0
                self.last_seen = now
                self.last_seq = item.seq
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
        if rate is not None:
            rate.tokens = tokens

    # -- login timeout ----------------------------------------------------------
    def login_accepted(self) -> None:
        """A pile's login was accepted on this link: the login timeout is over."""
        self.accepted += 1
        self._login_left = None
        timer = self._login_timer
        if timer is not None:
            self._login_timer = None
            if timer.active():
                timer.cancel()

    def _login_expired(self) -> None:
        self._login_timer = None
        if not self.accepted and self.close_reason is None:
            self.factory.login_timed_out(self)

    # -- output -----------------------------------------------------------------
    def send(self, code: int, seq: int, body: bytes) -> bytes:
        """Write one frame to the pile in its CRC order; return the bytes written."""
        frame = encode_frame(code, seq, body, self.crc_order)
        self.write_frame(frame)
        return frame

    def write_frame(self, frame: bytes) -> None:
        """Write a whole frame (already in this pile's CRC order), unless the link is closing.

        While the transport's buffer is full, the bytes written since count
        toward ``--maxOutputBuffer``; over it the link is closed (``slow-reader``).
        """
        if self.transport is not None and self.close_reason is None:
            output = self._output
            if output is not None and output.full:
                output.queued += len(frame)
                queued = output.queued + self._transport_buffer
                if queued > self._output_limit:
                    self.factory.slow_reader(self, queued)
                    return
            self.transport.write(frame)

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
                idle=idle,
                **self.log_fields(),
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
        """While the proxy itself does not read this pile, its silence is not its fault.

        Neither is its missing login: the login timeout stops meanwhile.
        """
        self._silence_suspended = suspended
        clock = self.factory.clock
        timer = self._login_timer
        if suspended and timer is not None and timer.active():
            self._login_left = max(0.0, timer.getTime() - clock.seconds())
            timer.cancel()
            self._login_timer = None
        elif not suspended and self._login_left is not None:
            if not self.accepted and self.close_reason is None:
                self._login_timer = clock.callLater(self._login_left, self._login_expired)
            self._login_left = None
        self.last_seen = self._heard_floor = self.factory.clock.seconds()

    def log_fields(self, seq: int | None = None) -> dict[str, Any]:
        """The fields of every log line about this link: ``pile_id``, ``remote``, ``seq``, ``piles``.

        ``pile_id`` is the link's pile ('' before any login; a concentrator's
        first); ``piles`` lists them all; ``seq`` is the frame the line is
        about, else the latest read.
        """
        piles = list(self.sessions)
        return {
            "pile_id": piles[0] if piles else "",
            "piles": piles,
            "remote": self.remote,
            "seq": self.last_seq if seq is None else seq,
        }

    def describe(self) -> dict[str, Any]:
        """A short view for logs."""
        return {"remote": self.remote, "piles": list(self.sessions)}
