"""Prometheus metrics of the charging sessions: orders by state, anomalies by rule."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from ykcproxy.sessions.tracker import STATES, SessionTracker


class SessionCollector(Collector):
    """Reads the tracker at scrape time (nothing is counted on the hot path)."""

    def __init__(self, tracker: SessionTracker) -> None:
        self.tracker = tracker

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        orders = GaugeMetricFamily("ykc_sessions", "Charging sessions tracked, by state", labels=["state"])
        counts = self.tracker.counts_by_state()
        for state in STATES:
            orders.add_metric([state], counts.get(state, 0))
        yield orders
        anomalies = CounterMetricFamily(
            "ykc_session_anomalies", "Anomalies of charging sessions, by spec 13.3 rule", labels=["rule"]
        )
        for rule in range(1, 9):
            anomalies.add_metric([str(rule)], self.tracker.anomaly_counts.get(rule, 0))
        yield anomalies


def register(tracker: SessionTracker, registry: CollectorRegistry) -> None:
    """Add the session metrics to ``registry``."""
    registry.register(SessionCollector(tracker))
