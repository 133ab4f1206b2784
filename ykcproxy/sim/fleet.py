"""A fleet of simulated piles against one host:port: ramp, storms, drain, summary.

:class:`Fleet` is the simulator as a library (the integration tests and the
benchmarks use it; ``ykcproxy-sim`` is a command line around it).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ykcproxy.sim.faults import NO_FAULTS, Faults
from ykcproxy.sim.link import PileLink
from ykcproxy.sim.pile import Connector, PileSettings, SimPile
from ykcproxy.sim.stats import Stats
from ykcproxy.wire.crc import CrcOrder

log = Logger()


@attrs.frozen
class FleetSettings:
    """What to simulate and where."""

    host: str = "127.0.0.1"
    port: int = 27600
    piles: int = 10
    #: Pile ids are ``id_base + i`` as 14 digits.
    id_base: int = 32010200000001
    #: Piles started per second (0: all at once).
    ramp_rate: float = 500.0
    #: Share of piles whose first gun starts charging (offline card) once logged in.
    charging_share: float = 0.0
    #: Seconds a locally started charge lasts (None: until the end of the run).
    charge_duration: float | None = None
    #: "low-first", "high-first" or "mixed" (every other pile high first).
    crc: str = "low-first"
    connect_timeout: float = 10.0
    seed: int = 1
    pile: PileSettings = PileSettings()
    faults: Faults = NO_FAULTS
    #: The spec 13.3 rule every pile breaks in the charges the platform starts (0: none).
    misbehave: int = 0


def tcp_connector(reactor: Any, host: str, port: int, timeout: float = 10.0) -> Connector:
    """A connector opening a TCP connection to ``host:port`` for each link."""
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)

    def connect(link: PileLink) -> Deferred[Any]:
        return connectProtocol(endpoint, link)

    return connect


class Fleet:
    """N simulated piles: ramp them up, watch them, storm them, stop them.

    ``on_event(name, data)`` is told about milestones ("all_logged_in",
    "storm", "storm_recovered"); ``on_state`` counts come from the piles.
    """

    def __init__(
        self,
        settings: FleetSettings,
        reactor: Any,
        clock: IReactorTime | None = None,
        stats: Stats | None = None,
        connector: Connector | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.reactor = reactor
        self.clock: IReactorTime = clock or reactor
        self.stats = stats or Stats()
        self.on_event = on_event
        self.connector = connector or tcp_connector(
            reactor, settings.host, settings.port, settings.connect_timeout
        )
        self.rnd = random.Random(settings.seed)
        self.connected = 0
        self.logged_in: set[str] = set()
        self.ready: set[str] = set()
        self.ever_logged_in: set[str] = set()
        self.started_at = 0.0
        self.all_logged_in_at: float | None = None
        self._ramp_index = 0
        self._ramp_call: Any = None
        self._all_logged_in: list[Deferred[float]] = []
        self._storm: dict[str, Any] | None = None
        self.piles: list[SimPile] = []
        charging = set(
            self.rnd.sample(range(settings.piles), round(settings.charging_share * settings.piles))
        )
        for i in range(settings.piles):
            pile_settings = settings.pile
            if settings.crc == "high-first" or (settings.crc == "mixed" and i % 2):
                pile_settings = attrs.evolve(pile_settings, crc_order=CrcOrder.HIGH_FIRST)
            pile = SimPile(
                f"{settings.id_base + i:014d}",
                self.clock,
                self.connector,
                pile_settings,
                self.stats,
                settings.faults,
                random.Random(settings.seed * 1_000_003 + i),
                on_state=self._pile_state,
                misbehave=settings.misbehave,
            )
            pile.charges_locally = i in charging
            self.piles.append(pile)

    # -- ramp -------------------------------------------------------------------------
    def start(self) -> Deferred[float]:
        """Start the piles at ``ramp_rate``; fires with the seconds until all were logged in."""
        self.started_at = self.clock.seconds()
        self._ramp()
        return self.wait_all_logged_in()

    def _ramp(self) -> None:
        rate = self.settings.ramp_rate
        total = len(self.piles)
        if rate <= 0:
            batch = total
        else:
            elapsed = self.clock.seconds() - self.started_at
            batch = max(1, min(total, int(elapsed * rate) + 1) - self._ramp_index)
        end = min(total, self._ramp_index + batch)
        for pile in self.piles[self._ramp_index : end]:
            pile.start()
        self._ramp_index = end
        self._ramp_call = self.clock.callLater(0.01, self._ramp) if end < total else None

    def wait_all_logged_in(self) -> Deferred[float]:
        """Fires (with seconds since start) once every pile has logged in at least once."""
        if self.all_logged_in_at is not None:
            return succeed(self.all_logged_in_at - self.started_at)
        d: Deferred[float] = Deferred()
        self._all_logged_in.append(d)
        return d

    # -- pile states ----------------------------------------------------------------
    def _pile_state(self, pile: SimPile, state: str) -> None:
        pid = pile.pile_id
        if state == "connected":
            self.connected += 1
        elif state in ("offline", "disconnected"):
            self.connected -= 1
            self.logged_in.discard(pid)
            self.ready.discard(pid)
        elif state == "logged_in":
            self.logged_in.add(pid)
            first = pid not in self.ever_logged_in
            self.ever_logged_in.add(pid)
            if first and pile.charges_locally:
                delay = pile.rnd.uniform(0, pile.settings.charging_interval)
                self.clock.callLater(delay, self._start_local, pile)
            if len(self.ever_logged_in) == len(self.piles) and self.all_logged_in_at is None:
                self.all_logged_in_at = now = self.clock.seconds()
                elapsed = now - self.started_at
                self._event("all_logged_in", seconds=round(elapsed, 3))
                waiters, self._all_logged_in = self._all_logged_in, []
                for d in waiters:
                    d.callback(elapsed)
            storm = self._storm
            if storm is not None and pid in storm["waiting"]:
                storm["waiting"].discard(pid)
                if not storm["waiting"]:
                    self._storm_recovered()
        elif state == "ready":
            self.ready.add(pid)

    def _start_local(self, pile: SimPile) -> None:
        if pile.running:
            pile.start_local_charge("01", self.settings.charge_duration)

    def _event(self, name: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(name, data)

    # -- storms ---------------------------------------------------------------------
    def storm(self, share: float = 1.0, reconnect_delay: float = 0.0) -> Deferred[float]:
        """Drop ``share`` of the piles at once; they reconnect after ``reconnect_delay``.

        Fires with the seconds until every dropped pile logged in again.
        """
        online = [p for p in self.piles if p.pile_id in self.logged_in]
        victims = online if share >= 1 else self.rnd.sample(online, round(share * len(online)))
        d: Deferred[float] = Deferred()
        now = self.clock.seconds()
        self._storm = {"at": now, "waiting": {p.pile_id for p in victims}, "d": d, "count": len(victims)}
        self.stats.events["storms"] += 1
        self._event("storm", piles=len(victims))
        if not victims:
            self._storm_recovered()
            return d
        for pile in victims:
            pile.drop(reconnect_delay)
        return d

    def _storm_recovered(self) -> None:
        storm, self._storm = self._storm, None
        assert storm is not None
        elapsed = self.clock.seconds() - storm["at"]
        self._event("storm_recovered", seconds=round(elapsed, 3), piles=storm["count"])
        storm["d"].callback(elapsed)

    # -- stop -----------------------------------------------------------------------
    def pending(self) -> int:
        """Requests (and 0x3B records) still waiting for their reply, fleet-wide."""
        return sum(len(p.pending_requests()) for p in self.piles)

    def stop(self, drain: float = 2.0) -> Deferred[None]:
        """Stop new requests, wait up to ``drain`` s for the replies still due, close every link.

        The links are closed cleanly (a server that stopped reading gets a reset
        after :attr:`SimPile.CLOSE_GRACE`)."""
        if self._ramp_call is not None and self._ramp_call.active():
            self._ramp_call.cancel()
        for pile in self.piles:
            pile.running = False
            pile._cancel("heartbeat")
            pile._cancel("reconnect")
        d: Deferred[None] = Deferred()
        deadline = self.clock.seconds() + drain

        def check() -> None:
            if self.pending() and self.clock.seconds() < deadline:
                self.clock.callLater(0.05, check)
                return
            for pile in self.piles:
                pile.settle_pending()
            # A clean close (FIN), so the server sees each pile go offline as "closed".
            closing = [pile.stop(abort=False) for pile in self.piles]
            DeferredList(closing, consumeErrors=True).addCallback(lambda _: d.callback(None))

        check()
        return d

    # -- reporting ------------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        """Counts for a progress line."""
        return {
            "piles": len(self.piles),
            "started": self._ramp_index,
            "connected": self.connected,
            "loggedIn": len(self.logged_in),
            "ready": len(self.ready),
            "charging": sum(1 for p in self.piles for g in p.guns if g.charging),
            "sent": sum(self.stats.sent.values()),
            "received": sum(self.stats.received.values()),
            "errors": sum(self.stats.errors.values()),
            "lost": self.stats.lost_total,
        }
