"""The session tracker: orders followed frame by frame, checked by the rules of spec §13.3.

The pile side hands every decoded frame, in both directions, to
:meth:`SessionTracker.observe`.  Only a handful of frame types matter (see
:data:`UPLINK` and :data:`DOWNLINK`); the rest return after one dict lookup.

The rules of §13.3 (协议需知) and the kinds they are reported as:

====  ==============================  =================================================
rule  kind                            broken when
====  ==============================  =================================================
1     ``start-timeout``               no successful 0x33/0xA3 and 0x13 "charging" within
                                      the start timeout of a 0x34/0xA4 (no 0x13 "charging"
                                      within it of a successful 0x32/0xA2)
2     ``charged-after-failed-start``  a 0x13 "charging" for an order whose start failed
3     ``did-not-stop``                a 0x35 failure, or a 0x13 "charging" more than the
                                      stop grace after a 0x36
4     ``idle-while-charging``         two 0x13 "idle" before charging ended by a 0x19, a
                                      successful 0x35 or a record (the order becomes
                                      ``abnormal``)
5     ``unplugged-without-record``    a 0x13 with ``plugged`` 0 while charging, and no 0x3B
                                      within the record timeout
6     ``trade-seq-mismatch``          a 0x33, 0x13 or 0x3B of the gun's open order with
                                      another tradeSeq
6     ``unseen-start``                an order first seen in a 0x33, 0x13 or 0x3B: the
                                      tradeSeq of its record matches no start the proxy saw
7     ``record-missing``              no 0x3B within the record timeout of the end of
                                      charging (a late 0x3B still settles the order)
8     ``tariff-mismatch``             the 0x3B's unit prices or per-period energy disagree
                                      with the pile's billing model (last 0x58 acknowledged
                                      by 0x57, or last 0x0A)
====  ==============================  =================================================

Memory: every order is in one dict by tradeSeq.  An order leaves the gun it
charged on when it is settled, confirmed, failed or replaced by the gun's next
order; once it also has no timer running it is *retired*.  Retired orders stay
queryable, but only the ``keep`` most recently retired, and none retired more
than ``keep_for`` seconds ago.  The orders that are not retired are at most one
per gun plus those with a timer running (which ends within the largest timeout).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

STARTING = "starting"
CHARGING = "charging"
STOPPING = "stopping"
ENDED = "ended"
SETTLED = "settled"
FAILED = "failed"
ABNORMAL = "abnormal"

#: Every state an order can be in.
STATES: tuple[str, ...] = (STARTING, CHARGING, STOPPING, ENDED, SETTLED, FAILED, ABNORMAL)
#: States of an order whose charging has not ended.
OPEN_STATES = frozenset({STARTING, CHARGING, STOPPING})

#: Anomaly kind → the number of the spec §13.3 rule it breaks.
KINDS: Mapping[str, int] = {
    "start-timeout": 1,
    "charged-after-failed-start": 2,
    "did-not-stop": 3,
    "idle-while-charging": 4,
    "unplugged-without-record": 5,
    "trade-seq-mismatch": 6,
    "unseen-start": 6,
    "record-missing": 7,
    "tariff-mismatch": 8,
}

#: Frame types the tracker reads, pile → platform.
UPLINK = frozenset({0x13, 0x19, 0x33, 0x35, 0x3B, 0x57, 0xA3})
#: Frame types the tracker reads, platform → pile (as written to the pile).
DOWNLINK = frozenset({0x0A, 0x32, 0x34, 0x36, 0x40, 0x58, 0xA2, 0xA4})

#: 0x13 ``status`` values.
STATUS_IDLE, STATUS_CHARGING = 0x02, 0x03
#: 0x33 failure reason "gun not plugged": a success may follow within the plug window (§8.4).
REASON_NOT_PLUGGED = 0x05
#: The four billing periods, in the order of ``rateList`` values 0–3.
PERIODS = ("sharp", "peak", "flat", "valley")

#: A 0x13 of an idle gun may carry no tradeSeq: it is then taken to be of the gun's open order.
NO_TRADE = "0" * 32

Direction = Literal["up", "down"]
#: The callback given each message: its body (without ``header``) and its messageId.
Emit = Callable[[dict[str, Any], str], None]
_Handler = Callable[[str, dict[str, Any]], None]


@attrs.frozen
class Anomaly:
    """One broken rule of an order."""

    rule: int  #: the spec §13.3 rule number, 1–8
    kind: str  #: one of :data:`KINDS`
    at: int  #: unix ms
    detail: str

    def to_json(self) -> dict[str, Any]:
        """The anomaly as in the ``session`` message."""
        return {"rule": self.rule, "kind": self.kind, "at": self.at, "detail": self.detail}


@attrs.frozen
class Event:
    """One entry of an order's timeline: a frame, a state change, an anomaly, the pile going offline."""

    at: int  #: unix ms
    what: str  #: ``frame``, ``state``, ``anomaly`` or ``offline``
    info: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry as shown by ``GET /sessions/<tradeSeq>``."""
        return {"at": self.at, "what": self.what, **self.info}


@attrs.define(eq=False)
class Session:
    """One charging order, as the tracker knows it (mutated by the tracker only)."""

    trade_seq: str
    pile_id: str
    gun_id: str
    started_at: int  #: unix ms of the start command (or of the first frame seen)
    #: ``remote`` (0x34/0xA4), ``pile`` (0x32/0xA2 answering the pile's request) or ``unseen``
    origin: str
    command_at: float  #: clock seconds of the start command (or first frame)
    state: str = STARTING
    ended_at: int | None = None
    energy: int = 0  #: ×10000 kWh, from 0x13 ``chargingDegrees`` and then the record
    amount: int = 0  #: ×10000 yuan, from 0x13 ``chargedAmount`` and then the record
    anomalies: list[Anomaly] = attrs.field(factory=list)
    timeline: list[Event] = attrs.field(factory=list)
    record: dict[str, Any] | None = None  #: the first 0x3B, as decoded
    confirmed: bool | None = None  #: the 0x40 answer: True received, False "illegal record"
    tariff_check: str | None = None  #: what came of rule 8
    failure: str | None = None  #: why a ``failed`` order failed
    changes: int = 0  #: messages emitted so far (the messageId counter)
    updated_at: int = 0  #: unix ms of the last message
    # -- bookkeeping of the rules --
    start_replies: int = 0
    start_acked: bool = False
    charging_seen: bool = False
    stop_at: float | None = None
    explicit_end: bool = False
    idle_frames: int = 0
    last_realtime: tuple[int, int] | None = None
    timers: dict[str, IDelayedCall] = attrs.field(factory=dict)
    flagged: set[str] = attrs.field(factory=set)
    wrong_seqs: set[str] = attrs.field(factory=set)

    def message(self) -> dict[str, Any]:
        """The body of the ``session`` message (INTERFACE.md section 4), without ``header``."""
        return {
            "tradeSeq": self.trade_seq,
            "id": self.pile_id,
            "gunId": self.gun_id,
            "state": self.state,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "energy": self.energy,
            "amount": self.amount,
            "anomalies": [a.to_json() for a in self.anomalies],
        }

    def detail(self) -> dict[str, Any]:
        """The message body plus the record, the checks and the timeline."""
        return {
            **self.message(),
            "updatedAt": self.updated_at,
            "changes": self.changes,
            "failure": self.failure,
            "record": self.record,
            "confirmed": self.confirmed,
            "tariffCheck": self.tariff_check,
            "timeline": [e.to_json() for e in self.timeline],
        }


def tariff_problems(model: Mapping[str, Any], record: Mapping[str, Any]) -> list[str]:
    """Where a 0x3B disagrees with a billing model (0x0A/0x58 fields); empty when it agrees.

    Each period's unit price must be the model's fee plus service fee (a price of
    0 is accepted on a period the model does not use and that carries no
    energy), and no period may carry energy unless ``rateList`` uses it.
    """
    used = set(model["rateList"])
    problems = []
    for number, period in enumerate(PERIODS):
        expected = model[f"{period}UnitPrice"] + model[f"{period}ServiceFee"]
        price = record[f"{period}UnitPrice"]
        energy = record[f"{period}ElectricCharge"]
        in_use = number in used
        if energy and not in_use:
            problems.append(
                f"{period} carries energy {energy}, but the billing model has no {period} half-hour"
            )
        if price != expected and (in_use or energy or price):
            problems.append(f"{period} unit price {price}, the billing model's fee + service fee {expected}")
    return problems


class SessionTracker:
    """Follows charging orders through their frames and reports state changes and anomalies.

    ``emit(body, message_id)`` is called once per state change or anomaly;
    ``body`` is the ``session`` message without its ``header``, ``message_id``
    is ``<tradeSeq>-<n>`` with ``n`` the order's change counter.  Timeouts are
    in seconds.  ``plug_window`` is how long after a 0x34 a 0x33 success may
    follow a "gun not plugged" failure (§8.4).  ``keep`` / ``keep_for`` bound the
    retired orders kept (count / seconds); ``timeline_limit`` the timeline
    entries of one order (the first ten are always kept).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        emit: Emit,
        start_timeout: float = 90.0,
        record_timeout: float = 30.0,
        stop_grace: float = 30.0,
        *,
        plug_window: float = 60.0,
        keep: int = 10000,
        keep_for: float = 86400.0,
        timeline_limit: int = 100,
    ) -> None:
        self.clock = clock
        self.emit = emit
        self.start_timeout = start_timeout
        self.record_timeout = record_timeout
        self.stop_grace = stop_grace
        self.plug_window = plug_window
        self.keep = keep
        self.keep_for = keep_for
        self.timeline_limit = max(timeline_limit, 11)
        #: Anomalies reported since start, by rule number (for metrics).
        self.anomaly_counts: Counter[int] = Counter()
        self._orders: dict[str, Session] = {}
        self._open: dict[str, dict[str, Session]] = {}  # pile → gun → the gun's current order
        self._retired: OrderedDict[str, float] = OrderedDict()  # tradeSeq → clock seconds
        self._models: dict[str, dict[str, Any]] = {}  # pile → its billing model
        self._pending_models: dict[str, dict[str, Any]] = {}  # pile → 0x58 awaiting its 0x57
        #: Set by a session store: the orders changed since its last flush (write-behind).
        self.dirty: set[Session] | None = None
        #: Set by a session store: the orders whose energy and amount only moved (a 0x13).
        self.progressed: set[Session] | None = None
        #: Set by a session store: called on every state change or anomaly (flush soon).
        self.on_change: Callable[[Session], None] | None = None
        #: Set by a session store: called with (pile, model) when a pile's billing model changes.
        self.on_model: Callable[[str, dict[str, Any]], None] | None = None
        #: Timer name → what it does when it fires (for re-arming restored timers).
        self._timer_actions: dict[str, Callable[[Session], None]] = {
            "start": self._start_timeout,
            "plug": self._plug_expired,
            "stop": self._stopped_before_charging,
            "record": self._record_missing,
            "unplug": self._unplug_expired,
        }
        #: Timer name → its full length in seconds (a restored overdue timer runs it again).
        self._timer_lengths: dict[str, float] = {
            "start": start_timeout,
            "plug": plug_window,
            "stop": stop_grace,
            "record": record_timeout,
            "unplug": record_timeout,
        }
        self._up: dict[int, _Handler] = {
            0x13: self._realtime,
            0x19: self._charging_end,
            0x33: self._start_reply,
            0xA3: self._start_reply,
            0x35: self._stop_reply,
            0x3B: self._record,
            0x57: self._model_ack,
        }
        self._down: dict[int, _Handler] = {
            0x34: self._remote_start,
            0xA4: self._remote_start,
            0x32: self._start_confirm,
            0xA2: self._start_confirm,
            0x36: self._stop,
            0x40: self._confirm,
            0x58: self._model_set,
            0x0A: self._model_reply,
        }

    @property
    def up_types(self) -> frozenset[int]:
        """The pile→platform frame types this tracker reads."""
        return frozenset(self._up)

    @property
    def down_types(self) -> frozenset[int]:
        """The platform→pile frame types this tracker reads."""
        return frozenset(self._down)

    # -- feed -------------------------------------------------------------------------
    def observe(
        self, pile_id: str, direction: Direction, ft: int, fields: dict[str, Any], raw: bytes = b""
    ) -> None:
        """One decoded frame: ``up`` as received from the pile, ``down`` as written to it.

        ``fields`` is the frame's JSON fields (INTERFACE.md section 2); the
        tracker does not keep a reference to it, except a copy of a 0x3B.  A
        failure inside the tracker is logged, never raised to the pile side.
        """
        if direction == "up":
            handler = self._up.get(ft)
        elif direction == "down":
            handler = self._down.get(ft)
        else:
            raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
        if handler is None:
            return
        try:
            handler(pile_id, fields)
        except Exception:
            self.log.failure("tracking frame 0x{ft:02x} of pile {pile_id}", ft=ft, pile_id=pile_id)

    def bad_input(self, pile_ids: list[str], kind: str, data: bytes, detail: str) -> None:
        """Dropped bytes say nothing about orders."""

    def pile_offline(self, pile_id: str) -> None:
        """The pile went offline: noted in its open orders; an unanswered 0x58 is dropped.

        Timers keep running: a pile sends its record again when it is back.
        """
        self._pending_models.pop(pile_id, None)
        for order in self._open.get(pile_id, {}).values():
            self._note(order, "offline")

    def stop(self) -> None:
        """Cancel every timer (the service is stopping)."""
        for order in self._orders.values():
            for call in order.timers.values():
                if call.active():
                    call.cancel()
            order.timers.clear()

    # -- persistence ------------------------------------------------------------------
    def is_current(self, order: Session) -> bool:
        """Whether ``order`` is its gun's open order (the one 0x35, 0x36 and 0x13 frames concern)."""
        return self._current(order.pile_id, order.gun_id) is order

    def is_live(self, order: Session) -> bool:
        """Whether ``order`` is not retired yet: its gun's open order, or with a timer running."""
        return bool(order.timers) or self.is_current(order)

    def timer_deadlines(self, order: Session) -> dict[str, tuple[float, float]]:
        """The running timers of ``order``: name → (clock seconds it fires at, its full length)."""
        return {
            name: (call.getTime(), self._timer_lengths[name])
            for name, call in order.timers.items()
            if call.active()
        }

    def restore(self, order: Session, deadlines: Mapping[str, tuple[float, float]], current: bool) -> None:
        """Take back an order a session store kept from before a restart.

        It becomes its gun's open order again if it is not retired; each timer
        is re-armed for the time it had left, and one whose time ran out while
        the proxy was down runs its full length again from now (the frames of
        that time were not seen, and the pile sends its record again after a
        reconnect).  ``current``: it was its gun's open order.  Nothing is emitted.
        """
        if order.trade_seq in self._orders:
            return
        self._orders[order.trade_seq] = order
        now = self.clock.seconds()
        for name, (due, length) in deadlines.items():
            fire = self._timer_actions.get(name)
            if fire is None:
                continue
            left = due - now
            self._timer(order, name, left if left > 0 else length, fire)
        if current:
            self._open.setdefault(order.pile_id, {}).setdefault(order.gun_id, order)
        self._maybe_retire(order)

    # -- reading ----------------------------------------------------------------------
    def get(self, trade_seq: str) -> Session | None:
        """The order of ``trade_seq``, if still kept."""
        self._prune()
        return self._orders.get(trade_seq)

    def sessions(self) -> Iterator[Session]:
        """Every order kept, in no particular order."""
        self._prune()
        return iter(list(self._orders.values()))

    def counts_by_state(self) -> Counter[str]:
        """How many kept orders are in each state (for metrics)."""
        self._prune()
        return Counter(order.state for order in self._orders.values())

    def billing_model(self, pile_id: str) -> Mapping[str, Any] | None:
        """The billing model rule 8 checks the pile's records against, if known."""
        return self._models.get(pile_id)

    def restore_models(self, models: Mapping[str, dict[str, Any]]) -> None:
        """Load billing models known before a restart (a model seen since is newer and stays)."""
        for pile_id, model in models.items():
            self._models.setdefault(pile_id, model)

    # -- starts -----------------------------------------------------------------------
    def _remote_start(self, pile_id: str, f: dict[str, Any]) -> None:
        trade_seq = f["tradeSeq"].upper()  # as the pile's frames will carry it
        if trade_seq in self._orders:
            self._frame(self._orders[trade_seq], "down", "34")
            return
        order = self._create(pile_id, f["gunId"], trade_seq, "remote", STARTING)
        self._frame(order, "down", "34")
        self._timer(order, "start", self.start_timeout, self._start_timeout)

    def _start_confirm(self, pile_id: str, f: dict[str, Any]) -> None:
        trade_seq = f["tradeSeq"].upper()
        if trade_seq in self._orders:
            self._frame(self._orders[trade_seq], "down", "32", result=f["result"])
            return
        accepted = f["result"] == 1
        if accepted:
            order = self._create(pile_id, f["gunId"], trade_seq, "pile", STARTING, start_acked=True)
            self._timer(order, "start", self.start_timeout, self._start_timeout)
        else:
            why = f"start request refused by the platform (reason {f['reason']})"
            order = self._create(
                pile_id, f["gunId"], trade_seq, "pile", FAILED, failure=why, ended_at=self._ms()
            )
            self._maybe_retire(order)
        self._frame(order, "down", "32", result=f["result"], reason=f["reason"])

    def _start_reply(self, pile_id: str, f: dict[str, Any]) -> None:
        trade_seq, result, reason = f["tradeSeq"], f["result"], f["reason"]
        order = self._orders.get(trade_seq)
        if order is None:
            current = self._current(pile_id, f["gunId"])
            if current is not None and current.state == STARTING and current.origin == "remote":
                self._mismatch(current, "0x33", trade_seq)
                order = current
            elif result:
                order = self._create(
                    pile_id,
                    f["gunId"],
                    trade_seq,
                    "unseen",
                    STARTING,
                    self._unseen("a successful 0x33 answering no 0x34 the proxy saw"),
                )
                self._timer(order, "start", self.start_timeout, self._start_timeout)
            else:
                return
        self._frame(order, "up", "33", result=result, reason=reason)
        order.start_replies += 1
        if order.state != STARTING:
            return
        if result:
            order.start_acked = True
            self._cancel(order, "plug")
            self._attach(order)
            if order.charging_seen:
                self._charging(order)
        elif reason == REASON_NOT_PLUGGED and order.origin == "remote":
            left = order.command_at + self.plug_window - self.clock.seconds()
            if left > 0:
                self._timer(order, "plug", left, self._plug_expired)
            else:
                self._fail(order, "gun not plugged (0x33 reason 5)")
        else:
            self._fail(order, f"start failed at the pile (0x33 reason {reason})")

    def _plug_expired(self, order: Session) -> None:
        if order.state == STARTING:
            self._fail(order, "gun not plugged (0x33 reason 5) within the plug window")

    def _start_timeout(self, order: Session) -> None:
        if order.state != STARTING:
            return
        if "plug" in order.timers:
            self._fail(order, "gun not plugged (0x33 reason 5) before the start timeout")
            return
        missing = []
        if not order.start_acked:
            missing.append("a successful 0x33" if order.start_replies else "any 0x33 answer")
        if not order.charging_seen:
            missing.append("a 0x13 with status 0x03 (charging)")
        detail = f"no {' and no '.join(missing)} within {self.start_timeout:g} s of the start"
        self._fail(order, detail, self._anomaly("start-timeout", detail))

    def _charging(self, order: Session) -> None:
        self._cancel(order, "start")
        self._cancel(order, "plug")
        self._change(order, CHARGING)

    def _fail(self, order: Session, why: str, anomaly: Anomaly | None = None) -> None:
        for name in ("start", "plug", "stop"):
            self._cancel(order, name)
        order.failure = why
        order.ended_at = self._ms()
        self._change(order, FAILED, anomaly)
        self._release(order)

    # -- charging ---------------------------------------------------------------------
    def _realtime(self, pile_id: str, f: dict[str, Any]) -> None:
        # The hot path: every 15 s per charging gun, every 5 min per idle gun.
        status = f["status"]
        guns = self._open.get(pile_id)
        order = guns.get(f["gunId"]) if guns else None
        trade_seq = f["tradeSeq"]
        other = trade_seq != order.trade_seq and trade_seq != NO_TRADE if order is not None else True
        if order is None or (other and order.state not in OPEN_STATES):
            if status == STATUS_CHARGING and trade_seq != NO_TRADE:
                self._charging_elsewhere(pile_id, f)
            return
        if other:
            self._mismatch(order, "0x13", trade_seq)
        plugged = f["plugged"]
        if order.last_realtime != (status, plugged):
            order.last_realtime = (status, plugged)
            self._frame(order, "up", "13", status=status, plugged=plugged, tradeSeq=trade_seq)
        state = order.state
        if status == STATUS_CHARGING:
            order.energy = f["chargingDegrees"]
            order.amount = f["chargedAmount"]
            order.charging_seen = True
            progressed = self.progressed
            if progressed is not None:
                progressed.add(order)
            if state == STARTING:
                if order.start_acked:
                    self._charging(order)
            elif state == ENDED and not order.explicit_end and order.record is None:
                self._resume(order)
            else:
                self._check_stopped(order)
        if (
            plugged == 0
            and order.record is None
            and (state in (CHARGING, STOPPING) or status == STATUS_CHARGING)
        ):
            self._unplugged(order)
        if status == STATUS_CHARGING or not order.charging_seen:
            return
        if order.state in OPEN_STATES:
            self._end(order)
        if status == STATUS_IDLE:
            self._idle(order)

    def _resume(self, order: Session) -> None:
        """Charging again after a 0x13 that said otherwise: that frame did not end charging."""
        self._cancel(order, "record")
        order.ended_at = None
        self._change(order, CHARGING)

    def _unplugged(self, order: Session) -> None:
        """Rule 5: unplugged while charging; the record must follow within the record timeout."""
        if "unplug" not in order.timers and "unplugged-without-record" not in order.flagged:
            self._timer(order, "unplug", self.record_timeout, self._unplug_expired)

    def _idle(self, order: Session) -> None:
        """Rule 4: a 0x13 "idle" after charging, before a 0x19, a 0x35 success, a 0x36 or the record."""
        if order.explicit_end or order.stop_at is not None or order.record is not None:
            return
        order.idle_frames += 1
        if order.idle_frames == 2:
            detail = "two 0x13 frames with status 0x02 (idle) before the end of charging"
            self._change(order, ABNORMAL, self._anomaly("idle-while-charging", detail))

    def _charging_elsewhere(self, pile_id: str, f: dict[str, Any]) -> None:
        """A 0x13 "charging" that is not for the gun's open order."""
        order = self._orders.get(f["tradeSeq"])
        if order is None:
            order = self._create(
                pile_id,
                f["gunId"],
                f["tradeSeq"],
                "unseen",
                CHARGING,
                self._unseen("charging data (0x13) for an order whose start the proxy did not see"),
                energy=f["chargingDegrees"],
                amount=f["chargedAmount"],
            )
            order.start_acked = order.charging_seen = True
            order.last_realtime = (f["status"], f["plugged"])
            return
        if order.state == FAILED and "charged-after-failed-start" not in order.flagged:
            self._frame(order, "up", "13", status=f["status"], plugged=f["plugged"])
            detail = f"0x13 with status 0x03 (charging) after the start failed: {order.failure}"
            self._change(order, FAILED, self._anomaly("charged-after-failed-start", detail))
        self._check_stopped(order)

    def _check_stopped(self, order: Session) -> None:
        """Rule 3: a 0x13 "charging" more than the stop grace after a 0x36."""
        if order.stop_at is None or "did-not-stop" in order.flagged:
            return
        late = self.clock.seconds() - order.stop_at
        if late > self.stop_grace:
            detail = f"0x13 with status 0x03 (charging) {late:.0f} s after the 0x36 stop command"
            self._change(order, order.state, self._anomaly("did-not-stop", detail))

    def _charging_end(self, pile_id: str, f: dict[str, Any]) -> None:
        order = self._orders.get(f["tradeSeq"]) or self._current(pile_id, f["gunId"])
        if order is None:
            return
        self._frame(order, "up", "19", tradeSeq=f["tradeSeq"])
        if order.state in OPEN_STATES:
            order.explicit_end = order.charging_seen = True
            self._end(order)

    def _stop(self, pile_id: str, f: dict[str, Any]) -> None:
        order = self._current(pile_id, f["gunId"])
        if order is None:
            return
        self._frame(order, "down", "36")
        if order.state not in (STARTING, CHARGING):
            return
        order.stop_at = self.clock.seconds()
        self._cancel(order, "start")
        self._cancel(order, "plug")
        if not order.charging_seen:
            self._timer(order, "stop", self.stop_grace, self._stopped_before_charging)
        self._change(order, STOPPING)

    def _stopped_before_charging(self, order: Session) -> None:
        if order.state == STOPPING and not order.charging_seen:
            self._fail(order, "stopped (0x36) before charging began")

    def _stop_reply(self, pile_id: str, f: dict[str, Any]) -> None:
        order = self._current(pile_id, f["gunId"])
        if order is None:
            return
        self._frame(order, "up", "35", result=f["result"], reason=f["reason"])
        if order.state not in OPEN_STATES:
            return
        if not f["result"]:
            detail = f"0x35 stop failed (reason {f['reason']})"
            self._change(order, order.state, self._anomaly("did-not-stop", detail))
        elif order.charging_seen:
            order.explicit_end = True
            self._end(order)
        else:
            self._fail(order, "stopped (0x36) before charging began")

    def _end(self, order: Session) -> None:
        """The end of charging: the order waits for its record."""
        order.ended_at = self._ms()
        for name in ("start", "plug", "stop"):
            self._cancel(order, name)
        if order.record is None:
            self._timer(order, "record", self.record_timeout, self._record_missing)
        self._change(order, ENDED)

    def _unplug_expired(self, order: Session) -> None:
        if order.record is None:
            detail = f"gun unplugged while charging and no 0x3B within {self.record_timeout:g} s"
            self._change(order, order.state, self._anomaly("unplugged-without-record", detail))

    def _record_missing(self, order: Session) -> None:
        if order.record is None:
            detail = f"no 0x3B within {self.record_timeout:g} s of the end of charging"
            self._change(order, order.state, self._anomaly("record-missing", detail))

    # -- records ----------------------------------------------------------------------
    def _record(self, pile_id: str, f: dict[str, Any]) -> None:
        trade_seq = f["tradeSeq"]
        order = self._orders.get(trade_seq)
        if order is None:
            current = self._current(pile_id, f["gunId"])
            if current is not None and current.record is None and current.charging_seen:
                self._mismatch(current, "0x3B", trade_seq)
                order = current
        if order is not None and order.record is not None:
            self._frame(order, "up", "3b", again=True)
            return
        now = self._ms()
        if order is None:
            anomaly = self._unseen("a transaction record (0x3B) for an order the proxy never saw start")
            order = self._create(
                pile_id,
                f["gunId"],
                trade_seq,
                "unseen",
                ENDED,
                anomaly,
                started_at=f["startAt"] or now,
                ended_at=f["endAt"] or now,
                record=dict(f),
                energy=f["totalElectricCharge"],
                amount=f["consumptionAmount"],
            )
            order.explicit_end = True
            self._frame(order, "up", "3b")
        else:
            self._frame(order, "up", "3b")
            order.record = dict(f)
            order.energy = f["totalElectricCharge"]
            order.amount = f["consumptionAmount"]
            order.explicit_end = True
            for name in ("record", "unplug", "start", "plug", "stop"):
                self._cancel(order, name)
            if order.state in OPEN_STATES:
                if order.ended_at is None:
                    order.ended_at = now
                self._change(order, ENDED)
        mismatch = self._check_tariff(order)
        if mismatch:
            self._change(order, order.state, self._anomaly("tariff-mismatch", mismatch))
        self._maybe_retire(order)

    def _check_tariff(self, order: Session) -> str | None:
        """Rule 8 on the order's record: the problems found, or None (noted in ``tariff_check``)."""
        assert order.record is not None
        model = self._models.get(order.pile_id)
        if model is None:
            order.tariff_check = "skipped: no billing model of the pile known"
            return None
        problems = tariff_problems(model, order.record)
        code = model["billingModelCode"]
        if not problems:
            order.tariff_check = f"ok: matches billing model {code}"
            return None
        order.tariff_check = f"mismatch with billing model {code}"
        return f"billing model {code}: " + "; ".join(problems)

    def _confirm(self, pile_id: str, f: dict[str, Any]) -> None:
        order = self._orders.get(f["tradeSeq"].upper())
        if order is None or order.record is None:
            return
        self._frame(order, "down", "40", result=f["result"])
        if f["result"] != 0:
            order.confirmed = False
            return
        order.confirmed = True
        if order.state == ENDED:
            self._change(order, SETTLED)
        self._release(order)

    # -- billing models -----------------------------------------------------------------
    def _model_set(self, pile_id: str, f: dict[str, Any]) -> None:
        self._pending_models[pile_id] = dict(f)

    def _model_ack(self, pile_id: str, f: dict[str, Any]) -> None:
        model = self._pending_models.pop(pile_id, None)
        if model is not None and f["result"] == 1:
            self._set_model(pile_id, model)

    def _model_reply(self, pile_id: str, f: dict[str, Any]) -> None:
        self._set_model(pile_id, dict(f))

    def _set_model(self, pile_id: str, model: dict[str, Any]) -> None:
        self._models[pile_id] = model
        if self.on_model is not None:
            self.on_model(pile_id, model)

    # -- orders -------------------------------------------------------------------------
    def _ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def _create(
        self,
        pile_id: str,
        gun_id: str,
        trade_seq: str,
        origin: str,
        state: str,
        anomaly: Anomaly | None = None,
        **values: Any,
    ) -> Session:
        """A new order in ``state``: stored, made its gun's open order when open, and emitted."""
        now = self.clock.seconds()
        values.setdefault("started_at", int(now * 1000))
        order = Session(trade_seq, pile_id, gun_id, origin=origin, command_at=now, state=state, **values)
        self._orders[trade_seq] = order
        if state in OPEN_STATES:
            self._attach(order)
        self._change(order, state, anomaly, force=True)
        return order

    def _current(self, pile_id: str, gun_id: str) -> Session | None:
        guns = self._open.get(pile_id)
        return guns.get(gun_id) if guns else None

    def _attach(self, order: Session) -> None:
        """Make ``order`` its gun's open order (unless the gun is busy charging another)."""
        guns = self._open.setdefault(order.pile_id, {})
        old = guns.get(order.gun_id)
        if old is order:
            return
        if old is not None and old.state in (CHARGING, STOPPING) and order.state == STARTING:
            return
        guns[order.gun_id] = order
        self._retired.pop(order.trade_seq, None)
        if old is not None:
            self._maybe_retire(old)

    def _release(self, order: Session) -> None:
        guns = self._open.get(order.pile_id)
        if guns is not None and guns.get(order.gun_id) is order:
            del guns[order.gun_id]
            if not guns:
                del self._open[order.pile_id]
        self._maybe_retire(order)

    def _maybe_retire(self, order: Session) -> None:
        if order.timers or self._current(order.pile_id, order.gun_id) is order:
            return
        if order.trade_seq not in self._retired:
            self._retired[order.trade_seq] = self.clock.seconds()
            self._prune()

    def _prune(self) -> None:
        retired = self._retired
        cutoff = self.clock.seconds() - self.keep_for
        while retired:
            trade_seq, at = next(iter(retired.items()))
            if len(retired) <= self.keep and at >= cutoff:
                break
            del retired[trade_seq]
            self._orders.pop(trade_seq, None)

    def _timer(self, order: Session, name: str, delay: float, fire: Callable[[Session], None]) -> None:
        self._cancel(order, name)
        self._retired.pop(order.trade_seq, None)
        order.timers[name] = self.clock.callLater(delay, self._fired, order, name, fire)
        if self.dirty is not None:
            self.dirty.add(order)

    def _fired(self, order: Session, name: str, fire: Callable[[Session], None]) -> None:
        del order.timers[name]
        fire(order)
        self._maybe_retire(order)
        if self.dirty is not None:
            self.dirty.add(order)

    def _cancel(self, order: Session, name: str) -> None:
        call = order.timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    # -- changes ------------------------------------------------------------------------
    def _anomaly(self, kind: str, detail: str) -> Anomaly:
        return Anomaly(KINDS[kind], kind, self._ms(), detail)

    def _unseen(self, detail: str) -> Anomaly:
        return self._anomaly("unseen-start", detail)

    def _mismatch(self, order: Session, what: str, trade_seq: str) -> None:
        """Rule 6, once per wrong tradeSeq (at most eight of them per order)."""
        if trade_seq in order.wrong_seqs or len(order.wrong_seqs) >= 8:
            return
        order.wrong_seqs.add(trade_seq)
        detail = f"{what} carries tradeSeq {trade_seq}, not the gun's open order's"
        self._change(order, order.state, self._anomaly("trade-seq-mismatch", detail))

    def _change(
        self, order: Session, state: str, anomaly: Anomaly | None = None, force: bool = False
    ) -> None:
        """Set ``state`` and add ``anomaly``; one message if either is new."""
        changed = force or state != order.state
        if state != order.state:
            order.state = state
        if changed:
            self._note(order, "state", state=state)
        if anomaly is not None:
            order.anomalies.append(anomaly)
            order.flagged.add(anomaly.kind)
            self.anomaly_counts[anomaly.rule] += 1
            self._note(order, "anomaly", rule=anomaly.rule, kind=anomaly.kind, detail=anomaly.detail)
            self.log.info(
                "order {trade_seq} of pile {pile_id}: rule {rule} broken ({kind}): {detail}",
                trade_seq=order.trade_seq,
                pile_id=order.pile_id,
                rule=anomaly.rule,
                kind=anomaly.kind,
                detail=anomaly.detail,
            )
        if not (changed or anomaly):
            return
        order.changes += 1
        order.updated_at = self._ms()
        if self.on_change is not None:
            self.on_change(order)
        try:
            self.emit(order.message(), f"{order.trade_seq}-{order.changes}")
        except Exception:
            self.log.failure("emitting a change of order {trade_seq}", trade_seq=order.trade_seq)

    def _frame(self, order: Session, direction: str, ft: str, **info: Any) -> None:
        self._note(order, "frame", ft=ft, direction=direction, **info)

    def _note(self, order: Session, what: str, **info: Any) -> None:
        if self.dirty is not None:
            self.dirty.add(order)
        timeline = order.timeline
        timeline.append(Event(self._ms(), what, info))
        if len(timeline) > self.timeline_limit:
            del timeline[10]
