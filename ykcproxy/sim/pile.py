"""One simulated charging pile: logs in, heartbeats, charges, answers the platform.

A :class:`SimPile` behaves like the piles the spec describes
(``spec/NOTES.md``, "Behaviour"):

- on every (re)connect it logs in (0x01), then verifies its billing model
  (0x05; if the platform says it is not current it asks for it with 0x09);
- it sends a heartbeat (0x03) per gun every ``heartbeat_interval`` and,
  after ``heartbeat_misses`` unanswered ones in a row, drops the link;
- it answers every platform command with its reply frame, echoing the
  command's seq (0x12→0x13, 0x34→0x33, 0x36→0x35, 0x42→0x41, 0x44→0x43,
  0x46→0x45, 0x48→0x47, 0x52→0x51, 0x56→0x55, 0x58→0x57, 0x62→0x63,
  0x92→0x91, 0x94→0x93, 0xA4→0xA3);
- a started gun sends 0x13, 0x23 and 0x25 every ``charging_interval``; an
  idle gun sends 0x13 every ``idle_interval``;
- a stopped charge produces a 0x3B record, retried every
  ``record_retry_interval`` up to ``record_retries`` times until a 0x40
  comes, then once more ``record_last_delay`` later (spec 8.7/8.8);
- a dropped link is reconnected with an exponential, jittered backoff.

Time comes from the injected ``clock`` (tests use :class:`twisted.internet.task.Clock`);
connections come from the injected ``connector``, which connects a
:class:`PileLink` somewhere and returns a Deferred.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ykcproxy.sim.faults import NO_FAULTS, Faults, FaultWriter
from ykcproxy.sim.link import PileLink, Received
from ykcproxy.sim.stats import Stats
from ykcproxy.wire.codec import Codec
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.examples import example
from ykcproxy.wire.fields import SHANGHAI

log = Logger()

_FT = [f"{code:02x}" for code in range(256)]
_CODEC = Codec()

#: Pile requests the platform answers, and the answer's frame type.
REPLY_OF = {0x01: 0x02, 0x03: 0x04, 0x05: 0x06, 0x09: 0x0A}
REQUEST_OF = {reply: request for request, reply in REPLY_OF.items()}

#: Gun status values of 0x13.
STATUS_FAULT, STATUS_IDLE, STATUS_CHARGING = 1, 2, 3
#: Stop reasons of 0x3B (spec appendix 13.1).
STOP_APP, STOP_SOC_FULL, STOP_MANUAL = 0x40, 0x41, 0x45
#: Start types of 0x3B.
START_APP, START_CARD, START_OFFLINE_CARD = 1, 2, 4

Connector = Callable[[PileLink], "Deferred[Any]"]


@attrs.frozen
class PileSettings:
    """How a simulated pile behaves; times are in seconds."""

    guns: int = 1
    heartbeat_interval: float = 10.0
    heartbeat_misses: int = 3
    charging_interval: float = 15.0
    #: 0x13 of an idle gun (the spec: every 5 minutes); 0 = never.
    idle_interval: float = 300.0
    #: A request (login, heartbeat, billing model) unanswered this long is lost.
    reply_timeout: float = 10.0
    record_retry_interval: float = 30.0
    record_retries: int = 3
    record_last_delay: float = 300.0
    #: Reconnect backoff: ``min(cap, base * 2**attempt)``, times a jitter in [0.5, 1].
    reconnect_base: float = 1.0
    reconnect_cap: float = 60.0
    reboot_delay: float = 5.0
    #: Seconds between a 0x94 and its 0x93 (the simulated download and check).
    update_delay: float = 1.0
    #: The billing model the pile has at first (0000 on first contact).
    billing_model_code: str = "0000"
    crc_order: CrcOrder = CrcOrder.LOW_FIRST
    #: Charging power, for the energy and money in 0x13 and 0x3B.
    power_kw: float = 60.0
    #: Price (electricity + service) per kWh, ×100000 yuan.
    unit_price: int = 130000
    #: After a 0x34 on an unplugged gun, a plug-in within this window still starts it.
    plug_window: float = 60.0
    software_version: str = "SIM1.0"


@attrs.define(eq=False)
class Gun:
    """One gun of a simulated pile."""

    number: str
    plugged: bool = True
    charging: bool = False
    trade_seq: str = "0" * 32
    start_type: int = START_APP
    started_at: float = 0.0
    #: Energy of this charge and the meter reading at its start, ×10000 kWh.
    energy: int = 0
    meter: int = 0
    soc: int = 30
    #: 0x13 frames sent in this charge so far.
    reports: int = 0
    timer: IDelayedCall | None = None
    stop_timer: IDelayedCall | None = None
    #: A 0x34/0xA4 waiting for the gun to be plugged: (fields, seq, reply code, expiry).
    pending_start: tuple[dict[str, Any], int, int, IDelayedCall] | None = None


@attrs.define(eq=False)
class Record:
    """A 0x3B transaction record waiting for its 0x40."""

    trade_seq: str
    fields: dict[str, Any]
    first_sent: float
    attempts: int = 0
    last_sent: float = 0.0
    timer: IDelayedCall | None = None


class SimPile:
    """A simulated pile (see the module doc); ``start()`` connects it."""

    def __init__(
        self,
        pile_id: str,
        clock: IReactorTime,
        connector: Connector | None,
        settings: PileSettings = PileSettings(),
        stats: Stats | None = None,
        faults: Faults = NO_FAULTS,
        rnd: random.Random | None = None,
        codec: Codec = _CODEC,
        on_state: Callable[[SimPile, str], None] | None = None,
        misbehave: int = 0,
    ) -> None:
        self.pile_id = pile_id
        #: The spec 13.3 rule this pile breaks on purpose in its platform-started charges (0: none).
        self.misbehave = misbehave
        self.clock = clock
        self.connector = connector
        self.settings = settings
        self.stats = stats if stats is not None else Stats()
        self.faults = faults
        self.rnd = rnd or random.Random(pile_id)
        self.codec = codec
        #: Called with "connected", "logged_in", "ready", "offline" as they happen.
        self.on_state = on_state
        self.guns = [Gun(f"{i:02d}") for i in range(1, settings.guns + 1)]
        self.billing_model_code = settings.billing_model_code
        self.link: PileLink | None = None
        self.logged_in = False
        self.ready = False
        self.running = False
        self.records: dict[str, Record] = {}
        self.offline_cards: dict[str, str] = {}
        self.allow_work = 0
        self.max_output_power = 100
        #: Pile clock minus platform clock (set by 0x56), seconds.
        self.clock_offset = 0.0
        self.logins = 0
        #: Whether the fleet starts a charge on the first gun once this pile logs in.
        self.charges_locally = False
        self._attempt = 0
        #: A one-off delay for the next reconnect (storms, reboots), instead of the backoff.
        self._next_delay: float | None = None
        self._trade_counter = 0
        self._pending: dict[int, tuple[int, float]] = {}
        self._missed_heartbeats = 0
        self._closing = False
        self._reboot_when_idle = False
        self._timers: dict[str, IDelayedCall] = {}
        self._writer = FaultWriter(faults, clock, self.rnd, self.stats) if faults.on_writes else None
        self._heartbeat_bodies: dict[str, bytes] = {}

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        """Connect (and keep reconnecting until :meth:`stop`)."""
        self.running = True
        self._connect()

    def stop(self, abort: bool = True) -> Deferred[None]:
        """Stop everything; fires once the link is closed.

        By default the link is aborted: a server that stopped reading (back
        pressure) would otherwise keep a graceful close waiting forever.
        """
        self.running = False
        for name in list(self._timers):
            self._cancel(name)
        for gun in self.guns:
            self._stop_gun_timers(gun)
        for record in self.records.values():
            if record.timer is not None and record.timer.active():
                record.timer.cancel()
        return self.close(abort=abort)

    #: Seconds a graceful close may take before the link is aborted (a server that
    #: stopped reading never takes the rest of what was written).
    CLOSE_GRACE = 2.0

    def close(self, abort: bool = True) -> Deferred[None]:
        """Close the link on purpose (requests waiting are *abandoned*, not lost).

        ``abort``: reset it at once (the server sees an ``error``); otherwise flush
        and close it (the server sees ``closed``), resetting it after
        :attr:`CLOSE_GRACE` seconds if it is still open.
        """
        link = self.link
        if link is None or not link.connected or link.transport is None:
            return succeed(None)
        self._closing = True
        transport: Any = link.transport
        if abort:
            transport.abortConnection()
            return link.lost
        transport.loseConnection()
        if not link.lost.called:
            grace = self.clock.callLater(self.CLOSE_GRACE, self._abort_if_open, link)

            def closed(result: object) -> object:
                if grace.active():
                    grace.cancel()
                return result

            link.lost.addBoth(closed)
        return link.lost

    @staticmethod
    def _abort_if_open(link: PileLink) -> None:
        if link.connected and link.transport is not None:
            link.transport.abortConnection()  # type: ignore[attr-defined]

    def drop(self, reconnect_delay: float | None = None) -> None:
        """Lose the link abruptly (a reconnect storm), and reconnect after ``reconnect_delay``."""
        self._attempt = 0
        if reconnect_delay is not None:
            self._next_delay = reconnect_delay
        self.close(abort=True)

    def _connect(self) -> None:
        if not self.running or self.connector is None:
            return
        link = PileLink(
            self.codec,
            self.settings.crc_order,
            on_frame=self._on_frame,
            on_connect=self._on_connect,
            on_lost=self._on_lost,
            on_error=self._on_error,
            keep=False,
        )
        self.stats.events["connect_attempts"] += 1
        d = self.connector(link)
        d.addErrback(self._connect_failed, link)

    def _connect_failed(self, failure: Failure, link: PileLink) -> None:
        if link.connected or link.lost.called:
            return
        self.stats.errors["connect_failed"] += 1
        log.debug("pile {pile_id} could not connect: {e}", pile_id=self.pile_id, e=failure.value)
        self._schedule_reconnect()

    def reconnect_delay(self) -> float:
        """Seconds before the next connection attempt (exponential, jittered, capped)."""
        s = self.settings
        if self._next_delay is not None:
            delay, self._next_delay = self._next_delay, None
            return delay
        base = min(s.reconnect_cap, s.reconnect_base * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 30)
        return base * (0.5 + self.rnd.random() / 2)

    def _schedule_reconnect(self) -> None:
        if not self.running:
            return
        self.stats.events["reconnects"] += 1
        self._later("reconnect", self.reconnect_delay(), self._connect)

    def _on_connect(self, link: PileLink) -> None:
        self.link = link
        self._closing = False
        self._pending.clear()
        self._missed_heartbeats = 0
        self.stats.events["connects"] += 1
        if self._writer is not None:
            self._writer.attach(link.write)
        if self.faults.slow_share and self.rnd.random() < self.faults.slow_share:
            self._later("slow", self.rnd.uniform(0, self.faults.slow_every), self._slow_pause)
        self._state("connected")
        self._login()

    def _on_lost(self, link: PileLink, reason: Failure) -> None:
        if link is not self.link:
            return
        self.link = None
        was_logged_in = self.logged_in
        self.logged_in = self.ready = False
        for name in ("heartbeat", "login_timeout", "slow", "resume"):
            self._cancel(name)
        for gun in self.guns:
            if not gun.charging:
                self._stop_gun_timers(gun)
        if self._writer is not None:
            self._writer.attach(None)
        bucket = self.stats.abandoned if (self._closing or not self.running) else self.stats.lost
        for code, _ in self._pending.values():
            bucket[_FT[code]] += 1
        self._pending.clear()
        if not self._closing and self.running:
            self.stats.errors["disconnected"] += 1
            log.debug("pile {pile_id} lost its link: {e}", pile_id=self.pile_id, e=reason.value)
        self._closing = False
        self.stats.events["disconnects"] += 1
        self._state("offline" if was_logged_in else "disconnected")
        self._schedule_reconnect()

    def _on_error(self, link: PileLink, error: Any) -> None:
        kind = getattr(error, "kind", None) or type(error).__name__
        self.stats.errors[f"read_{kind}"] += 1

    def _state(self, state: str) -> None:
        if self.on_state is not None:
            self.on_state(self, state)

    # -- timers -------------------------------------------------------------------
    def _later(self, name: str, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self._cancel(name)
        self._timers[name] = self.clock.callLater(delay, self._fire, name, fn, *args)

    def _fire(self, name: str, fn: Callable[..., Any], *args: Any) -> None:
        self._timers.pop(name, None)
        fn(*args)

    def _cancel(self, name: str) -> None:
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    # -- writing ----------------------------------------------------------------------
    def now_ms(self) -> int:
        """The pile clock, unix milliseconds."""
        return int((self.clock.seconds() + self.clock_offset) * 1000)

    def send(self, code: int, fields: Mapping[str, Any], seq: int | None = None) -> int | None:
        """Encode and write one frame (no checks: the pile builds valid frames); return its seq."""
        return self.send_body(code, self.codec.encode_body(code, fields), seq)

    def send_body(self, code: int, body: bytes, seq: int | None = None) -> int | None:
        """Write one frame around an encoded body; None when there is no link."""
        link = self.link
        if link is None or not link.connected:
            self.stats.events["unsent_offline"] += 1
            return None
        if seq is None:
            seq = link.seq
            link.seq = (seq + 1) & 0xFFFF
        data = link.frame_body(code, body, seq)
        if self._writer is not None:
            self._writer.write(data)
        else:
            link.write(data)
        self.stats.sent[_FT[code]] += 1
        return seq

    def _request(self, code: int, fields: Mapping[str, Any] | None = None, body: bytes | None = None) -> None:
        if body is None:
            assert fields is not None
            body = self.codec.encode_body(code, fields)
        seq = self.send_body(code, body)
        if seq is not None:
            self._pending[seq] = (code, self.clock.seconds())

    # -- login and billing model --------------------------------------------------------
    def _login(self) -> None:
        fields = {
            "id": self.pile_id,
            "elcType": 0,
            "guns": len(self.guns),
            "protocolVersion": 16,
            "softwareVersion": self.settings.software_version,
            "network": 1,
            "sim": "00000000000000000000",
            "operator": 4,
        }
        self._request(0x01, fields)
        self._later("login_timeout", self.settings.reply_timeout, self._login_timed_out)

    def _login_timed_out(self) -> None:
        self.stats.lost["01"] += 1
        self._pending = {s: p for s, p in self._pending.items() if p[0] != 0x01}
        log.debug("pile {pile_id}: no login answer; reconnecting", pile_id=self.pile_id)
        self._drop_link()

    def _drop_link(self) -> None:
        """The pile itself gives up on the link (it reconnects with backoff)."""
        link = self.link
        if link is not None and link.transport is not None:
            link.transport.abortConnection()  # type: ignore[attr-defined]

    def _logged_in(self, accepted: bool) -> None:
        self._cancel("login_timeout")
        if not accepted:
            self.stats.errors["login_refused"] += 1
            self._drop_link()
            return
        self.logged_in = True
        self.logins += 1
        self._attempt = 0
        self.stats.events["logins"] += 1
        self._state("logged_in")
        self._request(0x05, {"id": self.pile_id, "billingModelCode": self.billing_model_code})
        interval = self.settings.heartbeat_interval
        self._later("heartbeat", self.rnd.uniform(0, interval), self._heartbeat)
        for gun in self.guns:
            if gun.charging:
                self._realtime(gun)
            elif self.settings.idle_interval:
                self._gun_timer(gun, self.rnd.uniform(0, self.settings.idle_interval), self._idle_tick)

    def _billing_verified(self, fields: dict[str, Any]) -> None:
        if fields["result"]:
            self._set_ready()
        else:
            self._request(0x09, {"id": self.pile_id})

    def _billing_model(self, fields: dict[str, Any]) -> None:
        self.billing_model_code = fields["billingModelCode"]
        self._set_ready()

    def _set_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self._state("ready")

    # -- heartbeat ------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        if not self.logged_in:
            return
        s = self.settings
        now = self.clock.seconds()
        missed = False
        for seq, (code, sent_at) in list(self._pending.items()):
            if now - sent_at >= s.reply_timeout:
                del self._pending[seq]
                self.stats.lost[_FT[code]] += 1
                missed = missed or code == 0x03
        if missed:
            self._missed_heartbeats += 1
            if self._missed_heartbeats >= s.heartbeat_misses:
                self.stats.errors["heartbeat_replies_missing"] += 1
                self._drop_link()
                return
        for gun in self.guns:
            body = self._heartbeat_bodies.get(gun.number)
            if body is None:
                fields = {"id": self.pile_id, "gun": gun.number, "gunStatus": 0}
                body = self._heartbeat_bodies[gun.number] = self.codec.encode_body(0x03, fields)
            self._request(0x03, body=body)
        self._later("heartbeat", s.heartbeat_interval, self._heartbeat)

    # -- reading ---------------------------------------------------------------------------
    def _on_frame(self, got: Received) -> None:
        code = got.code
        self.stats.received[_FT[code]] += 1
        request = REQUEST_OF.get(code)
        if request is not None:
            pending = self._pending.get(got.seq)
            if pending is None or pending[0] != request:
                self.stats.errors[f"unexpected_{_FT[code]}"] += 1
                return
            del self._pending[got.seq]
            now = self.clock.seconds()
            self.stats.latency(_FT[request], now, now - pending[1])
            if code == 0x02:
                self._logged_in(bool(got.fields["result"]))
            elif code == 0x04:
                self._missed_heartbeats = 0
            elif code == 0x06:
                self._billing_verified(got.fields)
            elif code == 0x0A:
                self._billing_model(got.fields)
            return
        handler = self._HANDLERS.get(code)
        if handler is None:
            self.stats.errors[f"unhandled_{_FT[code]}"] += 1
            return
        if not self.logged_in:
            self.stats.errors["command_before_login"] += 1
            return
        handler(self, got.fields, got.seq)

    # -- commands ----------------------------------------------------------------------------
    def gun(self, number: str) -> Gun | None:
        """The gun ``number`` ("01"...), or None."""
        for gun in self.guns:
            if gun.number == number:
                return gun
        return None

    def _read_realtime(self, fields: dict[str, Any], seq: int) -> None:
        gun = self.gun(fields["gunId"])
        if gun is None:
            self.stats.errors["unknown_gun"] += 1
            return
        self._realtime(gun, seq)

    def _remote_start(self, fields: dict[str, Any], seq: int, reply: int = 0x33) -> None:
        gun = self.gun(fields["gunId"])
        extra = {"masterFlag": 0, "parallelSeq": fields["parallelSeq"]} if reply == 0xA3 else {}

        def answer(ok: bool, reason: int) -> None:
            body = {
                "tradeSeq": fields["tradeSeq"],
                "id": self.pile_id,
                "gunId": fields["gunId"],
                "result": ok,
                "reason": reason,
                **extra,
            }
            self.send(reply, body, seq)

        if fields["id"] != self.pile_id:
            answer(False, 1)
        elif gun is None or self.allow_work:
            answer(False, 3)
        elif gun.charging:
            answer(False, 2)
        elif not gun.plugged:
            answer(False, 5)
            if gun.pending_start is not None:
                gun.pending_start[3].cancel()
            expiry = self.clock.callLater(self.settings.plug_window, self._start_expired, gun)
            gun.pending_start = (fields, seq, reply, expiry)
        elif self.misbehave == 1:
            pass  # rule 1: the start is never answered, and the gun does not charge
        elif self.misbehave == 2:
            answer(False, 3)  # rule 2: refused, and charging all the same
            self.start_charging(gun, fields["tradeSeq"], START_APP)
        else:
            answer(True, 0)
            self.start_charging(gun, fields["tradeSeq"], START_APP)

    def _parallel_start(self, fields: dict[str, Any], seq: int) -> None:
        self._remote_start(fields, seq, reply=0xA3)

    def _start_expired(self, gun: Gun) -> None:
        gun.pending_start = None

    def plug(self, gun_number: str = "01", plugged: bool = True) -> None:
        """Plug a gun in (or out); a start waiting for the plug (0x34 within 60 s) goes on."""
        gun = self.gun(gun_number)
        assert gun is not None
        gun.plugged = plugged
        if plugged and gun.pending_start is not None and self.logged_in:
            fields, seq, reply, expiry = gun.pending_start
            gun.pending_start = None
            if expiry.active():
                expiry.cancel()
            self._remote_start(fields, seq, reply)

    def _remote_stop(self, fields: dict[str, Any], seq: int) -> None:
        gun = self.gun(fields["gunId"])
        if fields["id"] != self.pile_id:
            ok, reason = False, 1
        elif gun is None or not gun.charging:
            ok, reason = False, 2
        elif self.misbehave == 3:
            ok, reason = False, 3  # rule 3: the stop is refused and the gun goes on charging
        else:
            ok, reason = True, 0
        self.send(0x35, {"id": self.pile_id, "gunId": fields["gunId"], "result": ok, "reason": reason}, seq)
        if ok and gun is not None:
            self.stop_charging(gun, STOP_APP)

    def _record_confirm(self, fields: dict[str, Any], seq: int) -> None:
        record = self.records.pop(fields["tradeSeq"], None)
        if record is None:
            self.stats.events["record_confirm_repeated"] += 1
            return
        if record.timer is not None and record.timer.active():
            record.timer.cancel()
        now = self.clock.seconds()
        self.stats.latency("3b", now, now - record.last_sent)
        self.stats.events["records_confirmed"] += 1

    def _balance_update(self, fields: dict[str, Any], seq: int) -> None:
        result = 0 if fields["id"] == self.pile_id else 1
        self.send(0x41, {"id": self.pile_id, "physicalCard": fields["physicalCard"], "result": result}, seq)

    def _card_sync(self, fields: dict[str, Any], seq: int) -> None:
        for card in fields["cards"]:
            self.offline_cards[card["physicalCard"]] = card["logicCard"]
        self.send(0x43, {"id": self.pile_id, "result": 1, "reason": 0}, seq)

    def _card_clear(self, fields: dict[str, Any], seq: int) -> None:
        cards = []
        for card in fields["cards"]:
            found = self.offline_cards.pop(card, None) is not None
            cards.append({"physicalCard": card, "result": 1 if found else 0, "reason": 0 if found else 1})
        self.send(0x45, {"id": self.pile_id, "cards": cards}, seq)

    def _card_query(self, fields: dict[str, Any], seq: int) -> None:
        cards = [{"physicalCard": c, "result": 1 if c in self.offline_cards else 0} for c in fields["cards"]]
        self.send(0x47, {"id": self.pile_id, "cards": cards}, seq)

    def _work_params(self, fields: dict[str, Any], seq: int) -> None:
        self.allow_work = fields["allowWork"]
        self.max_output_power = fields["maxOutputPower"]
        self.send(0x51, {"id": self.pile_id, "result": 1}, seq)

    def _time_sync(self, fields: dict[str, Any], seq: int) -> None:
        if fields["time"] is not None:
            self.clock_offset = fields["time"] / 1000 - self.clock.seconds()
        self.send(0x55, {"id": self.pile_id, "time": self.now_ms()}, seq)

    def _billing_model_set(self, fields: dict[str, Any], seq: int) -> None:
        self.billing_model_code = fields["billingModelCode"]
        self.send(0x57, {"id": self.pile_id, "result": 1}, seq)

    def _ground_lock(self, fields: dict[str, Any], seq: int) -> None:
        self.send(0x63, {"id": self.pile_id, "gunId": fields["gunId"], "result": 1}, seq)

    def _reboot(self, fields: dict[str, Any], seq: int) -> None:
        self.send(0x91, {"id": self.pile_id, "result": 1}, seq)
        if fields["control"] == 1 or not any(g.charging for g in self.guns):
            self._later("reboot", 0.05, self.reboot)
        else:
            self._reboot_when_idle = True

    def reboot(self) -> None:
        """Restart: stop charging, drop the link, come back after ``reboot_delay``."""
        self._reboot_when_idle = False
        self.stats.events["reboots"] += 1
        for gun in self.guns:
            if gun.charging:
                self.stop_charging(gun, STOP_MANUAL)
        self._next_delay = self.settings.reboot_delay
        self.close(abort=False)

    def _remote_update(self, fields: dict[str, Any], seq: int) -> None:
        status = 0 if fields["id"] == self.pile_id else 1
        self._later(
            "update", self.settings.update_delay, self.send, 0x93, {"id": self.pile_id, "status": status}, seq
        )

    def _start_confirm(self, fields: dict[str, Any], seq: int) -> None:
        gun = self.gun(fields["gunId"])
        if fields["result"] == 1 and gun is not None and not gun.charging:
            self.start_charging(gun, fields["tradeSeq"], START_CARD)

    def _ignore(self, fields: dict[str, Any], seq: int) -> None:
        pass

    _HANDLERS: dict[int, Callable[[SimPile, dict[str, Any], int], None]] = {
        0x12: _read_realtime,
        0x32: _start_confirm,
        0x34: _remote_start,
        0x36: _remote_stop,
        0x40: _record_confirm,
        0x42: _balance_update,
        0x44: _card_sync,
        0x46: _card_clear,
        0x48: _card_query,
        0x52: _work_params,
        0x56: _time_sync,
        0x58: _billing_model_set,
        0x62: _ground_lock,
        0x92: _reboot,
        0x94: _remote_update,
        0xA2: _ignore,
        0xA4: _parallel_start,
    }

    # -- charging ----------------------------------------------------------------------
    def new_trade_seq(self, gun: Gun) -> str:
        """A transaction number: pile id, gun, yyMMddHHmmss (pile clock), counter."""
        self._trade_counter = (self._trade_counter + 1) % 10000
        stamp = datetime.datetime.fromtimestamp(self.now_ms() / 1000, SHANGHAI).strftime("%y%m%d%H%M%S")
        return f"{self.pile_id}{gun.number}{stamp}{self._trade_counter:04d}"

    def start_local_charge(self, gun_number: str = "01", duration: float | None = None) -> str | None:
        """Start charging at the pile (an offline card), without the platform; returns the tradeSeq."""
        gun = self.gun(gun_number)
        if gun is None or gun.charging:
            return None
        trade_seq = self.new_trade_seq(gun)
        self.start_charging(gun, trade_seq, START_OFFLINE_CARD)
        if duration is not None:
            gun.stop_timer = self.clock.callLater(duration, self.stop_charging, gun, STOP_MANUAL)
        return trade_seq

    def start_charging(self, gun: Gun, trade_seq: str, start_type: int) -> None:
        """The gun starts: 0x13 now, then 0x13, 0x23, 0x25 every ``charging_interval``."""
        gun.charging = True
        gun.trade_seq = trade_seq
        gun.start_type = start_type
        gun.started_at = self.clock.seconds()
        gun.energy = 0
        gun.reports = 0
        gun.soc = self.rnd.randint(10, 50)
        self.stats.events["charges_started"] += 1
        self._stop_gun_timers(gun, keep_stop=True)
        self._realtime(gun)
        self._gun_timer(gun, self.settings.charging_interval, self._charging_tick)

    def stop_charging(self, gun: Gun, reason: int = STOP_MANUAL) -> None:
        """The gun stops: 0x13 (idle) now, then the 0x3B record with its retries."""
        if not gun.charging:
            return
        self._accumulate(gun)
        gun.charging = False
        self._stop_gun_timers(gun)
        self.stats.events["charges_stopped"] += 1
        self._realtime(gun)
        fields = self._record_fields(gun, reason)
        gun.meter += gun.energy
        if self.misbehave in (5, 7):
            pass  # rules 5 and 7: no transaction record
        else:
            record = Record(gun.trade_seq, fields, first_sent=self.clock.seconds())
            self.records[gun.trade_seq] = record
            self._send_record(record)
        if self.settings.idle_interval and self.logged_in:
            self._gun_timer(gun, self.settings.idle_interval, self._idle_tick)
        if self._reboot_when_idle and not any(g.charging for g in self.guns):
            self._later("reboot", 0.05, self.reboot)

    def _send_record(self, record: Record) -> None:
        """Send (or resend) a record; schedule the next try (30 s ×3, then 5 min, then give up)."""
        s = self.settings
        record.timer = None
        if record.attempts > s.record_retries + 1:
            return
        if record.attempts > 0:
            self.stats.events["record_retries"] += 1
        record.attempts += 1
        record.last_sent = self.clock.seconds()
        if self.logged_in:
            self.send(0x3B, record.fields)
        else:
            self.stats.events["record_unsent_offline"] += 1
        if record.attempts <= s.record_retries:
            delay = s.record_retry_interval
        elif record.attempts == s.record_retries + 1:
            delay = s.record_last_delay
        else:
            record.timer = self.clock.callLater(s.reply_timeout, self._record_given_up, record)
            return
        record.timer = self.clock.callLater(delay, self._send_record, record)

    def _record_given_up(self, record: Record) -> None:
        """No 0x40 after the last try: the pile stops sending it (spec 8.8)."""
        if self.records.pop(record.trade_seq, None) is not None:
            self.stats.lost["3b"] += 1
            self.stats.events["records_given_up"] += 1

    def _gun_timer(self, gun: Gun, delay: float, fn: Callable[[Gun], None]) -> None:
        if gun.timer is not None and gun.timer.active():
            gun.timer.cancel()
        gun.timer = self.clock.callLater(delay, fn, gun)

    def _stop_gun_timers(self, gun: Gun, keep_stop: bool = False) -> None:
        if gun.timer is not None and gun.timer.active():
            gun.timer.cancel()
        gun.timer = None
        if not keep_stop and gun.stop_timer is not None and gun.stop_timer.active():
            gun.stop_timer.cancel()
        if not keep_stop:
            gun.stop_timer = None

    def _accumulate(self, gun: Gun) -> None:
        hours = (self.clock.seconds() - gun.started_at) / 3600
        gun.energy = int(self.settings.power_kw * hours * 10000)
        gun.soc = min(100, gun.soc + int(hours * 60))

    def _charging_tick(self, gun: Gun) -> None:
        if not gun.charging:
            return
        self._accumulate(gun)
        if self.logged_in:
            self._realtime(gun)
            self._bms_frames(gun)
        self._gun_timer(gun, self.settings.charging_interval, self._charging_tick)

    def _idle_tick(self, gun: Gun) -> None:
        if gun.charging or not self.logged_in:
            return
        self._realtime(gun)
        self._gun_timer(gun, self.settings.idle_interval, self._idle_tick)

    def realtime_fields(self, gun: Gun) -> dict[str, Any]:
        """The 0x13 fields of a gun now."""
        charging = gun.charging
        minutes = int((self.clock.seconds() - gun.started_at) / 60) if charging else 0
        amount = gun.energy * self.settings.unit_price // 100000
        trade_seq = gun.trade_seq if charging else "0" * 32
        status = STATUS_CHARGING if charging else STATUS_IDLE
        plugged = gun.plugged
        if charging and gun.start_type == START_APP:
            if self.misbehave == 4 and gun.reports:
                status = STATUS_IDLE  # rule 4: idle while charging, after the first 0x13
            elif self.misbehave == 5 and gun.reports:
                plugged = False  # rule 5: unplugged while charging (and no record follows)
            elif self.misbehave == 6:
                trade_seq = trade_seq[:-4] + f"{(int(trade_seq[-4:]) + 1) % 10000:04d}"  # rule 6
        return {
            "tradeSeq": trade_seq,
            "id": self.pile_id,
            "gunId": gun.number,
            "status": status,
            "reset": 0 if charging or plugged else 1,
            "plugged": 1 if plugged else 0,
            "ov": 3800 if charging else 0,
            "oc": 1500 if charging else 0,
            "lineTemp": 75,
            "lineCode": "0000000000000000",
            "soc": gun.soc,
            "bpTopTemp": 80,
            "accumulatedChargingTime": minutes,
            "remainingTime": max(0, 100 - gun.soc) if charging else 0,
            "chargingDegrees": gun.energy if charging else 0,
            "lossyChargingDegrees": gun.energy if charging else 0,
            "chargedAmount": amount if charging else 0,
            "hardwareFailure": 0,
        }

    def _realtime(self, gun: Gun, seq: int | None = None) -> None:
        self.send(0x13, self.realtime_fields(gun), seq)
        gun.reports += 1

    def _bms_frames(self, gun: Gun) -> None:
        minutes = int((self.clock.seconds() - gun.started_at) / 60)
        demand = example(0x23, self.pile_id, tradeSeq=gun.trade_seq, gunId=gun.number)
        demand.update(bmsSoc=gun.soc, accumulatedChargingTime=minutes, bmsRemainingTime=max(0, 100 - gun.soc))
        self.send(0x23, demand)
        self.send(0x25, example(0x25, self.pile_id, tradeSeq=gun.trade_seq, gunId=gun.number))

    def _record_fields(self, gun: Gun, reason: int) -> dict[str, Any]:
        energy = gun.energy
        price = self.settings.unit_price
        amount = energy * price // 100000
        now_ms = self.now_ms()
        start_ms = now_ms - int((self.clock.seconds() - gun.started_at) * 1000)
        fields: dict[str, Any] = {
            "tradeSeq": gun.trade_seq,
            "id": self.pile_id,
            "gunId": gun.number,
            "startAt": start_ms,
            "endAt": now_ms,
            "initialMeterReading": gun.meter,
            "finalMeterReading": gun.meter + energy,
            "totalElectricCharge": energy,
            "lossyTotalElectricCharge": energy,
            "consumptionAmount": amount,
            "vin": "LSIM0000000000001" if gun.start_type != START_CARD else "",
            "startType": gun.start_type,
            "transactionDateTime": now_ms,
            "stopReason": reason,
            "physicalCardNumber": "0000000000000000",
        }
        for tier in ("sharp", "peak", "valley"):
            fields.update(
                {
                    f"{tier}UnitPrice": price,
                    f"{tier}ElectricCharge": 0,
                    f"lossy{tier.capitalize()}ElectricCharge": 0,
                    f"{tier}Price": 0,
                }
            )
        fields.update(
            flatUnitPrice=price, flatElectricCharge=energy, lossyFlatElectricCharge=energy, flatPrice=amount
        )
        if self.misbehave == 8:
            fields["flatUnitPrice"] = price + 1000  # rule 8: a unit price the billing model does not have
        return fields

    # -- slow reader ----------------------------------------------------------------------
    def _slow_pause(self) -> None:
        link = self.link
        if link is None or link.transport is None:
            return
        link.transport.pauseProducing()  # type: ignore[attr-defined]
        self.stats.events["injected_read_pauses"] += 1
        self._later("resume", self.faults.slow_pause, self._slow_resume)

    def _slow_resume(self) -> None:
        link = self.link
        if link is not None and link.transport is not None:
            link.transport.resumeProducing()  # type: ignore[attr-defined]
        self._later("slow", self.faults.slow_every, self._slow_pause)

    # -- bookkeeping ---------------------------------------------------------------------
    def pending_requests(self) -> dict[int, tuple[int, float]]:
        """seq -> (frame type, sent at) of the requests waiting for their reply."""
        return dict(self._pending)

    def settle_pending(self) -> None:
        """At the end of a run: requests still waiting become *outstanding* (or lost if timed out)."""
        now = self.clock.seconds()
        for code, sent_at in self._pending.values():
            bucket = (
                self.stats.lost if now - sent_at >= self.settings.reply_timeout else self.stats.outstanding
            )
            bucket[_FT[code]] += 1
        self._pending.clear()
        for record in self.records.values():
            self.stats.outstanding["3b"] += 1
            if record.timer is not None and record.timer.active():
                record.timer.cancel()
        self.records.clear()
