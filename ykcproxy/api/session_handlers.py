"""Handlers of the charging-session routes: ``GET /sessions`` and ``GET /sessions/<tradeSeq>``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.web.iweb import IRequest

from ykcproxy.api.validation import ApiError
from ykcproxy.sessions import QueryError, SessionNotFound, SessionTracker, get_session
from ykcproxy.sessions.query import SessionQuery, merge_pages, page, parse_query
from ykcproxy.sessions.store import SessionStore


class SessionHandlers:
    """Reads the charging-session tracker for the REST API.

    :param elsewhere: in cluster mode, asks the other instances for an order this one does
        not know (fires with the order, or None when no instance has it).
    :param elsewhere_list: in cluster mode, asks the other instances for their page of a
        ``GET /sessions`` query (its arguments): fires with their pages and the names of the
        instances that did not answer.
    """

    def __init__(
        self,
        tracker: SessionTracker,
        store: SessionStore | None = None,
        elsewhere: Callable[[str], Deferred[dict[str, Any] | None]] | None = None,
        elsewhere_list: Callable[[dict[str, str]], Deferred[tuple[list[Any], list[str]]]] | None = None,
    ) -> None:
        self.tracker = tracker
        self.store = store
        self.elsewhere = elsewhere
        self.elsewhere_list = elsewhere_list

    @inlineCallbacks
    def list_sessions(self, request: IRequest) -> Any:
        """Orders matching the query, newest first: in memory, in the session store, and in
        cluster mode those of the other instances (``unanswered`` names any that did not answer)."""
        args = request.args  # type: ignore[attr-defined]
        try:
            query = parse_query(args)
        except QueryError as e:
            raise ApiError(400, str(e)) from None
        here = yield self.local_page(query)
        if self.elsewhere_list is None:
            return here
        texts = {k.decode("utf-8", "replace"): v[-1].decode("utf-8", "replace") for k, v in args.items() if v}
        pages, unanswered = yield self.elsewhere_list(texts)
        merged = merge_pages(query, [here, *pages])
        if unanswered:
            merged["unanswered"] = sorted(unanswered)
        return merged

    @inlineCallbacks
    def local_page(self, query: SessionQuery) -> Any:
        """This instance's page of ``query``: in memory and in the session store."""
        stored = [] if self.store is None else (yield self.store.query(query))
        return page(query, self.tracker, stored)

    def local_list(self, args: dict[str, str]) -> Deferred[Any]:
        """This instance's page of a ``GET /sessions`` query given by its arguments.

        Raises :class:`QueryError` for a bad argument.
        """
        return self.local_page(parse_query(args))  # type: ignore[no-any-return]

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
