"""Limits of the pile port, per connection: frame rate, error budget, bad-input logging.

Each is a small value kept on the :class:`~ykcproxy.pile.protocol.PileProtocol`;
the policy that acts on them is in :mod:`ykcproxy.pile.server`.  All take
the time as an argument (the reactor's clock), so tests run them on
``task.Clock``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

#: The window of ``--errorBudget`` (bad frames per minute).
ERROR_WINDOW = 60.0
#: Bad frames of a connection logged one by one, with their hex, before the summaries.
FIRST_LOGGED = 5
#: Seconds between two summary lines of a connection's further bad frames.
SUMMARY_INTERVAL = 10.0


class FrameRate:
    """A token bucket: ``rate`` frames a second per logged-in pile, a second's worth of burst.

    A link with no logged-in pile gets the rate of one (it may only log in).
    The connection calls :meth:`refill` once per read, takes a token from
    ``tokens`` per frame, and leaves the rest there.
    """

    __slots__ = ("rate", "tokens", "_at")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = rate
        self._at = now

    def refill(self, now: float, piles: int) -> float:
        """Add the tokens earned since the last refill; return how many there are."""
        rate = self.rate * (piles or 1)
        tokens = self.tokens + (now - self._at) * rate
        self._at = now
        self.tokens = tokens = tokens if tokens < rate else rate
        return tokens

    def allow(self, now: float, piles: int) -> bool:
        """Take one frame's token; False when the link is over its rate."""
        if self.refill(now, piles) < 1.0:
            return False
        self.tokens -= 1.0
        return True


class ErrorBudget:
    """At most ``budget`` bad frames per :data:`ERROR_WINDOW` (a leaky bucket).

    Each bad frame adds one; the level drains at ``budget`` per window.
    """

    __slots__ = ("budget", "_level", "_at")

    def __init__(self, budget: int, now: float) -> None:
        self.budget = budget
        self._level = 0.0
        self._at = now

    def spend(self, now: float) -> bool:
        """Count one bad frame; True when the budget is exhausted."""
        drained = (now - self._at) * self.budget / ERROR_WINDOW
        self._level = max(0.0, self._level - drained) + 1.0
        self._at = now
        return self._level > self.budget


class ThrottledLog:
    """Rate-limited warnings about bad input from one source (a connection, or the port).

    The first :data:`FIRST_LOGGED` reports are logged as they come (with their
    hex); later ones are only counted by kind, and one summary line per
    :data:`SUMMARY_INTERVAL` says how many of each there were.  Counters in
    :class:`~ykcproxy.metrics.Metrics` count everything regardless.
    """

    def __init__(
        self,
        clock: IReactorTime,
        log: Logger,
        source: str,
        first: int = FIRST_LOGGED,
        interval: float = SUMMARY_INTERVAL,
    ) -> None:
        self.clock = clock
        self.log = log
        self.source = source
        self.first = first
        self.interval = interval
        self.logged = 0
        self.suppressed: Counter[str] = Counter()
        self._summary: IDelayedCall | None = None

    def warn(self, kind: str, fmt: str, **fields: Any) -> None:
        """Log ``fmt`` at warning level, or count it toward the next summary."""
        if self.logged < self.first:
            self.logged += 1
            self.log.warn(fmt, kind=kind, **fields)
            return
        self.suppressed[kind] += 1
        if self._summary is None:
            self._summary = self.clock.callLater(self.interval, self.flush)

    def flush(self) -> None:
        """Log the summary of what was suppressed since the last one (if anything)."""
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
        self._summary = None
        if not self.suppressed:
            return
        counts = dict(sorted(self.suppressed.items()))
        total = sum(counts.values())
        self.suppressed.clear()
        self.log.warn(
            "{total} more bad frames from {source} not logged one by one: {summary}",
            total=total,
            source=self.source,
            summary=", ".join(f"{k} {n}" for k, n in counts.items()),
            counts=counts,
        )
