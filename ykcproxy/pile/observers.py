"""What follows the decoded frames of every pile (the session tracker, the frame history)."""

from __future__ import annotations

from collections import deque
from typing import Any, Literal, Protocol, TypeAlias

#: ``up``: received from the pile; ``down``: written to it.
Direction = Literal["up", "down"]

#: One frame kept for the console: (unix seconds, raw bytes), or (unix seconds, raw bytes,
#: what was wrong) for input the pile side dropped.  The direction follows from the frame
#: type (dropped input always comes from the pile).
FrameEntry: TypeAlias = "tuple[float, bytes] | tuple[float, bytes, str]"


class FrameObserver(Protocol):
    """Sees the decoded frames of the types it names, both ways, and piles going offline.

    Observers run on the pile side's hot path: ``observe`` must be quick, must
    not change ``fields`` nor keep them beyond the call unless it copies them
    (every observer of a frame is given the same dict), and must not raise.
    """

    @property
    def up_types(self) -> frozenset[int]:
        """The pile→platform frame types it reads."""

    @property
    def down_types(self) -> frozenset[int]:
        """The platform→pile frame types it reads."""

    def observe(
        self, pile_id: str, direction: Direction, ft: int, fields: dict[str, Any], raw: bytes
    ) -> None:
        """One decoded frame and its bytes."""

    def bad_input(self, pile_ids: list[str], kind: str, data: bytes, detail: str) -> None:
        """Bytes dropped from a link the piles ``pile_ids`` are on (bad CRC, length, type...)."""

    def pile_offline(self, pile_id: str) -> None:
        """The pile went offline."""


class FrameRecorder(Protocol):
    """Keeps the raw frames of piles in rings that the pile side appends to directly.

    A session gets its pile's ring at login (``ring_of``) and appends each
    frame it reads or writes as a :data:`FrameEntry`: one tuple and one append
    on the hot path, no call.  ``pile_online`` tells the recorder the login
    was accepted and gives the ring to keep appending to.
    """

    def ring_of(self, pile_id: str) -> deque[FrameEntry]:
        """The ring a new session of ``pile_id`` appends to."""

    def pile_online(self, pile_id: str, ring: deque[FrameEntry] | None) -> deque[FrameEntry]:
        """The pile's login was accepted; the ring its session appends to from now on."""
