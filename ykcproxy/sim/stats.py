"""What a simulated fleet counts: frames by type, reply latencies, errors.

One :class:`Stats` is shared by every pile of a fleet.  Latency samples are
kept with the time they were taken, so a summary can cover a window (the
steady state after the ramp) as well as the whole run.
"""

from __future__ import annotations

from array import array
from collections import Counter
from typing import Any

#: Samples kept per request type; past this a sample replaces a random older one.
MAX_SAMPLES = 2_000_000


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list (``fraction`` in 0..1)."""
    if not ordered:
        return float("nan")
    rank = max(1, int(fraction * len(ordered) + 0.999999))
    return ordered[min(rank, len(ordered)) - 1]


class Stats:
    """Counters and latency samples of a fleet of simulated piles."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        #: Error kind -> count (framing errors, lost replies, connect failures...).
        self.errors: Counter[str] = Counter()
        #: Replies that never came, by the request's frame type.
        self.lost: Counter[str] = Counter()
        #: Requests still waiting when the run ended (not counted as lost).
        self.outstanding: Counter[str] = Counter()
        #: Requests whose connection was closed on purpose (storms, stop) before the reply.
        self.abandoned: Counter[str] = Counter()
        #: Events by name: connects, logins, reconnects, charging sessions...
        self.events: Counter[str] = Counter()
        self._times: dict[str, array[float]] = {}
        self._values: dict[str, array[float]] = {}
        self._seen: Counter[str] = Counter()
        self._rnd_state = 12345

    # -- recording --------------------------------------------------------
    def latency(self, request_ft: str, at: float, seconds: float) -> None:
        """Record that a reply to a ``request_ft`` frame took ``seconds`` (observed at ``at``)."""
        times = self._times.get(request_ft)
        if times is None:
            times = self._times[request_ft] = array("d")
            self._values[request_ft] = array("d")
        values = self._values[request_ft]
        self._seen[request_ft] += 1
        if len(times) < MAX_SAMPLES:
            times.append(at)
            values.append(seconds)
            return
        # Reservoir sampling keeps a uniform sample of a very long run.
        self._rnd_state = (self._rnd_state * 1103515245 + 12345) & 0x7FFFFFFF
        slot = self._rnd_state % self._seen[request_ft]
        if slot < MAX_SAMPLES:
            times[slot] = at
            values[slot] = seconds

    # -- reading ----------------------------------------------------------------
    def samples(
        self, request_ft: str, since: float = float("-inf"), until: float = float("inf")
    ) -> list[float]:
        """The latencies of replies to ``request_ft`` observed in ``[since, until]``, ascending."""
        times = self._times.get(request_ft)
        if times is None:
            return []
        values = self._values[request_ft]
        return sorted(v for t, v in zip(times, values) if since <= t <= until)

    def latency_summary(
        self, since: float = float("-inf"), until: float = float("inf")
    ) -> dict[str, dict[str, float]]:
        """Per request type: count and p50/p90/p99/p99.9/max in milliseconds."""
        out: dict[str, dict[str, float]] = {}
        for ft in sorted(self._times):
            ordered = self.samples(ft, since, until)
            if not ordered:
                continue
            out[ft] = {
                "count": len(ordered),
                "p50": round(percentile(ordered, 0.50) * 1000, 3),
                "p90": round(percentile(ordered, 0.90) * 1000, 3),
                "p99": round(percentile(ordered, 0.99) * 1000, 3),
                "p999": round(percentile(ordered, 0.999) * 1000, 3),
                "max": round(ordered[-1] * 1000, 3),
            }
        return out

    def snapshot(self) -> dict[str, Any]:
        """All counters as a JSON-ready dict."""
        return {
            "sent": dict(sorted(self.sent.items())),
            "received": dict(sorted(self.received.items())),
            "errors": dict(sorted(self.errors.items())),
            "lost": dict(sorted(self.lost.items())),
            "outstanding": dict(sorted(self.outstanding.items())),
            "abandoned": dict(sorted(self.abandoned.items())),
            "events": dict(sorted(self.events.items())),
        }

    @property
    def lost_total(self) -> int:
        """Replies that never came."""
        return sum(self.lost.values())
