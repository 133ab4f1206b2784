"""The per-frame cost of the proxy's own code, without the network.

Frames are fed to a real :class:`PileProtocol` on a ``StringTransport`` with a
publisher that acknowledges at once, so what is measured is framing, decoding,
the policy, the JSON message and the delivery queue.  The reference in the same
run is the bare :class:`Framer` on the same bytes.

    python bench/pipeline.py [--rounds 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.defer import Deferred, succeed  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from zope.interface import implementer  # noqa: E402

from bench.common import print_machine  # noqa: E402
from ykcproxy.forward.base import IPublisher, Message  # noqa: E402
from ykcproxy.forward.delivery import Delivery  # noqa: E402
from ykcproxy.options import default_config  # noqa: E402
from ykcproxy.pile.observers import FrameObserver  # noqa: E402
from ykcproxy.pile.server import PileServerFactory  # noqa: E402
from ykcproxy.service import build_console  # noqa: E402
from ykcproxy.sessions import SessionTracker  # noqa: E402
from ykcproxy.sim.link import PileLink  # noqa: E402
from ykcproxy.wire.examples import example  # noqa: E402
from ykcproxy.wire.framer import Framer  # noqa: E402

PILE = "32010200000001"
#: The order the tracker modes charge.
TRADE = f"{PILE}01250102030405{1:04d}"
PER_CHUNK = 100


@implementer(IPublisher)
class Acknowledger:
    """A publisher that acknowledges every message at once."""

    name = "ack"

    def publish(self, message: Message) -> Deferred[None]:
        return succeed(None)

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def health(self) -> dict[str, Any]:
        return {"ok": True}


def charging_tracker(clock: Clock) -> SessionTracker:
    """A session tracker with the order of :data:`TRADE` charging, marking for a store as in the proxy."""
    tracker = SessionTracker(clock, lambda body, key: None)
    tracker.dirty = set()
    tracker.observe(PILE, "down", 0x34, {**example(0x34, PILE), "tradeSeq": TRADE, "gunId": "01"})
    reply = {**example(0x33, PILE), "tradeSeq": TRADE, "gunId": "01", "result": True, "reason": 0}
    tracker.observe(PILE, "up", 0x33, reply)
    return tracker


def charging_frames(count: int) -> bytes:
    """``count`` 0x13 frames of the charging order :data:`TRADE`, energy rising."""
    link = PileLink()
    fields = {**example(0x13, PILE), "tradeSeq": TRADE, "gunId": "01", "status": 3, "plugged": 1}
    return b"".join(link.frame(0x13, {**fields, "chargingDegrees": 1000 + i}) for i in range(count))


def proxy_rate(
    chunk: bytes, rounds: int, forward: bool, tracker: bool = False, history: bool = False
) -> float:
    """Frames/s through a logged-in pile connection.

    ``tracker``: with a session tracker observing; ``history``: with the
    console's frame history observing (``--frameHistory`` at its default),
    built as the proxy builds it.
    """
    clock = Clock()
    config = default_config(auto_verification=True, max_frame_rate=0)
    delivery = Delivery(Acknowledger(), clock) if forward else None
    observers: list[FrameObserver] = [charging_tracker(clock)] if tracker else []
    recorder = None
    if history:
        recorder = build_console(config, clock).history
        observers.append(recorder)
    factory = PileServerFactory(config, clock, delivery, observers=observers, recorder=recorder)
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(PileLink().frame(0x01, example(0x01, PILE)))
    start = time.perf_counter()
    for _ in range(rounds):
        proto.dataReceived(chunk)
        transport.clear()
    return rounds * PER_CHUNK / (time.perf_counter() - start)


def framer_rate(chunk: bytes, rounds: int) -> float:
    """Frames/s through the bare framer (the reference)."""
    framer = Framer()
    start = time.perf_counter()
    for _ in range(rounds):
        framer.feed(chunk)
    return rounds * PER_CHUNK / (time.perf_counter() - start)


def main() -> None:
    """Print frames/s per frame type: bare framer, proxy without and with forwarding."""
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    print_machine()
    link = PileLink()
    print(
        f"{'frame':8} {'framer/s':>10} {'proxy/s':>10} {'+forward/s':>11} {'ratio':>6}"
        f"  (medians of {args.repeat})"
    )
    for code in (0x03, 0x13, 0x3B):
        chunk = b"".join(link.frame(code, example(code, PILE, salt=i)) for i in range(PER_CHUNK))
        ref = statistics.median(framer_rate(chunk, args.rounds) for _ in range(args.repeat))
        bare = statistics.median(proxy_rate(chunk, args.rounds, False) for _ in range(args.repeat))
        full = statistics.median(proxy_rate(chunk, args.rounds, True) for _ in range(args.repeat))
        print(f"0x{code:02x}     {ref:10.0f} {bare:10.0f} {full:11.0f} {full / ref:6.2f}")


if __name__ == "__main__":
    main()
