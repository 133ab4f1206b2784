"""Handlers of the charging-session routes: ``GET /sessions`` and ``GET /sessions/<tradeSeq>``."""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest

from ykcproxy.api.validation import ApiError
from ykcproxy.sessions import QueryError, SessionNotFound, SessionTracker, get_session, list_sessions


class SessionHandlers:
    """Reads the charging-session tracker for the REST API."""

    def __init__(self, tracker: SessionTracker) -> None:
        self.tracker = tracker

    def list_sessions(self, request: IRequest) -> Any:
        """Orders matching the query, newest first."""
        try:
            return list_sessions(self.tracker, request.args)  # type: ignore[attr-defined]
        except QueryError as e:
            raise ApiError(400, str(e)) from None

    def get_session(self, request: IRequest, trade_seq: str) -> Any:
        """One order with its timeline."""
        try:
            return get_session(self.tracker, trade_seq)
        except QueryError as e:
            raise ApiError(400, str(e)) from None
        except SessionNotFound as e:
            raise ApiError(404, str(e)) from None
