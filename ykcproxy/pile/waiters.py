"""Reply correlation: REST calls waiting for a pile's answer to a command."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred


class PileGone(Exception):
    """The pile disconnected while a reply was awaited."""


@attrs.define(eq=False)
class _Waiter:
    code: int
    match: dict[str, Any]
    deferred: Deferred[dict[str, Any]]


class ReplyWaiters:
    """Deferreds waiting for a reply frame, keyed by pile.

    A reply matches a waiter when it has the waited type and every ``match``
    value (tradeSeq, gunId ...) is equal; the oldest matching waiter gets it.
    """

    def __init__(self) -> None:
        #: pile id → its waiters; empty when nothing waits (callers may test it per frame).
        self.by_pile: dict[str, list[_Waiter]] = {}

    def wait(self, pile_id: str, code: int, match: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        """A Deferred that fires with the decoded reply (cancel it to stop waiting)."""
        waiters = self.by_pile.setdefault(pile_id, [])

        def cancelled(d: Deferred[dict[str, Any]]) -> None:
            waiters[:] = [w for w in waiters if w.deferred is not d]
            if not waiters:
                self.by_pile.pop(pile_id, None)

        waiter = _Waiter(code, dict(match), Deferred(cancelled))
        waiters.append(waiter)
        return waiter.deferred

    def deliver(self, pile_id: str, code: int, message: Mapping[str, Any]) -> bool:
        """Give a reply frame to the first waiter it matches; True if one took it."""
        waiters = self.by_pile.get(pile_id)
        if not waiters:
            return False
        for waiter in waiters:
            if waiter.code == code and all(message.get(k) == v for k, v in waiter.match.items()):
                waiters.remove(waiter)
                if not waiters:
                    del self.by_pile[pile_id]
                waiter.deferred.callback(dict(message))
                return True
        return False

    def fail_pile(self, pile_id: str, reason: str) -> None:
        """Fail every waiter of a pile that went away."""
        for waiter in self.by_pile.pop(pile_id, []):
            waiter.deferred.errback(PileGone(reason))
