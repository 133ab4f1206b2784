"""Handlers of the charging-session routes: ``GET /sessions`` and ``GET /sessions/<tradeSeq>``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.web.iweb import IRequest

from ykcproxy.api.validation import ApiError
from ykcproxy.sessions import QueryError, SessionNotFound, SessionTracker, get_session
from ykcproxy.sessions.query import page, parse_query
from ykcproxy.sessions.store import SessionStore


class SessionHandlers:
    """Reads the charging-session tracker for the REST API.

    :param elsewhere: in cluster mode, asks the other instances for an order this one does
        not know (fires with the order, or None when no instance has it).
    """

    def __init__(
        self,
        tracker: SessionTracker,
        store: SessionStore | None = None,
        elsewhere: Callable[[str], Deferred[dict[str, Any] | None]] | None = None,
    ) -> None:
        self.tracker = tracker
        self.store = store
        self.elsewhere = elsewhere

    @inlineCallbacks
    def list_sessions(self, request: IRequest) -> Any:
        """Orders matching the query, newest first: in memory and in the session store."""
        try:
            query = parse_query(request.args)  # type: ignore[attr-defined]
        except QueryError as e:
            raise ApiError(400, str(e)) from None
        stored = [] if self.store is None else (yield self.store.query(query))
        return page(query, self.tracker, stored)

    @inlineCallbacks
    def local_session(self, trade_seq: str) -> Any:
        """One order this instance saw, from memory, else from the session store; None if unknown.

        Raises :class:`QueryError` for a malformed ``trade_seq``.
        """
        try:
            return get_session(self.tracker, trade_seq)
        except SessionNotFound as e:
            if self.store is None:
                return None
            stored = yield self.store.get(e.trade_seq)
            return stored

    @inlineCallbacks
    def get_session(self, request: IRequest, trade_seq: str) -> Any:
        """One order with its timeline: from memory, the session store, else the other instances."""
        try:
            found = yield self.local_session(trade_seq)
        except QueryError as e:
            raise ApiError(400, str(e)) from None
        if found is None and self.elsewhere is not None:
            found = yield self.elsewhere(trade_seq.strip().upper())
        if found is None:
            raise ApiError(404, str(SessionNotFound(trade_seq.strip().upper())))
        return found
