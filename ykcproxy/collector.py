"""A policy for Python's garbage collector in a server holding many long-lived objects.

With thousands of piles connected, the sessions, connections, orders and
frame rings are long-lived container objects, and each full (generation 2)
collection walks all of them: a pause of a few hundred milliseconds on the
reactor thread, several times a minute while piles are busy.  The policy
moves the objects alive into the collector's permanent generation every
``interval`` seconds (``gc.freeze()``), so that full collections walk only
what is new; every ``renew``-th time it unfreezes them instead, so that
garbage among them (closed connections in reference cycles) is collected
once, with one long pause, and not kept for ever.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from twisted.logger import Logger

log = Logger()


class CollectorPolicy:
    """Freezes the objects alive at each :meth:`tick`; unfreezes them every ``renew``-th tick."""

    def __init__(
        self,
        renew: int = 12,
        freeze: Callable[[], None] = gc.freeze,
        unfreeze: Callable[[], None] = gc.unfreeze,
        frozen: Callable[[], int] = gc.get_freeze_count,
    ) -> None:
        self.renew = renew
        self._freeze = freeze
        self._unfreeze = unfreeze
        self._frozen = frozen
        #: Ticks so far.
        self.ticks = 0

    def tick(self) -> None:
        """Freeze what is alive now, or (every ``renew``-th tick) unfreeze all of it."""
        self.ticks += 1
        if self.ticks % self.renew == 0:
            count = self._frozen()
            self._unfreeze()
            log.debug("collector: {count} objects unfrozen, to be collected once", count=count)
        else:
            self._freeze()
            log.debug("collector: {count} objects frozen", count=self._frozen())
