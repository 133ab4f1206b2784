"""The envelope of every message for consumers: header, message id, lifecycle events.

This module is the one place that decides what a consumer sees around the
fields of a frame (``doc``: INTERFACE.md section 2):

- ``header``: ``length``, ``seq``, ``encrypted``, ``frameId``, ``messageId``,
  ``receivedAt`` (unix ms) and ``raw`` (the whole frame in hex);
- ``messageId``: unique across this process and its restarts
  (``<boot id>-<counter>``), except for a 0x3B, whose id is derived from the
  pile and its tradeSeq (``<pile>-3b-<tradeSeq>``) so that a record the pile
  sends again carries the same id;
- the ``online`` / ``offline`` events of a pile.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ykcproxy.forward.base import Message
from ykcproxy.jsonenc import dumps
from ykcproxy.wire.framer import RawFrame

_FT = [f"{code:02x}" for code in range(256)]


def record_message_id(pile_id: str, trade_seq: str) -> str:
    """The stable message id of a pile's 0x3B transaction record."""
    return f"{pile_id}-3b-{trade_seq}"


class Envelope:
    """Builds :class:`Message` values for consumers from frames and pile events.

    ``clock`` gives ``receivedAt``; ``boot_id`` (random by default) makes the
    message ids of one run distinct from those of any other.
    """

    def __init__(self, clock: IReactorTime, boot_id: str | None = None) -> None:
        self.clock = clock
        self.boot_id = boot_id if boot_id is not None else os.urandom(6).hex()
        self._counter = 0

    def next_message_id(self) -> str:
        """A message id unique across this process and its restarts."""
        self._counter += 1
        return f"{self.boot_id}-{self._counter:x}"

    def frame(
        self,
        frame: RawFrame,
        pile_id: str,
        fields: Mapping[str, Any],
        message_id: str | None = None,
        trade_seq: str | None = None,
    ) -> Message:
        """The message of one received frame: its header, then its decoded ``fields``."""
        ft = _FT[frame.code]
        mid = message_id or self.next_message_id()
        header = {
            "length": frame.raw[1],
            "seq": frame.seq,
            "encrypted": frame.encrypted,
            "frameId": ft,
            "messageId": mid,
            "receivedAt": int(self.clock.seconds() * 1000),
            "raw": frame.raw.hex(),
        }
        payload = dumps({"header": header, **fields})
        return Message(ft, pile_id, mid, payload, trade_seq)

    def record(self, frame: RawFrame, pile_id: str, fields: Mapping[str, Any]) -> Message:
        """The message of a decoded 0x3B: its id and ``trade_seq`` come from its tradeSeq."""
        trade_seq = fields["tradeSeq"]
        return self.frame(frame, pile_id, fields, record_message_id(pile_id, trade_seq), trade_seq)

    def event(self, kind: str, pile_id: str, extra: Mapping[str, Any]) -> Message:
        """A lifecycle event (``online``, ``offline``) of ``pile_id``."""
        mid = self.next_message_id()
        header = {"frameId": kind, "messageId": mid, "receivedAt": int(self.clock.seconds() * 1000)}
        payload = dumps({"header": header, "id": pile_id, **extra})
        return Message(kind, pile_id, mid, payload)

    def session(self, body: Mapping[str, Any], key: str) -> Message:
        """A ``session`` message of a charging order; ``key`` is its ``<tradeSeq>-<change>``.

        The boot id goes into the message id, so that the change counter, which
        starts again after a restart, never repeats an id a consumer has seen.
        """
        mid = f"{key}-{self.boot_id}"
        header = {"frameId": "session", "messageId": mid, "receivedAt": int(self.clock.seconds() * 1000)}
        payload = dumps({"header": header, **body})
        return Message("session", str(body["id"]), mid, payload)
