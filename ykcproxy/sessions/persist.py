"""Write-behind of the tracker's orders to the session store, and its service.

The tracker only marks the orders it changes (a set add on the 0x13 path);
:class:`SessionWriter` writes the marked ones in one batch every ``interval``
seconds, and ``soon`` seconds after a state change or anomaly.  Never one
write per frame.  An order whose energy and amount only moved is written as
those two numbers, not as its whole document: with thousands of orders
charging, the reactor thread builds one small tuple per order a second.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ykcproxy.forward.service import PeriodicService
from ykcproxy.sessions import snapshot
from ykcproxy.sessions.store import SessionStore
from ykcproxy.sessions.tracker import Session, SessionTracker

log = Logger()

#: Seconds between purges of orders past their retention.
PURGE_INTERVAL = 3600.0


class SessionWriter:
    """Marks nothing itself: flushes what the tracker marked dirty, in batches."""

    def __init__(
        self, tracker: SessionTracker, store: SessionStore, clock: IReactorTime, soon: float = 0.05
    ) -> None:
        self.tracker = tracker
        self.store = store
        self.clock = clock
        self.soon = soon
        self._dirty: set[Session] = set()
        self._progressed: set[Session] = set()
        self._models: dict[str, dict[str, Any]] = {}
        self._call: IDelayedCall | None = None
        #: Batches written so far.
        self.flushes = 0

    def attach(self) -> None:
        """Have the tracker mark its changed orders for this writer."""
        self.tracker.dirty = self._dirty
        self.tracker.progressed = self._progressed
        self.tracker.on_change = self._changed
        self.tracker.on_model = self._model_changed

    def _model_changed(self, pile_id: str, model: dict[str, Any]) -> None:
        self._models[pile_id] = model
        if self._call is None:
            self._call = self.clock.callLater(self.soon, self.flush)

    def _changed(self, order: Session) -> None:
        self._dirty.add(order)
        if self._call is None:
            self._call = self.clock.callLater(self.soon, self.flush)

    def flush(self) -> Deferred[None]:
        """Write every marked order now (one transaction); fires once written."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        dirty, progressed = self._dirty, self._progressed
        if not dirty and not progressed and not self._models:
            return succeed(None)
        tracker = self.tracker
        batch = [
            snapshot.take(o, tracker.is_live(o), tracker.is_current(o), tracker.timer_deadlines(o))
            for o in dirty
        ]
        progress = [(o.energy, o.amount, o.trade_seq) for o in progressed if o not in dirty]
        models, self._models = self._models, {}
        dirty.clear()
        progressed.clear()
        self.flushes += 1
        return self.store.write(batch, models, progress)


def restore_into(tracker: SessionTracker, documents: list[dict[str, Any]]) -> int:
    """Load stored open orders back into ``tracker``; how many."""
    for document in documents:
        order, deadlines, current = snapshot.restore(document)
        tracker.restore(order, deadlines, current)
    return len(documents)


class SessionStoreService(MultiService):
    """Opens the store and loads the open orders at start; flushes, purges; flushes and closes at stop."""

    def __init__(
        self, tracker: SessionTracker, store: SessionStore, clock: IReactorTime, interval: float = 1.0
    ) -> None:
        super().__init__()
        self.tracker = tracker
        self.store = store
        self.writer = SessionWriter(tracker, store, clock)
        PeriodicService("sessions flush", interval, self.writer.flush, clock).setServiceParent(self)
        PeriodicService("sessions purge", PURGE_INTERVAL, store.purge, clock).setServiceParent(self)

    def startService(self) -> None:
        loaded = restore_into(self.tracker, self.store.open())
        models = self.store.billing_models()
        self.tracker.restore_models(models)
        log.info(
            "sessions kept in {path}; {n} open orders and {models} billing models loaded",
            path=self.store.path,
            n=loaded,
            models=len(models),
        )
        self.writer.attach()
        super().startService()

    def stopService(self) -> Any:
        d = super().stopService()
        d.addBoth(lambda _: self.writer.flush())
        return d.addBoth(lambda _: self.store.close())
