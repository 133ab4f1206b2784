"""The records store of standalone mode: 0x3B transaction records kept with no consumer.

Without a consumer nothing is queued for delivery, but money must still not be
lost: each 0x3B is written to the outbox's records table (marked delivered at
once, so it is kept for ``--retentionDays`` and then purged) and can be read
with ``GET /transactions/<tradeSeq>``.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ykcproxy.forward.base import Message
from ykcproxy.forward.outbox import SqliteOutbox
from ykcproxy.forward.service import PeriodicService

#: Seconds between purges of records past their retention.
PURGE_INTERVAL = 3600.0


class RecordStore:
    """Stores 0x3B records in ``outbox``'s records table; nothing else is kept."""

    def __init__(self, outbox: SqliteOutbox) -> None:
        self.outbox = outbox

    def submit(self, message: Message, confirm: bool = False) -> Deferred[None] | None:
        """Store a record; with ``confirm`` the Deferred fires once it is committed."""
        key, committed = self.outbox.append(message, confirm=True)
        self.outbox.delivered(key, message)
        return committed if confirm else None


class RecordStoreService(MultiService):
    """Starts the store's writer thread, purges old records, and closes it on stop."""

    def __init__(self, outbox: SqliteOutbox, clock: IReactorTime) -> None:
        super().__init__()
        self.outbox = outbox
        PeriodicService("records purge", PURGE_INTERVAL, outbox.purge, clock).setServiceParent(self)

    def startService(self) -> None:
        self.outbox.start()
        super().startService()

    def stopService(self) -> Any:
        d = super().stopService()
        return d.addBoth(lambda _: self.outbox.close())
