"""The forwarder as a Twisted service: the publisher, the delivery queues and the outbox."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ykcproxy.forward.base import IDurableStore, IPublisher
from ykcproxy.forward.delivery import Delivery

log = Logger()


class ForwarderService(Service):
    """Starts the publisher and recovers the outbox; on stop, stops retrying and disconnects.

    With a durable outbox, what it still holds from the last run is delivered
    first, in order, before anything received since.
    """

    #: How often delivered 0x3B records past their retention are purged.
    PURGE_INTERVAL = 3600.0

    def __init__(
        self, publisher: IPublisher, delivery: Delivery, outbox: IDurableStore | None, clock: Any
    ) -> None:
        self.publisher = publisher
        self.delivery = delivery
        self.outbox = outbox
        self.clock = clock
        self._purge: LoopingCall | None = None
        self.recovered: Deferred[int] = Deferred()
        #: Fires once the publisher is usable (never, if it could not start).
        self.started: Deferred[None] = Deferred()

    def startService(self) -> None:
        super().startService()
        d = self.publisher.start()

        def failed(f: Any) -> None:
            log.error("{name} forwarder not started: {e}", name=self.publisher.name, e=f.value)

        d.addCallbacks(self.started.callback, failed)
        if self.outbox is None:
            self.recovered.callback(0)
            return
        self.outbox.start()
        self.delivery.hold()
        pending = self.outbox.pending()

        def restore(items: list[Any]) -> int:
            if items:
                log.info("outbox: {n} undelivered messages from the last run go first", n=len(items))
            self.delivery.restore(items)
            return len(items)

        pending.addCallback(restore).chainDeferred(self.recovered)
        self._purge = LoopingCall(self.outbox.purge)
        self._purge.clock = self.clock
        self._purge.start(self.PURGE_INTERVAL, now=True).addErrback(
            lambda f: log.failure("outbox purge failed", f)
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._purge is not None and self._purge.running:
            self._purge.stop()
        self.delivery.stop()
        d = self.publisher.stop()
        if self.outbox is not None:
            outbox = self.outbox
            d.addBoth(lambda _: outbox.close())
        return d
