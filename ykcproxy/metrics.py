"""Prometheus metrics of one proxy instance (its own registry, so tests can run several)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from ykcproxy import __version__

#: The label of each frame type code: two lower-case hex digits.
_FT = [f"{code:02x}" for code in range(256)]


class _TallyCollector:
    """Per-frame counters kept in plain containers and turned into metrics at scrape time.

    A prometheus_client Counter takes a lock on every increment; these are
    bumped several times per frame on the reactor thread, so they are not.
    Counts by frame type are a list indexed by the type code (the cheapest
    increment there is); the others are tallies keyed by their label.
    """

    def __init__(self) -> None:
        self.families: list[tuple[str, str, str, Callable[[], Iterator[tuple[str, int]]]]] = []

    def tally(self, name: str, documentation: str, label: str) -> Tally[str]:
        counts: Tally[str] = Tally()
        self.families.append((name, documentation, label, lambda: iter(sorted(counts.items()))))
        return counts

    def by_code(self, name: str, documentation: str) -> list[int]:
        """A count per frame type code (labelled ``ft``, two hex digits)."""
        counts = [0] * 256

        def labelled() -> Iterator[tuple[str, int]]:
            return ((_FT[code], count) for code, count in enumerate(counts) if count)

        self.families.append((name, documentation, "ft", labelled))
        return counts

    def collect(self) -> Iterator[Metric]:
        for name, documentation, label, counted in self.families:
            family = CounterMetricFamily(name, documentation, labels=[label])
            for value, count in counted():
                family.add_metric([value], count)
            yield family


class LatencyHistogram:
    """A histogram observed once per delivered message, without a lock.

    prometheus_client's Histogram takes a lock per observation; this one is
    only touched on the reactor thread and is turned into a metric at scrape time.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> Iterator[Metric]:
        cumulative = 0
        buckets = []
        for bound, count in zip((*(str(float(b)) for b in self.bounds), "+Inf"), self.counts):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=self.sum)


class Metrics:
    """Counters and gauges of the pile side, the forwarder and the REST API."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        tallies = _TallyCollector()
        #: Frames by type code (``frames_in[0x03] += 1``).
        self.frames_in = tallies.by_code("ykc_frames_in", "Frames received from piles")
        self.frames_out = tallies.by_code("ykc_frames_out", "Frames sent to piles")
        self.frame_errors = tallies.tally(
            "ykc_frame_errors", "Frames or bytes dropped from piles, by kind", "kind"
        )
        self.forward_ok = tallies.tally("ykc_forward_ok", "Messages delivered to the consumer", "ft")
        self.limit_actions = tallies.tally(
            "ykc_pile_limit_actions",
            "Times a pile port limit acted (refused, dropped or closed), by limit",
            "limit",
        )
        self.connections_closed = tallies.tally(
            "ykc_pile_connections_closed", "Pile connections closed, by reason", "reason"
        )
        r.register(tallies)  # type: ignore[arg-type]
        self.connections = Gauge("ykc_connections", "Open pile TCP connections", registry=r)
        self.piles = Gauge("ykc_piles_online", "Piles with an accepted login", registry=r)
        self.pending_logins = Gauge("ykc_pending_logins", "Logins waiting for an answer", registry=r)
        self.build_info = Gauge("ykc_build_info", "The running version (always 1)", ["version"], registry=r)
        self.build_info.labels(version=__version__).set(1)
        self.forward_failed = Counter(
            "ykc_forward_failed", "Delivery attempts that failed (retried later)", registry=r
        )
        self.forward_latency = LatencyHistogram(
            "ykc_forward_latency_seconds",
            "Time from a frame's arrival to its delivery",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        r.register(self.forward_latency)  # type: ignore[arg-type]
        self.outbox_depth = Gauge("ykc_outbox_depth", "Messages accepted and not yet delivered", registry=r)
        self.outbox_oldest = Gauge(
            "ykc_outbox_oldest_age_seconds", "Age of the oldest undelivered message", registry=r
        )
        self.dead_letters = Gauge("ykc_dead_letters", "Messages in the dead-letter table", registry=r)
        self.reading_paused = Gauge("ykc_reading_paused", "1 while reads from piles are paused", registry=r)
        self.rest_requests = Counter(
            "ykc_rest_requests", "REST requests by route and status code", ["route", "code"], registry=r
        )

    def frame_error(self, kind: str) -> None:
        """Count one dropped frame or run of bytes."""
        self.frame_errors[kind] += 1

    def limit_acted(self, limit: str) -> None:
        """Count one action of a pile port limit (``max-connections``, ``login-timeout``...)."""
        self.limit_actions[limit] += 1

    def delivered(self, ft: str, latency: float) -> None:
        """Count one delivered message."""
        self.forward_ok[ft] += 1
        self.forward_latency.observe(latency)

    def gauge_function(self, gauge: Gauge, fn: Callable[[], float]) -> None:
        """Let ``gauge`` read its value from ``fn`` at scrape time."""
        gauge.set_function(fn)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
