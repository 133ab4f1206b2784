"""Per-pile state: identity, login, sequence numbers, latest requests, guns."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

import attrs

from ykcproxy.pile.observers import FrameEntry

if TYPE_CHECKING:
    from ykcproxy.pile.protocol import PileProtocol
    from ykcproxy.wire.codec import FixedFrame

#: How many 0x3B trade numbers (and their seq) a session remembers for 0x40.
TRADE_MEMORY = 64


@attrs.define(eq=False)
class PileSession:
    """One pile on one connection.

    A session is created by a login (0x01) and is *pending* until the login is
    accepted; only accepted sessions are in the registry.  Outgoing commands
    take ``next_seq()``; replies reuse the seq of the latest matching request.
    """

    pile_id: str
    connection: PileProtocol
    connected_at: float
    last_seen: float
    logged_in: bool = False
    #: When its latest login (0x01) arrived (clock seconds).
    login_at: float = 0.0
    login: dict[str, Any] = attrs.field(factory=dict)
    #: Frame type code → seq of the latest request of that type from the pile.
    last_request_seq: dict[int, int] = attrs.field(factory=dict)
    #: tradeSeq → seq of the latest 0x3B carrying it (bounded, oldest dropped).
    trade_seqs: OrderedDict[str, int] = attrs.field(factory=OrderedDict)
    #: gun → latest status fields from 0x03 / 0x13.
    guns: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    #: The pending daily 0x56 (with ``--autoTimeSync``).
    time_sync: Any = None
    #: gun → the fields and the frame of its 0x04 answer (they depend only on the pile and gun).
    heartbeat_replies: dict[str, tuple[dict[str, Any], FixedFrame]] = attrs.field(factory=dict)
    #: The ring the pile's frames are appended to for the console (None: no frame history).
    frames: deque[FrameEntry] | None = None
    _seq: int = 0

    def next_seq(self) -> int:
        """The next seq of a platform command to this pile (wraps at 16 bits)."""
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFF
        return seq

    def remember_trade(self, trade_seq: str, seq: int) -> None:
        """Note the seq of a transaction record, for its 0x40 confirmation."""
        memory = self.trade_seqs
        memory[trade_seq] = seq
        memory.move_to_end(trade_seq)
        while len(memory) > TRADE_MEMORY:
            memory.popitem(last=False)

    def reply_seq(self, request_code: int, trade_seq: str | None = None) -> int | None:
        """The seq a reply to ``request_code`` should carry, if there is a request."""
        if trade_seq is not None:
            return self.trade_seqs.get(trade_seq)
        return self.last_request_seq.get(request_code)

    def log_fields(self) -> dict[str, Any]:
        """The fields of every log line about this pile: ``pile_id``, ``remote``, ``seq`` (latest read)."""
        return {"pile_id": self.pile_id, "remote": self.connection.remote, "seq": self.connection.last_seq}

    def describe(self) -> dict[str, Any]:
        """JSON view for ``GET /piles``."""
        return {
            "id": self.pile_id,
            "remote": self.connection.remote,
            "connectedAt": int(self.connected_at * 1000),
            "lastSeen": int(self.last_seen * 1000),
            "loggedIn": self.logged_in,
            "guns": self.login.get("guns"),
            "login": self.login,
            "gunState": self.guns,
        }
