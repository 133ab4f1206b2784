"""The queries of ``GET /sessions`` and ``GET /sessions/<tradeSeq>``: pure filtering, JSON-able answers.

The arguments come as a mapping of query arguments, either ``str → str`` or as
Klein/Twisted gives them (``bytes → [bytes, ...]``; the last value counts).
An empty value is the same as none (``?pile=&gun=01``).  Unknown arguments are
ignored.  A bad value raises :class:`QueryError` (HTTP 400), an unknown order
:class:`SessionNotFound` (HTTP 404).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ykcproxy.sessions.tracker import KINDS, STATES, Session, SessionTracker

#: Orders per page when ``limit`` is not given, and the most one page may hold.
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000

_PILE = re.compile(r"[0-9A-F]{14}")
_GUN = re.compile(r"[0-9A-F]{1,2}")
_TRADE_SEQ = re.compile(r"[0-9A-F]{32}")
_CURSOR = re.compile(r"(\d{1,15})-([0-9A-F]{32})")


class QueryError(ValueError):
    """A query argument with a bad value; ``argument`` names it."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument


class SessionNotFound(LookupError):
    """No order with that tradeSeq is kept."""

    def __init__(self, trade_seq: str) -> None:
        super().__init__(f"no session {trade_seq}")
        self.trade_seq = trade_seq


@attrs.frozen
class SessionQuery:
    """The filters of ``GET /sessions``, checked (see :func:`parse_query`)."""

    pile: str | None = None
    gun: str | None = None
    state: str | None = None
    since: int | None = None  #: unix ms: orders started at or after it
    anomaly: int | str | None = None  #: a rule number, a kind, or ``"any"``
    limit: int = DEFAULT_LIMIT
    before: tuple[int, str] | None = None  #: the paging cursor: (startedAt, tradeSeq)

    def matches(self, order: Session) -> bool:
        """Whether ``order`` passes every filter (all but ``limit``)."""
        if self.pile is not None and order.pile_id != self.pile:
            return False
        if self.gun is not None and order.gun_id != self.gun:
            return False
        if self.state is not None and order.state != self.state:
            return False
        if self.since is not None and order.started_at < self.since:
            return False
        if self.before is not None and (order.started_at, order.trade_seq) >= self.before:
            return False
        anomaly = self.anomaly
        if anomaly is None:
            return True
        if anomaly == "any":
            return bool(order.anomalies)
        if isinstance(anomaly, int):
            return any(a.rule == anomaly for a in order.anomalies)
        return any(a.kind == anomaly for a in order.anomalies)


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        value = value[-1] if value else ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


def _args(args: Mapping[Any, Any]) -> dict[str, str]:
    out = {}
    for key, value in args.items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        text = _text(value)
        if text:
            out[name] = text
    return out


def _integer(name: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise QueryError(name, f"must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


def parse_query(args: Mapping[Any, Any]) -> SessionQuery:
    """Check the arguments of ``GET /sessions`` (pile, gun, state, since, anomaly, limit, before)."""
    a = _args(args)
    values: dict[str, Any] = {}
    if "pile" in a:
        pile = a["pile"].upper()
        if not _PILE.fullmatch(pile):
            raise QueryError("pile", f"must be a pile id of 14 digits, not {a['pile']!r}")
        values["pile"] = pile
    if "gun" in a:
        gun = a["gun"].upper()
        if not _GUN.fullmatch(gun):
            raise QueryError("gun", f"must be a gun number of 1 or 2 digits, not {a['gun']!r}")
        values["gun"] = gun.zfill(2)
    if "state" in a:
        if a["state"] not in STATES:
            raise QueryError("state", f"must be one of {', '.join(STATES)}, not {a['state']!r}")
        values["state"] = a["state"]
    if "since" in a:
        values["since"] = _integer("since", a["since"], 0, 10**15)
    if "anomaly" in a:
        anomaly = a["anomaly"]
        if anomaly.isdigit():
            values["anomaly"] = _integer("anomaly", anomaly, 1, 8)
        elif anomaly == "any" or anomaly in KINDS:
            values["anomaly"] = anomaly
        else:
            raise QueryError(
                "anomaly", f"must be a rule number 1-8, 'any' or one of {', '.join(KINDS)}, not {anomaly!r}"
            )
    if "limit" in a:
        values["limit"] = _integer("limit", a["limit"], 1, MAX_LIMIT)
    if "before" in a:
        cursor = _CURSOR.fullmatch(a["before"].upper())
        if cursor is None:
            raise QueryError("before", f"must be the 'next' of a previous page, not {a['before']!r}")
        values["before"] = (int(cursor[1]), cursor[2])
    return SessionQuery(**values)


def list_sessions(
    tracker: SessionTracker, args: Mapping[Any, Any], stored: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """``GET /sessions``: the matching orders, newest (by ``startedAt``) first, one page.

    ``stored`` are the matching orders read from the session store (see
    :meth:`~ykcproxy.sessions.store.SessionStore.query`); an order the tracker
    still holds is shown as the tracker has it.
    Returns ``{"sessions": [<session message body>, ...], "next": <cursor or null>}``;
    pass ``next`` as ``before`` to get the following page.
    """
    return page(parse_query(args), tracker, stored)


def page(
    query: SessionQuery, tracker: SessionTracker, stored: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """One page of :func:`list_sessions` for a checked ``query``."""
    candidates = [order.message() for order in tracker.sessions() if query.matches(order)]
    candidates += [dict(view) for view in stored if tracker.get(view["tradeSeq"]) is None]
    return _one_page(query, candidates)


def merge_pages(query: SessionQuery, pages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One page of ``query`` from the pages several instances gave for it (cluster mode).

    An order in more than one page counts once, as the first page has it. There is a
    next page when the merged orders are more than ``limit`` or any page had a next one.
    """
    seen: set[str] = set()
    candidates = []
    for one in pages:
        for view in one.get("sessions", ()):
            if view["tradeSeq"] not in seen:
                seen.add(view["tradeSeq"])
                candidates.append(view)
    return _one_page(query, candidates, any(one.get("next") for one in pages))


def _one_page(query: SessionQuery, candidates: list[Any], more: bool = False) -> dict[str, Any]:
    found = heapq.nlargest(
        query.limit + 1, candidates, key=lambda view: (view["startedAt"], view["tradeSeq"])
    )
    shown = found[: query.limit]
    more = more or len(found) > query.limit
    last = shown[-1] if shown else None
    return {
        "sessions": shown,
        "next": f"{last['startedAt']}-{last['tradeSeq']}" if more and last is not None else None,
    }


def get_session(tracker: SessionTracker, trade_seq: str) -> dict[str, Any]:
    """``GET /sessions/<tradeSeq>``: one order with its record, checks and timeline."""
    key = trade_seq.strip().upper()
    if not _TRADE_SEQ.fullmatch(key):
        raise QueryError("tradeSeq", f"must be 32 digits, not {trade_seq!r}")
    order = tracker.get(key)
    if order is None:
        raise SessionNotFound(key)
    return order.detail()
