"""The lifecycle of pile sessions: pending, accepted, replaced, silent, shutdown.

The :class:`Registry` is the one place that moves a session from one state
to the next and says when a pile goes online or offline:

- *pending*: a login (0x01) arrived and waits for its answer (the business
  system's 0x02, or the auto answer);
- *accepted*: the login was accepted; the session is the pile's registered
  one (``online``);
- *replaced*: the pile logged in again elsewhere; the old session goes
  offline with reason ``replaced`` (and its link closes if nothing else uses it);
- *moved*: the pile logged in on another instance of the cluster; the old
  session ends with reason ``moved`` (no ``offline`` is forwarded: the new
  instance forwards the ``online``) and its link closes if nothing else uses it;
- *silent*: a pile of a shared link stopped talking (``timeout``);
- *closed*: its connection closed (``closed``, ``timeout``, ``error``,
  ``abuse``, ``slow-reader``, ``login-timeout``...) or the proxy shuts down
  (``shutdown``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from ykcproxy.pile.session import PileSession

if TYPE_CHECKING:
    from ykcproxy.pile.protocol import PileProtocol


#: The close reason of a pile that logged in on another instance (no ``offline`` is forwarded).
MOVED = "moved"


def _ignore(*_: Any) -> None:
    pass


class Registry:
    """Which connection serves which pile, and every change of that.

    Only an accepted login enters the registry, so a stranger sending someone
    else's id cannot knock the real pile off; its login stays pending until
    the business system (or the auto answer) accepts it.

    ``on_online(session)`` is called when a session is accepted,
    ``on_offline(session, reason)`` when an accepted session ends.
    """

    log = Logger()

    def __init__(
        self,
        on_online: Callable[[PileSession], None] = _ignore,
        on_offline: Callable[[PileSession, str], None] = _ignore,
    ) -> None:
        self._sessions: dict[str, PileSession] = {}
        self._pending: dict[str, PileSession] = {}
        self.on_online = on_online
        self.on_offline = on_offline
        #: Open pile connections (logged in or not).
        self.connections: set[PileProtocol] = set()
        #: Remote host → number of open connections from it.
        self.per_host: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[PileSession]:
        return iter(list(self._sessions.values()))

    # -- look-ups --------------------------------------------------------------------
    def get(self, pile_id: str) -> PileSession | None:
        """The accepted session of ``pile_id``."""
        return self._sessions.get(pile_id)

    def find(self, pile_id: str) -> PileSession | None:
        """The newest pending login of ``pile_id``, else its accepted session."""
        return self._pending.get(pile_id) or self._sessions.get(pile_id)

    def is_pending(self, session: PileSession) -> bool:
        """Whether ``session`` is the newest login of its pile waiting for an answer."""
        return self._pending.get(session.pile_id) is session

    def pending_logins(self) -> list[dict[str, Any]]:
        """Logins that wait for an answer, oldest first (``GET /piles?state=pending``).

        Each is ``{"id": pile id, "remote": "ip:port", "since": unix ms of the login}``.
        """
        waiting = sorted(self._pending.values(), key=lambda s: s.login_at)
        return [
            {"id": s.pile_id, "remote": s.connection.remote, "since": int(s.login_at * 1000)} for s in waiting
        ]

    @property
    def pending_count(self) -> int:
        """How many logins wait for an answer."""
        return len(self._pending)

    # -- connections -----------------------------------------------------------------
    def connection_made(self, proto: PileProtocol) -> None:
        """Note an open connection (nothing is known of its piles until they log in)."""
        self.connections.add(proto)
        self.per_host[proto.host] += 1

    def connection_lost(self, proto: PileProtocol, reason: str) -> None:
        """A connection closed: its piles go offline with ``reason``."""
        if proto in self.connections:
            self.connections.discard(proto)
            left = self.per_host[proto.host] - 1
            if left > 0:
                self.per_host[proto.host] = left
            else:
                del self.per_host[proto.host]
        for session in list(proto.sessions.values()):
            self.drop(session, reason)

    def close_all(self, reason: str = "shutdown") -> None:
        """Take every pile offline with ``reason`` and close every connection."""
        for proto in list(self.connections):
            for session in list(proto.sessions.values()):
                self.drop(session, reason)
            proto.close(reason)

    # -- sessions --------------------------------------------------------------------
    def login(self, proto: PileProtocol, pile_id: str, now: float) -> PileSession:
        """The session a login of ``pile_id`` on ``proto`` belongs to (made on first login)."""
        session = proto.sessions.get(pile_id)
        if session is None:
            session = PileSession(pile_id, proto, connected_at=now, last_seen=now)
            proto.sessions[pile_id] = session
        session.last_seen = session.login_at = now
        return session

    def add_pending(self, session: PileSession) -> None:
        """Note a login that waits for an answer (the newest one wins)."""
        self._pending[session.pile_id] = session

    def accept(self, session: PileSession) -> bool:
        """Register ``session`` (online); the pile's older session is replaced.

        Returns False if ``session`` already was the accepted one.
        """
        pile_id = session.pile_id
        if self._pending.get(pile_id) is session:
            del self._pending[pile_id]
        old = self._sessions.get(pile_id)
        if old is session and session.logged_in:
            return False
        self._sessions[pile_id] = session
        if not session.logged_in:
            session.logged_in = True
            session.connection.login_accepted()
        if old is not None and old is not session:
            self.log.info(
                "pile {pile_id} logged in again from {remote}; replacing {old}",
                old=old.connection.remote,
                **session.log_fields(),
            )
            self.drop(old, "replaced", was_registered=True)
        self.on_online(session)
        return True

    def refuse(self, session: PileSession) -> None:
        """A refused login: the session ends, and its link closes if nothing else uses it."""
        self.drop(session, "closed")
        if not session.connection.sessions:
            session.connection.close("closed")

    def drop(self, session: PileSession, reason: str, was_registered: bool = False) -> None:
        """End ``session``; if it was the accepted one, the pile goes offline with ``reason``."""
        proto = session.connection
        if proto.sessions.get(session.pile_id) is session:
            del proto.sessions[session.pile_id]
        if session.time_sync is not None and session.time_sync.active():
            session.time_sync.cancel()
        session.time_sync = None
        if self._discard(session) or was_registered:
            if session.logged_in:
                session.logged_in = False
                proto.accepted -= 1
            self.on_offline(session, reason)
        if reason == "replaced" and not proto.sessions:
            proto.close("replaced")

    def move_away(self, pile_id: str) -> bool:
        """The pile logged in on another instance: end its session here (reason ``moved``).

        Returns False when this instance holds no accepted session of ``pile_id``.
        """
        session = self._sessions.get(pile_id)
        if session is None:
            return False
        self.log.info(
            "pile {pile_id} logged in on another instance; closing its link from {remote}",
            pile_id=pile_id,
            remote=session.connection.remote,
        )
        self.drop(session, MOVED)
        if not session.connection.sessions:
            session.connection.close(MOVED)
        return True

    def _discard(self, session: PileSession) -> bool:
        """Forget ``session``; True if it was the registered one."""
        if self._pending.get(session.pile_id) is session:
            del self._pending[session.pile_id]
        if self._sessions.get(session.pile_id) is session:
            del self._sessions[session.pile_id]
            return True
        return False

    def expire_silent(
        self, sessions: Iterable[PileSession], now: float, floor: float, timeout: float
    ) -> float:
        """Take offline the ``sessions`` not heard for ``timeout`` seconds (reason ``timeout``).

        A pile counts as heard at ``floor`` at the latest (when reading resumed
        after a pause).  Returns the seconds until the next of them could time out.
        """
        next_check = timeout
        for session in list(sessions):
            idle = now - max(session.last_seen, floor)
            if idle < timeout:
                next_check = min(next_check, timeout - idle)
                continue
            self.log.info(
                "pile {pile_id} silent for {idle:.0f}s on {remote}, which other piles still use; "
                "taking it offline",
                idle=idle,
                **session.log_fields(),
            )
            self.drop(session, "timeout")
        return next_check
