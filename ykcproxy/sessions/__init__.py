"""Charging sessions (orders), tracked from the frames by the rules of spec §13.3.

:class:`~ykcproxy.sessions.tracker.SessionTracker` follows every order from its
start command to its confirmed transaction record and reports each state change
and each broken rule; :mod:`ykcproxy.sessions.query` filters the orders for the
REST routes.  See ``doc/sessions.md``.
"""

from ykcproxy.sessions.query import QueryError, SessionNotFound, get_session, list_sessions
from ykcproxy.sessions.tracker import KINDS, STATES, Anomaly, Session, SessionTracker

__all__ = [
    "KINDS",
    "STATES",
    "Anomaly",
    "QueryError",
    "Session",
    "SessionNotFound",
    "SessionTracker",
    "get_session",
    "list_sessions",
]
