"""Prometheus metrics of one proxy instance (its own registry, so tests can run several)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Counters and gauges of the pile side, the forwarder and the REST API."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_in = Counter("ykc_frames_in", "Frames received from piles", ["ft"], registry=r)
        self.frames_out = Counter("ykc_frames_out", "Frames sent to piles", ["ft"], registry=r)
        self.frame_errors = Counter(
            "ykc_frame_errors", "Frames or bytes dropped from piles, by kind", ["kind"], registry=r
        )
        self.connections = Gauge("ykc_connections", "Open pile TCP connections", registry=r)
        self.piles = Gauge("ykc_piles_online", "Piles with an accepted login", registry=r)
        self.forward_ok = Counter("ykc_forward_ok", "Messages delivered to the consumer", ["ft"], registry=r)
        self.forward_failed = Counter(
            "ykc_forward_failed", "Delivery attempts that failed (retried later)", registry=r
        )
        self.forward_latency = Histogram(
            "ykc_forward_latency_seconds",
            "Time from a frame's arrival to its delivery",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.outbox_depth = Gauge("ykc_outbox_depth", "Messages accepted and not yet delivered", registry=r)
        self.outbox_oldest = Gauge(
            "ykc_outbox_oldest_age_seconds", "Age of the oldest undelivered message", registry=r
        )
        self.dead_letters = Gauge("ykc_dead_letters", "Messages in the dead-letter table", registry=r)
        self.reading_paused = Gauge("ykc_reading_paused", "1 while reads from piles are paused", registry=r)
        self.rest_requests = Counter(
            "ykc_rest_requests", "REST requests by route and status code", ["route", "code"], registry=r
        )
        self._cache: dict[tuple[int, str], Any] = {}

    def _child(self, metric: Counter, key: str) -> Any:
        cache_key = (id(metric), key)
        child = self._cache.get(cache_key)
        if child is None:
            child = self._cache[cache_key] = metric.labels(key)
        return child

    def frame_in(self, ft: str) -> None:
        """Count one frame from a pile."""
        self._child(self.frames_in, ft).inc()

    def frame_out(self, ft: str) -> None:
        """Count one frame to a pile."""
        self._child(self.frames_out, ft).inc()

    def frame_error(self, kind: str) -> None:
        """Count one dropped frame or run of bytes."""
        self._child(self.frame_errors, kind).inc()

    def delivered(self, ft: str, latency: float) -> None:
        """Count one delivered message."""
        self._child(self.forward_ok, ft).inc()
        self.forward_latency.observe(latency)

    def gauge_function(self, gauge: Gauge, fn: Callable[[], float]) -> None:
        """Let ``gauge`` read its value from ``fn`` at scrape time."""
        gauge.set_function(fn)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
