"""Burst load: logged-in piles send uplink frames as fast as told (for benchmarks).

Each pile's frames are encoded once (a ring of ``ring`` frames with distinct
seqs), so the sender costs little more than the writes.  A step either paces
a total rate (frames per second over all piles, in 10 ms ticks) or, with
rate ``None``, writes as fast as each connection takes bytes (a push
producer per connection: TCP flow control paces it to what the server reads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from ykcproxy.sim.pile import SimPile
from ykcproxy.wire.examples import example

TICK = 0.01


@implementer(IPushProducer)
class _Pump:
    """Writes one pile's ring of frames while its transport takes them."""

    def __init__(self, sender: BurstSender, pile: SimPile, blob: bytes, frames: int) -> None:
        self.sender = sender
        self.pile = pile
        self.blob = blob
        self.frames = frames
        self.paused = False
        self.stopped = False
        self.call: IDelayedCall | None = None

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._write()

    def stopProducing(self) -> None:
        self.stopped = True

    def _write(self) -> None:
        self.call = None
        link = self.pile.link
        if self.stopped or link is None or not link.connected or link.transport is None:
            return
        for _ in range(8):
            if self.paused or self.stopped:
                return
            link.transport.write(self.blob)
            self.sender.count(self.frames)
        if not self.paused:
            self.call = self.sender.clock.callLater(0, self._write)


class BurstSender:
    """Sends pre-encoded frames of type ``code`` from every logged-in pile."""

    def __init__(
        self,
        piles: Sequence[SimPile],
        clock: IReactorTime,
        code: int = 0x13,
        ring: int = 64,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        self.clock = clock
        self.code = code
        self.piles = [p for p in piles if p.link is not None and p.logged_in]
        self.sent = 0
        self.on_count = on_count
        self._rings: list[list[bytes]] = []
        self._cursor: list[int] = []
        for pile in self.piles:
            assert pile.link is not None
            if code == 0x13:
                fields = pile.realtime_fields(pile.guns[0])
            else:
                fields = pile.codec.check(code, example(code, pile.pile_id))
            body = pile.codec.encode_body(code, fields)
            self._rings.append([pile.link.frame_body(code, body, 0x8000 + i) for i in range(ring)])
            self._cursor.append(0)
        self._budget = 0.0
        self._rr = 0
        self._tick_call: IDelayedCall | None = None
        self._pumps: list[_Pump] = []
        self._rate: float | None = 0.0
        self._last = 0.0

    def count(self, frames: int) -> None:
        """Note ``frames`` written."""
        self.sent += frames
        if self.on_count is not None:
            self.on_count(frames)

    def run(self, rate: float | None, seconds: float) -> Deferred[int]:
        """Send at ``rate`` frames/s (None: as fast as taken) for ``seconds``; fires with frames sent."""
        self.stop()
        start = self.sent
        self._rate = rate
        if rate is None:
            for pile, ring in zip(self.piles, self._rings):
                link = pile.link
                if link is None or link.transport is None or not link.connected:
                    continue
                pump = _Pump(self, pile, b"".join(ring), len(ring))
                link.transport.registerProducer(pump, True)  # type: ignore[attr-defined]
                self._pumps.append(pump)
                pump.resumeProducing()
        else:
            self._budget = 0.0
            self._last = self.clock.seconds()
            self._tick_call = self.clock.callLater(TICK, self._tick)

        def done() -> None:
            self.stop()
            d.callback(self.sent - start)

        def cancel(_: Deferred[int]) -> None:  # an interrupted run (Ctrl-C): stop sending now
            if timer.active():
                timer.cancel()
            self.stop()

        d: Deferred[int] = Deferred(cancel)
        timer = self.clock.callLater(seconds, done)
        return d

    def stop(self) -> None:
        """Stop sending."""
        if self._tick_call is not None and self._tick_call.active():
            self._tick_call.cancel()
        self._tick_call = None
        for pump in self._pumps:
            pump.stopped = True
            if pump.call is not None and pump.call.active():
                pump.call.cancel()
            link = pump.pile.link
            if link is not None and link.transport is not None and link.connected:
                link.transport.unregisterProducer()  # type: ignore[attr-defined]
        self._pumps = []

    def _tick(self) -> None:
        now = self.clock.seconds()
        assert self._rate is not None
        self._budget += self._rate * (now - self._last)
        self._last = now
        n = int(self._budget)
        self._budget -= n
        piles = len(self.piles)
        if n and piles:
            each, extra = divmod(n, piles)
            for _ in range(piles if each else extra):
                i = self._rr
                self._rr = (i + 1) % piles
                k = each + (1 if extra > 0 else 0)
                extra -= 1
                self._write(i, k)
        self._tick_call = self.clock.callLater(TICK, self._tick)

    def _write(self, i: int, k: int) -> None:
        link = self.piles[i].link
        if k <= 0 or link is None or link.transport is None or not link.connected:
            return
        ring = self._rings[i]
        c = self._cursor[i]
        size = len(ring)
        parts: list[bytes] = []
        left = k
        while left:
            take = min(left, size - c)
            parts.extend(ring[c : c + take])
            c = (c + take) % size
            left -= take
        self._cursor[i] = c
        link.transport.write(b"".join(parts))
        self.count(k)
