"""Soak: 20 honest piles heartbeating while 4 hostile links send random and mutated frames.

The proxy runs as its own process with its default limits; the honest piles
(one connection each, from 127.0.0.1) send a heartbeat a second and time the
0x04; the hostile links connect from 127.0.0.2–127.0.0.5 (so a per-address
limit could not hit the honest piles), reconnect whenever they are closed,
and send ``--hostile`` inputs in total.  Reported: the honest round trips in a
quiet window and during the attack (same run), answers missing, honest piles
disconnected, and the proxy's peak RSS.

    python bench/soak.py [--honest 20] [--hostile 20000] [--quiet 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol  # noqa: E402
from twisted.internet.protocol import Protocol  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from bench.common import print_machine, start_proxy, workdir  # noqa: E402
from ykcproxy.sim.hostile import hostile_frames  # noqa: E402
from ykcproxy.sim.link import PileLink  # noqa: E402
from ykcproxy.wire.examples import example  # noqa: E402


class Attacker(Protocol):
    """Sends a share of the hostile inputs in bursts; the runner reconnects it when closed."""

    def __init__(self, inputs: list[bytes], done: Deferred[None]) -> None:
        self.inputs = inputs
        self.done = done

    def connectionMade(self) -> None:
        self.burst()

    def burst(self) -> None:
        if not self.inputs or not self.transport.connected:  # type: ignore[union-attr]
            return
        chunk, rest = self.inputs[:20], self.inputs[20:]
        self.inputs[:] = rest
        self.transport.write(b"".join(chunk))  # type: ignore[union-attr]
        reactor.callLater(0.001, self.burst)  # type: ignore[attr-defined]

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(None)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) of ``values`` in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@inlineCallbacks
def run(args: argparse.Namespace, port: int, proc: Any) -> Any:
    piles = [f"320103{i:08d}" for i in range(1, args.honest + 1)]
    links: list[PileLink] = []
    for pile in piles:
        link = PileLink()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), link)
        link.send(0x01, example(0x01, pile))
        yield link.expect(0x02)
        links.append(link)
    rtts: dict[str, list[float]] = {"quiet": [], "attack": []}
    missing = [0]
    phase = ["quiet"]
    running = [True]

    @inlineCallbacks
    def heartbeat(link: PileLink, pile: str) -> Any:
        while running[0]:
            started = time.perf_counter()
            link.send(0x03, example(0x03, pile))
            waiting = link.expect(0x04)
            waiting.addTimeout(5, reactor)
            try:
                yield waiting
                rtts[phase[0]].append(time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - a missing answer is what we count
                missing[0] += 1
            yield deferLater(reactor, 1.0, lambda: None)

    beats = [heartbeat(link, pile) for link, pile in zip(links, piles, strict=True)]
    yield deferLater(reactor, args.quiet, lambda: None)
    phase[0] = "attack"
    rng = random.Random(1)
    share = args.hostile // 4
    connections = [0]

    @inlineCallbacks
    def attack(address: str) -> Any:
        inputs = hostile_frames(rng, share)
        while inputs:
            done: Deferred[None] = Deferred()
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(address, 0))
            try:
                yield connectProtocol(endpoint, Attacker(inputs, done))
            except Exception:  # noqa: BLE001 - refused by a limit: try again shortly
                yield deferLater(reactor, 0.05, lambda: None)
                continue
            connections[0] += 1
            yield done

    yield gatherResults([attack(f"127.0.0.{i}") for i in range(2, 6)])
    yield deferLater(reactor, 3, lambda: None)
    running[0] = False
    yield gatherResults(beats)
    disconnected = sum(1 for link in links if not link.connected)
    return {
        "quiet_p50_ms": percentile(rtts["quiet"], 0.5),
        "quiet_p99_ms": percentile(rtts["quiet"], 0.99),
        "attack_p50_ms": percentile(rtts["attack"], 0.5),
        "attack_p99_ms": percentile(rtts["attack"], 0.99),
        "attack_median_ms": statistics.median(rtts["attack"]) * 1000 if rtts["attack"] else float("nan"),
        "heartbeats": len(rtts["quiet"]) + len(rtts["attack"]),
        "missing": missing[0],
        "honest_disconnected": disconnected,
        "hostile_connections": connections[0],
        "proxy_peak_rss_mib": proc.hwm_mib(),
    }


def main() -> None:
    """Run the soak and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--honest", type=int, default=20)
    parser.add_argument("--hostile", type=int, default=20000)
    parser.add_argument("--quiet", type=float, default=10.0)
    args = parser.parse_args()
    print_machine()
    result: dict[str, Any] = {}
    with workdir() as work:
        # The proxy's own defaults for every limit (bench/common turns the frame rate off).
        proc, port, _ = start_proxy(
            work, ["--messagingServerType", "none", "--maxFrameRate", "50", "--host", "0.0.0.0"]
        )
        try:
            d = run(args, port, proc)
            d.addCallback(result.update)
            d.addErrback(lambda f: (f.printTraceback(), None))
            d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
            reactor.run()  # type: ignore[attr-defined]
        finally:
            proc.stop()
    for key, value in result.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
