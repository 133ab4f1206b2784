"""The fuzz target shared by the atheris run and the bounded test: bytes into a pile connection.

One input is split into chunks and fed to a real :class:`PileProtocol` on a
``StringTransport`` (framer, CRC, codec, limits, login policy, dispatch, auto
answers), after a valid login so that the logged-in paths run too.  No
exception may escape; closing the connection is an allowed outcome.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from ykcproxy.options import default_config
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.sessions import SessionTracker
from ykcproxy.sim.link import PileLink
from ykcproxy.wire.examples import example

PILE = "32010200000001"
_LINK = PileLink()
LOGIN = _LINK.frame(0x01, example(0x01, PILE))
#: Valid frames of every uplink type: seeds that the mutations start from.
SEEDS = [
    _LINK.frame(code, example(code, PILE))
    for code in (
        0x03,
        0x05,
        0x09,
        0x13,
        0x15,
        0x17,
        0x19,
        0x1B,
        0x1D,
        0x31,
        0x33,
        0x35,
        0x3B,
        0x41,
        0x51,
        0xA3,
    )
]


class Target:
    """A pile factory on a clock; :meth:`feed` runs one input through a fresh connection."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        config = default_config(auto_verification=True, auto_billing_model_verify=True, error_budget=0)
        tracker = SessionTracker(self.clock, lambda body, key: None)
        self.factory = PileServerFactory(config, self.clock, None, observers=[tracker])
        self.port = 10000

    def feed(self, data: bytes, chunk: int = 0) -> Any:
        """Log in, then feed ``data`` (in chunks of ``chunk`` bytes, 0: at once); close."""
        self.port = self.port + 1 if self.port < 60000 else 10000
        address = IPv4Address("TCP", "10.0.0.2", self.port)
        proto = self.factory.buildProtocol(address)
        if proto is None:
            return None
        transport = StringTransport(peerAddress=address)
        proto.makeConnection(transport)
        proto.dataReceived(LOGIN)
        if chunk <= 0:
            proto.dataReceived(data)
        else:
            for i in range(0, len(data), chunk):
                proto.dataReceived(data[i : i + chunk])
        self.clock.advance(1)
        proto.connectionLost(Failure(ConnectionDone()))
        return transport
