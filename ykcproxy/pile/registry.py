"""Pile id → session, for accepted logins; pending logins kept apart."""

from __future__ import annotations

from collections.abc import Iterator

from ykcproxy.pile.session import PileSession


class Registry:
    """Which connection serves which pile.

    Only an accepted login enters the registry, so a stranger sending someone
    else's id cannot knock the real pile off; its login stays pending until
    the business system (or the auto answer) accepts it.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, PileSession] = {}
        self._pending: dict[str, PileSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[PileSession]:
        return iter(list(self._sessions.values()))

    def get(self, pile_id: str) -> PileSession | None:
        """The accepted session of ``pile_id``."""
        return self._sessions.get(pile_id)

    def find(self, pile_id: str) -> PileSession | None:
        """The newest pending login of ``pile_id``, else its accepted session."""
        return self._pending.get(pile_id) or self._sessions.get(pile_id)

    def is_pending(self, session: PileSession) -> bool:
        """Whether ``session`` is the newest login of its pile waiting for an answer."""
        return self._pending.get(session.pile_id) is session

    def add_pending(self, session: PileSession) -> None:
        """Note a login that waits for an answer (the newest one wins)."""
        self._pending[session.pile_id] = session

    def accept(self, session: PileSession) -> PileSession | None:
        """Register ``session``; return the session it replaces, if any."""
        if self._pending.get(session.pile_id) is session:
            del self._pending[session.pile_id]
        old = self._sessions.get(session.pile_id)
        self._sessions[session.pile_id] = session
        session.logged_in = True
        return old if old is not session else None

    def discard(self, session: PileSession) -> bool:
        """Forget ``session``; True if it was the registered one."""
        if self._pending.get(session.pile_id) is session:
            del self._pending[session.pile_id]
        if self._sessions.get(session.pile_id) is session:
            del self._sessions[session.pile_id]
            return True
        return False
