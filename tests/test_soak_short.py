"""A short soak: honest piles keep being answered while hostile links send garbage."""

from __future__ import annotations

import random

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.support import login, start_consumer, start_proxy
from ykcproxy.sim.hostile import hostile_frames
from ykcproxy.wire.examples import example

HONEST = [f"320102000000{i:02d}" for i in range(1, 6)]


class Hostile(Protocol):
    """Writes its inputs in small bursts; the server may close it."""

    def __init__(self, inputs: list[bytes]) -> None:
        self.inputs = inputs
        self.closed = False

    def connectionMade(self) -> None:
        self.burst()

    def burst(self) -> None:
        if self.closed or not self.inputs:
            return
        chunk, self.inputs = self.inputs[:50], self.inputs[50:]
        self.transport.write(b"".join(chunk))
        reactor.callLater(0, self.burst)

    def connectionLost(self, reason: object = None) -> None:
        self.closed = True


class ShortSoak(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_honest_piles_answered_and_never_disconnected(self) -> None:
        consumer, url = start_consumer(self)
        proxy = start_proxy(self, servers=(url,), auto_verification=True, host="0.0.0.0")
        links = yield gatherResults([login(self, proxy, pile) for pile in HONEST])
        rng = random.Random(7)
        hostiles = []
        for i in range(2):
            endpoint = TCP4ClientEndpoint(
                reactor, "127.0.0.1", proxy.tcp_port, bindAddress=(f"127.0.0.{i + 2}", 0)
            )
            attacker = Hostile(hostile_frames(rng, 1000))
            hostiles.append(attacker)
            yield connectProtocol(endpoint, attacker)
        for _ in range(5):
            for link, pile in zip(links, HONEST, strict=True):
                link.send(0x03, example(0x03, pile))
            for link in links:
                yield link.expect(0x04)
            yield deferLater(reactor, 0.05, lambda: None)
        for link in links:
            self.assertTrue(link.connected)
        offline = [p.body for p in consumer.posts if p.path == "/offline"]
        self.assertEqual(offline, [])
        text = proxy.metrics.render().decode().splitlines()
        errors = sum(
            float(line.rsplit(" ", 1)[1]) for line in text if line.startswith("ykc_frame_errors_total{")
        )
        self.assertGreaterEqual(errors, 20, "the hostile links reached the server")
        closed = [
            line for line in text if line.startswith('ykc_pile_limit_actions_total{limit="error-budget"}')
        ]
        self.assertEqual([float(line.rsplit(" ", 1)[1]) for line in closed], [2.0], "both were closed")
        for attacker in hostiles:
            if not attacker.closed:
                attacker.transport.abortConnection()
        for link in links:
            link.transport.loseConnection()
        yield gatherResults([link.lost for link in links])
