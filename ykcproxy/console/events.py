"""Server-sent events for the console: pile changes, sessions and the frames of watched piles.

Each client has a bounded queue: while its connection cannot take more
(Twisted pauses the producer), events wait in the queue; when the queue is
full the client is dropped.  Nothing here ever waits for a client, so a slow
browser never slows the piles.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

log = Logger()


def encode_event(event: str, data: Any) -> bytes:
    """One event in the ``text/event-stream`` format."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


@implementer(IPushProducer)
class EventClient:
    """One browser's stream; ``pile`` (if set) is the pile whose frames it watches."""

    def __init__(self, hub: EventHub, request: Request, pile: str | None, max_queue: int) -> None:
        self.hub = hub
        self.request = request
        self.pile = pile
        self.max_queue = max_queue
        self.paused = False
        self.closed = False
        self.queue: deque[bytes] = deque()
        request.registerProducer(self, True)

    def send(self, data: bytes) -> None:
        """Write ``data`` now, or queue it while the connection is full."""
        if self.closed:
            return
        if not self.paused:
            self.request.write(data)
            return
        if len(self.queue) >= self.max_queue:
            self.hub.dropped += 1
            log.info("console event stream of {client} dropped: it reads too slowly", client=self.describe())
            self.close()
            return
        self.queue.append(data)

    def describe(self) -> str:
        """The client's address."""
        peer = self.request.getClientAddress()
        return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while self.queue and not self.paused and not self.closed:
            self.request.write(self.queue.popleft())

    def stopProducing(self) -> None:
        self.closed = True
        self.hub.forget(self)

    def close(self) -> None:
        """End the stream from this side."""
        if self.closed:
            return
        self.closed = True
        self.hub.forget(self)
        self.queue.clear()
        self.request.unregisterProducer()
        self.request.finish()


class EventHub:
    """Fans events out to the connected console clients.

    ``on_watch(pile, watching)`` is told when a pile gets its first watching
    client (``True``) and when its last one leaves (``False``).
    """

    #: Seconds between keep-alive comments (proxies close idle streams).
    KEEPALIVE = 15.0

    def __init__(
        self,
        clock: IReactorTime,
        max_queue: int = 1000,
        on_watch: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.clock = clock
        self.max_queue = max_queue
        self.on_watch = on_watch
        self.clients: set[EventClient] = set()
        #: Piles someone watches, with how many clients watch each.
        self.watched: dict[str, int] = {}
        #: Clients dropped for reading too slowly.
        self.dropped = 0
        self._keepalive: IDelayedCall | None = None

    def subscribe(self, request: Request, pile: str | None, hello: dict[str, Any]) -> Deferred[None]:
        """Start a stream on ``request``; fires once the stream is over."""
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Accel-Buffering", b"no")
        client = EventClient(self, request, pile, self.max_queue)
        self.clients.add(client)
        if pile is not None:
            self.watched[pile] = self.watched.get(pile, 0) + 1
            if self.watched[pile] == 1 and self.on_watch is not None:
                self.on_watch(pile, True)
        client.send(encode_event("hello", hello))
        if self._keepalive is None:
            self._keepalive = self.clock.callLater(self.KEEPALIVE, self._ping)
        done = request.notifyFinish()

        def over(_: object) -> None:
            client.closed = True
            self.forget(client)

        done.addBoth(over)
        return done

    def forget(self, client: EventClient) -> None:
        """The client is gone."""
        if client not in self.clients:
            return
        self.clients.discard(client)
        if client.pile is not None:
            left = self.watched.get(client.pile, 0) - 1
            if left > 0:
                self.watched[client.pile] = left
            elif self.watched.pop(client.pile, None) is not None and self.on_watch is not None:
                self.on_watch(client.pile, False)
        if not self.clients and self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
            self._keepalive = None

    def publish(self, event: str, data: Any, pile: str | None = None) -> None:
        """Send an event to every client (``pile`` given: only to those watching it)."""
        if not self.clients:
            return
        encoded = encode_event(event, data)
        for client in list(self.clients):
            if pile is None or client.pile == pile:
                client.send(encoded)

    def _ping(self) -> None:
        self._keepalive = None
        for client in list(self.clients):
            client.send(b": keepalive\n\n")
        if self.clients:
            self._keepalive = self.clock.callLater(self.KEEPALIVE, self._ping)

    def stop(self) -> None:
        """Close every stream (the service stops)."""
        for client in list(self.clients):
            client.close()
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None
