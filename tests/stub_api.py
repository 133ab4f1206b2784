"""The REST API in memory: a ControlApi on a Clock, called through ``treq.testing.StubTreq``.

Piles connect on ``StringTransport``s, so a test drives the whole request
path (routing, token, body checks, the frame written, the reply waited for)
without a socket or a real wait.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests.support import Consumer, answer_of, request_parts
from ykcproxy.api.app import ControlApi
from ykcproxy.api.outbox_handlers import OutboxHandlers
from ykcproxy.api.session_handlers import SessionHandlers
from ykcproxy.console.handlers import ConsoleHandlers
from ykcproxy.forward.delivery import Delivery
from ykcproxy.forward.http import HttpPublisher
from ykcproxy.metrics import Metrics
from ykcproxy.options import default_config
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.service import build_console
from ykcproxy.sessions import SessionTracker
from ykcproxy.sim.link import Received
from ykcproxy.wire.codec import Codec, encode_frame
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.examples import example
from ykcproxy.wire.framer import Framer, RawFrame

CODEC = Codec()


class MemoryPile:
    """A pile connected to the factory over a StringTransport."""

    def __init__(self, factory: PileServerFactory, pile_id: str, port: int) -> None:
        self.id = pile_id
        address = IPv4Address("TCP", "10.0.0.1", port)
        self.protocol = factory.buildProtocol(address)
        self.transport = StringTransport(peerAddress=address)
        self.protocol.makeConnection(self.transport)
        self._framer = Framer()
        #: What the pile could not read (framing or decoding errors), as a raw-socket pile records them.
        self.errors: list[Any] = []

    def send(self, code: int, seq: int = 0, **fields: Any) -> None:
        """Send a frame of ``code`` (example values, overridden by ``fields``)."""
        values = {**example(code, self.id), **fields}
        body = CODEC.encode_body(code, CODEC.check(code, values))
        self.protocol.dataReceived(encode_frame(code, seq, body, CrcOrder.LOW_FIRST))

    def write(self, data: bytes) -> None:
        """Send raw bytes (a frame with a bad CRC, say)."""
        self.protocol.dataReceived(data)

    def frames(self) -> list[Received]:
        """Every frame written to the pile since the last call, decoded (with its bytes)."""
        data = self.transport.value()
        self.transport.clear()
        frames = []
        for item in self._framer.feed(data):
            if not isinstance(item, RawFrame):
                self.errors.append(item)
                continue
            try:
                fields = CODEC.decode_body(item.code, item.body)
            except Exception as e:  # recorded, as a raw-socket pile does
                self.errors.append(e)
                continue
            frames.append(Received(item.code, item.seq, fields, item.raw, item.crc_order))
        return frames

    def received(self) -> list[tuple[int, int, dict[str, Any]]]:
        """(code, seq, fields) of every frame written to the pile since the last call."""
        return [(f.code, f.seq, f.fields) for f in self.frames()]

    def lose(self) -> None:
        """The pile closes its connection."""
        self.protocol.connectionLost(Failure(ConnectionDone()))


class Webhook:
    """A webhook consumer (:class:`~tests.support.Consumer`) behind a StubTreq, on the clock.

    The real :class:`~ykcproxy.forward.http.HttpPublisher` POSTs to it; its
    timeouts run on ``clock``, so nothing touches the global reactor.
    """

    def __init__(self, clock: Clock) -> None:
        self.consumer = Consumer()
        self.clock = clock
        self.treq = StubTreq(self.consumer)

    def post(self, url: Any, **kwargs: Any) -> Any:
        """What the publisher calls: ``treq.post`` on the clock."""
        return self.treq.post(url, reactor=self.clock, **kwargs)

    def flush(self) -> None:
        """Answer the POSTs sent so far (and read their answers)."""
        self.treq.flush()


class StubApi:
    """A ControlApi with no network, its clock and its piles."""

    def __init__(
        self, routes: Any = None, handlers: Any = (), forward: bool = False, **settings: Any
    ) -> None:
        """With ``forward``, messages go through a Delivery to a :class:`Webhook` (``consumer``)."""
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.config = default_config(**{"auto_verification": True, **settings})
        self.metrics = Metrics()
        self.webhook: Webhook | None = None
        self.delivery: Delivery | None = None
        if forward:
            self.webhook = Webhook(self.clock)
            publisher = HttpPublisher(["http://consumer.test"], self.clock, client=self.webhook)
            self.delivery = Delivery(
                publisher,
                self.clock,
                on_delivered=lambda m, latency: self.metrics.delivered(m.ft, latency),
                on_failed=lambda m, f: self.metrics.forward_failed.inc(),
            )
        self.sessions = SessionTracker(self.clock, lambda body, key: None)
        console = build_console(self.config, self.clock)
        self.hub, self.history = console.hub, console.history
        self.piles = PileServerFactory(
            self.config,
            self.clock,
            self.delivery,
            self.metrics,
            observers=[self.sessions, self.history],
            on_event=self.hub.publish,
            recorder=self.history if self.config.frame_history else None,
        )
        handlers = [
            *handlers,
            OutboxHandlers(None, None, self.config.max_body_bytes),
            SessionHandlers(self.sessions),
            ConsoleHandlers(self.history, self.hub, files={"index.html": b"<html></html>"}),
        ]
        self.api = ControlApi(
            self.piles, self.metrics, self.health, self.config, handlers=handlers, routes=routes
        )
        self.treq = StubTreq(self.api.resource())
        self.healthy = True
        self._ports = iter(range(40000, 60000))

    def health(self) -> dict[str, Any]:
        """What /healthz reports here."""
        return {"ok": self.healthy}

    def pile(self, pile_id: str, login: bool = True) -> MemoryPile:
        """Connect a pile (and log it in, answered by the auto answer)."""
        pile = MemoryPile(self.piles, pile_id, next(self._ports))
        if login:
            pile.send(0x01)
            pile.received()
        return pile

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[bytes, list[bytes]] | None = None,
    ) -> Any:
        """Start a REST call; a Deferred of :class:`~tests.support.Http` (flush or advance the clock)."""
        data, sent = request_parts(body, raw, headers)
        d = self.treq.request(method, f"http://ykcproxy.test{path}", data=data, headers=sent)
        d.addCallback(self._read)
        self.treq.flush()
        return d

    def _read(self, response: Any) -> Any:
        return response.content().addCallback(lambda content: answer_of(response, content))

    @property
    def consumer(self) -> Consumer:
        """The webhook consumer (``forward=True`` only)."""
        assert self.webhook is not None, "StubApi(forward=True) has the webhook consumer"
        return self.webhook.consumer

    def flush(self) -> None:
        """Run the requests' pending work (and the webhook POSTs, when forwarding)."""
        self.treq.flush()
        if self.webhook is not None:
            self.webhook.flush()
            self.treq.flush()
