"""One NATS connection shared by its owner and the subscribers attached to it.

The cluster link and the forwarding publisher each run nats-py in an asyncio
loop on their own thread.  The command responders do not open connections of
their own: they attach to one of those (``--cluster``, else the forwarding
NATS) and subscribe on its client, each time its owner connects a new client
(nats-py renews subscriptions across reconnects of one client by itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["SharedConnection", "Subscriber"]

#: Subscribes on a connected client (run in the connection's loop thread).
Subscriber = Callable[[Any], Awaitable[None]]


class SharedConnection:
    """The loop and the current client of a NATS connection, for subscribers.

    The owner sets :attr:`loop` when it starts its thread and calls
    :meth:`connected` (loop thread) with each new client once it is connected.
    Subscribers are attached from the reactor thread and offered every client
    from then on; a subscriber may be offered the same client twice and must
    ignore the second offer.
    """

    def __init__(self) -> None:
        #: The owner's asyncio loop (None until it started).
        self.loop: asyncio.AbstractEventLoop | None = None
        #: The connected client (loop thread; None before the first connection).
        self.client: Any = None
        self._subscribers: list[Subscriber] = []

    def attach(self, subscriber: Subscriber) -> None:
        """Offer ``subscriber`` the current client, if any, and every later one (reactor thread)."""
        self._subscribers.append(subscriber)
        loop = self.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._offer, subscriber)
            except RuntimeError:  # the loop is closed: no client to offer
                pass

    def detach(self, subscriber: Subscriber) -> None:
        """Offer ``subscriber`` no more clients."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def connected(self, client: Any) -> None:
        """The owner connected ``client`` (loop thread): every subscriber is offered it."""
        self.client = client
        for subscriber in list(self._subscribers):
            self._offer(subscriber)

    def run(self, work: Callable[[], Awaitable[None]]) -> bool:
        """Run ``work`` in the loop thread (reactor thread); False if the loop is gone."""
        loop = self.loop
        if loop is None or not loop.is_running():
            return False
        try:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(work()))
        except RuntimeError:  # closed meanwhile
            return False
        return True

    def call(self, function: Callable[..., object], *args: Any) -> None:
        """Call ``function(*args)`` in the loop thread (reactor thread); nothing if the loop is gone."""
        loop = self.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(function, *args)
            except RuntimeError:  # closed
                pass

    def publish(self, subject: str, data: bytes) -> None:
        """Publish on the current client (reactor thread); nothing without one."""
        self.call(self._publish, subject, data)

    def _publish(self, subject: str, data: bytes) -> None:
        if self.client is not None:
            asyncio.ensure_future(self.client.publish(subject, data))

    def _offer(self, subscriber: Subscriber) -> None:
        if self.client is not None and subscriber in self._subscribers:
            asyncio.ensure_future(subscriber(self.client))
