"""The last frames of every pile, both ways, raw bytes kept and decoded when asked.

A :class:`FrameHistory` is a frame observer of the pile side: each frame
costs one tuple in a bounded deque.  ``GET /piles/<id>/frames`` and the
console's frame view read it; frames the framer or the policy dropped are in
it too, marked with what was wrong.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Container
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ykcproxy.console.spans import field_spans
from ykcproxy.pile.observers import Direction
from ykcproxy.wire.codec import Codec
from ykcproxy.wire.framer import Framer, RawFrame

#: Every frame type (the history keeps them all).
_ALL = frozenset(range(256))

#: One entry: (unix seconds, direction, raw bytes, error or None).
Entry = tuple[float, str, bytes, str | None]


class FrameHistory:
    """Ring buffers of the last ``capacity`` frames of each pile.

    Histories of piles that went offline are kept (the console shows what a
    pile sent before it left) for at most ``offline_piles`` piles, oldest
    dropped first.  ``on_entry(pile_id, entry)`` is told of each new entry
    (the event stream uses it for the piles someone watches).
    """

    def __init__(
        self,
        clock: IReactorTime,
        capacity: int,
        codec: Codec | None = None,
        offline_piles: int = 1000,
        on_entry: Callable[[str, Entry], None] | None = None,
    ) -> None:
        self.clock = clock
        self.capacity = capacity
        self.codec = codec or Codec()
        self.offline_piles = offline_piles
        self.on_entry = on_entry
        #: When set, ``on_entry`` is told only of the piles in it (those someone watches).
        self.watched: Container[str] | None = None
        self._seconds = clock.seconds
        self._piles: dict[str, deque[Entry]] = {}
        self._offline: OrderedDict[str, None] = OrderedDict()

    @property
    def up_types(self) -> frozenset[int]:
        """Every pile→platform frame type."""
        return _ALL if self.capacity else frozenset()

    @property
    def down_types(self) -> frozenset[int]:
        """Every platform→pile frame type."""
        return _ALL if self.capacity else frozenset()

    def _ring(self, pile_id: str) -> deque[Entry]:
        ring = self._piles.get(pile_id)
        if ring is None:
            ring = self._piles[pile_id] = deque(maxlen=self.capacity)
        if pile_id in self._offline:
            del self._offline[pile_id]
        return ring

    def _add(self, pile_id: str, entry: Entry) -> None:
        self._ring(pile_id).append(entry)
        if self.on_entry is not None and (self.watched is None or pile_id in self.watched):
            self.on_entry(pile_id, entry)

    def observe(
        self, pile_id: str, direction: Direction, ft: int, fields: dict[str, Any], raw: bytes
    ) -> None:
        """A decoded frame: its bytes are kept (on the hot path: one lookup, one append)."""
        ring = self._piles.get(pile_id)
        if ring is None or pile_id in self._offline:
            ring = self._ring(pile_id)
        entry = (self._seconds(), direction, raw, None)
        ring.append(entry)
        on_entry = self.on_entry
        if on_entry is not None and (self.watched is None or pile_id in self.watched):
            on_entry(pile_id, entry)

    def bad_input(self, pile_ids: list[str], kind: str, data: bytes, detail: str) -> None:
        """Bytes dropped from a link: kept in the history of each pile on it."""
        if not self.capacity:
            return
        entry = (self.clock.seconds(), "up", bytes(data[:512]), f"{kind}: {detail}" if detail else kind)
        for pile_id in pile_ids:
            self._add(pile_id, entry)

    def pile_offline(self, pile_id: str) -> None:
        """Keep the pile's history for a while; forget the oldest offline ones."""
        if pile_id not in self._piles:
            return
        self._offline[pile_id] = None
        while len(self._offline) > self.offline_piles:
            gone, _ = self._offline.popitem(last=False)
            self._piles.pop(gone, None)

    def __contains__(self, pile_id: str) -> bool:
        return pile_id in self._piles

    def frames(self, pile_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The pile's frames, oldest first, decoded (the last ``limit``)."""
        ring = self._piles.get(pile_id, ())
        entries = list(ring)
        if limit is not None:
            entries = entries[-limit:]
        return [self.describe(entry) for entry in entries]

    def describe(self, entry: Entry) -> dict[str, Any]:
        """The JSON of one entry: time, direction, type, seq, fields, hex, error, field spans."""
        at, direction, raw, error = entry
        out: dict[str, Any] = {
            "at": int(at * 1000),
            "dir": direction,
            "code": None,
            "name": None,
            "seq": None,
            "fields": None,
            "raw": raw.hex(),
            "error": error,
            "spans": [],
        }
        frame = _parse(raw) if error is None else None
        if frame is None:
            if len(raw) >= 6 and raw[0] == 0x68:
                out["code"] = f"{raw[5]:02x}"
                out["seq"] = raw[2] | raw[3] << 8
            return out
        out["code"] = f"{frame.code:02x}"
        out["seq"] = frame.seq
        catalogue = self.codec.catalogue
        if frame.code not in catalogue:
            out["error"] = f"unknown type 0x{frame.code:02x}"
            return out
        out["name"] = catalogue[frame.code].name
        try:
            out["fields"] = self.codec.decode_body(frame.code, frame.body)
        except Exception as e:  # noqa: BLE001 - shown, not raised: the console explains bad frames
            out["error"] = f"decode: {e}"
            return out
        out["spans"] = [s.to_json() for s in field_spans(frame.code, len(raw))]
        return out


def _parse(raw: bytes) -> RawFrame | None:
    for item in Framer().feed(raw):
        if isinstance(item, RawFrame):
            return item
    return None
