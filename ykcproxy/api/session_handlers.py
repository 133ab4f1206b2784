"""Handlers of the charging-session routes: ``GET /sessions`` and ``GET /sessions/<tradeSeq>``."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from ykcproxy.api.validation import ApiError
from ykcproxy.sessions import QueryError, SessionNotFound, SessionTracker, get_session
from ykcproxy.sessions.query import page, parse_query
from ykcproxy.sessions.store import SessionStore


class SessionHandlers:
    """Reads the charging-session tracker for the REST API."""

    def __init__(self, tracker: SessionTracker, store: SessionStore | None = None) -> None:
        self.tracker = tracker
        self.store = store

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
    def get_session(self, request: IRequest, trade_seq: str) -> Any:
        """One order with its timeline: from memory, else from the session store."""
        try:
            return get_session(self.tracker, trade_seq)
        except QueryError as e:
            raise ApiError(400, str(e)) from None
        except SessionNotFound as e:
            if self.store is None:
                raise ApiError(404, str(e)) from None
            stored = yield self.store.get(e.trade_seq)
            if stored is None:
                raise ApiError(404, str(e)) from None
            return stored
