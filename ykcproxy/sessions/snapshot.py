"""An order as JSON and back: what the session store writes and reads.

A snapshot is the order's ``GET /sessions/<tradeSeq>`` view (``detail``)
plus the tracker's bookkeeping of the rules (``rules``), the deadlines of its
running timers and whether it was its gun's open order, so that a restarted
proxy goes on checking the rules where the last run stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ykcproxy.sessions.tracker import Anomaly, Event, Session


@attrs.frozen
class Snapshot:
    """One order as stored: its columns and the JSON document of the rest."""

    trade_seq: str
    pile_id: str
    gun_id: str
    state: str
    started_at: int  #: unix ms
    ended_at: int | None  #: unix ms
    updated_at: int  #: unix ms
    live: bool  #: not retired: loaded back into the tracker at start
    rules: str  #: the rule numbers of its anomalies, as `` 1 7 `` (for the anomaly filter)
    kinds: str  #: the kinds of its anomalies, as `` start-timeout record-missing ``
    document: dict[str, Any]


def take(order: Session, live: bool, current: bool, deadlines: Mapping[str, tuple[float, float]]) -> Snapshot:
    """The snapshot of ``order`` now (on the reactor thread: the order is not copied otherwise)."""
    document = {
        "detail": order.detail(),
        "current": current,
        "timers": {name: list(value) for name, value in deadlines.items()},
        "rules": {
            "origin": order.origin,
            "commandAt": order.command_at,
            "startReplies": order.start_replies,
            "startAcked": order.start_acked,
            "chargingSeen": order.charging_seen,
            "stopAt": order.stop_at,
            "explicitEnd": order.explicit_end,
            "idleFrames": order.idle_frames,
            "lastRealtime": list(order.last_realtime) if order.last_realtime is not None else None,
            "flagged": sorted(order.flagged),
            "wrongSeqs": sorted(order.wrong_seqs),
        },
    }
    rules = " ".join(str(a.rule) for a in order.anomalies)
    kinds = " ".join(a.kind for a in order.anomalies)
    return Snapshot(
        order.trade_seq,
        order.pile_id,
        order.gun_id,
        order.state,
        order.started_at,
        order.ended_at,
        order.updated_at,
        live,
        f" {rules} " if rules else "",
        f" {kinds} " if kinds else "",
        document,
    )


def _event(entry: Mapping[str, Any]) -> Event:
    info = {k: v for k, v in entry.items() if k not in ("at", "what")}
    return Event(entry["at"], entry["what"], info)


def restore(document: Mapping[str, Any]) -> tuple[Session, dict[str, tuple[float, float]], bool]:
    """The order of a stored document, its timer deadlines and whether it was its gun's open order."""
    d = document["detail"]
    r = document["rules"]
    last = r["lastRealtime"]
    order = Session(
        d["tradeSeq"],
        d["id"],
        d["gunId"],
        started_at=d["startedAt"],
        origin=r["origin"],
        command_at=r["commandAt"],
        state=d["state"],
        ended_at=d["endedAt"],
        energy=d["energy"],
        amount=d["amount"],
        anomalies=[Anomaly(a["rule"], a["kind"], a["at"], a["detail"]) for a in d["anomalies"]],
        timeline=[_event(e) for e in d["timeline"]],
        record=d["record"],
        confirmed=d["confirmed"],
        tariff_check=d["tariffCheck"],
        failure=d["failure"],
        changes=d["changes"],
        updated_at=d["updatedAt"],
        start_replies=r["startReplies"],
        start_acked=r["startAcked"],
        charging_seen=r["chargingSeen"],
        stop_at=r["stopAt"],
        explicit_end=r["explicitEnd"],
        idle_frames=r["idleFrames"],
        last_realtime=(last[0], last[1]) if last is not None else None,
        flagged=set(r["flagged"]),
        wrong_seqs=set(r["wrongSeqs"]),
    )
    timers = {name: (float(due), float(length)) for name, (due, length) in document["timers"].items()}
    return order, timers, bool(document["current"])
