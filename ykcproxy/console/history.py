"""The last frames of every pile, both ways, raw bytes kept and decoded when asked.

A :class:`FrameHistory` keeps one bounded ring of entries per pile.  The pile
side appends each frame of a logged-in pile to the ring its session holds
(one tuple, one append: no call into the history on the hot path); frames the
framer or the policy dropped come through the observer interface and are in it
too, marked with what was wrong.  ``GET /piles/<id>/frames`` and the console's
frame view read the rings; the ring of a pile someone watches also streams
each entry to the console.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, TypeAlias

from twisted.internet.interfaces import IReactorTime

from ykcproxy.console.spans import field_spans
from ykcproxy.pile.observers import Direction, FrameEntry
from ykcproxy.wire.codec import Codec
from ykcproxy.wire.framer import Framer, RawFrame
from ykcproxy.wire.frames import Direction as FrameDirection

#: One entry: (unix seconds, raw bytes), or (unix seconds, raw bytes, what was wrong).
Entry: TypeAlias = FrameEntry


class Ring(deque[Entry]):
    """The last frames of one pile; the pile side appends to it directly."""

    __slots__ = ("pile_id", "history")

    def __init__(self, pile_id: str, history: FrameHistory) -> None:
        super().__init__(maxlen=history.capacity)
        self.pile_id = pile_id
        self.history = history


class StreamedRing(Ring):
    """The ring of a watched pile: what is appended is also streamed.

    A ring becomes one (and back) by changing its class, so that the session
    holding it needs not be found and told.
    """

    __slots__ = ()

    def append(self, entry: Entry) -> None:
        """Keep ``entry`` and hand it to the history's ``on_entry``."""
        deque.append(self, entry)
        on_entry = self.history.on_entry
        if on_entry is not None:
            on_entry(self.pile_id, entry)


class FrameHistory:
    """Ring buffers of the last ``capacity`` frames of each pile (a frame recorder and observer).

    The rings of online piles are in ``_piles``.  A pile that is not online
    (it went offline, or it only sent a login that was not, or not yet,
    accepted) has its ring parked: the console still shows what it sent, but
    at most ``offline_piles`` parked rings are kept, oldest dropped first, so
    logins with made-up ids cannot fill the memory.  ``on_entry(pile_id,
    entry)`` is told of each new entry of the piles being watched
    (:meth:`watch`).
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
        self._piles: dict[str, Ring] = {}
        self._parked: OrderedDict[str, Ring] = OrderedDict()
        self._watched: set[str] = set()

    @property
    def up_types(self) -> frozenset[int]:
        """None: the pile side appends frames to the rings its sessions hold."""
        return frozenset()

    @property
    def down_types(self) -> frozenset[int]:
        """None: the pile side appends frames to the rings its sessions hold."""
        return frozenset()

    # -- rings ---------------------------------------------------------------------------
    def _new_ring(self, pile_id: str) -> Ring:
        ring = Ring(pile_id, self)
        if pile_id in self._watched:
            ring.__class__ = StreamedRing
        return ring

    def _park(self, pile_id: str, ring: Ring) -> None:
        self._parked[pile_id] = ring
        self._parked.move_to_end(pile_id)
        while len(self._parked) > self.offline_piles:
            self._parked.popitem(last=False)

    def _find(self, pile_id: str) -> Ring | None:
        ring = self._piles.get(pile_id)
        return ring if ring is not None else self._parked.get(pile_id)

    def ring_of(self, pile_id: str) -> Ring:
        """The ring a new session of ``pile_id`` appends to (parked until the pile is online)."""
        ring = self._piles.get(pile_id)
        if ring is None:
            ring = self._parked.get(pile_id) or self._new_ring(pile_id)
            self._park(pile_id, ring)
        return ring

    def pile_online(self, pile_id: str, ring: deque[Entry] | None) -> Ring:
        """The pile's login was accepted: its ring (``ring``, the session's, if none is kept) is online."""
        found = self._piles.get(pile_id) or self._parked.pop(pile_id, None)
        if found is None:
            found = self._new_ring(pile_id)
            found.extend(ring or ())
        self._piles[pile_id] = found
        return found

    def pile_offline(self, pile_id: str) -> None:
        """Park the pile's ring (kept for the console; the oldest parked ones are forgotten)."""
        ring = self._piles.pop(pile_id, None)
        if ring is not None:
            self._park(pile_id, ring)

    def watch(self, pile_id: str, watching: bool) -> None:
        """Start (or stop) streaming the entries of ``pile_id`` to ``on_entry``."""
        if watching:
            self._watched.add(pile_id)
        else:
            self._watched.discard(pile_id)
        ring = self._find(pile_id)
        if ring is not None:
            ring.__class__ = StreamedRing if watching else Ring

    # -- frames from elsewhere -------------------------------------------------------------
    def observe(
        self, pile_id: str, direction: Direction, ft: int, fields: dict[str, Any], raw: bytes
    ) -> None:
        """A frame given by hand (the pile side appends to rings instead): kept in the pile's ring.

        Any frame but a login from the pile makes its ring an online one.
        """
        ring = self._piles.get(pile_id)
        if ring is None:
            if direction == "up" and ft != 0x01:
                ring = self.pile_online(pile_id, None)
            else:
                ring = self.ring_of(pile_id)
        ring.append((self.clock.seconds(), raw))

    def bad_input(self, pile_ids: list[str], kind: str, data: bytes, detail: str) -> None:
        """Bytes dropped from a link: kept in the history of each pile on it."""
        if not self.capacity:
            return
        entry = (self.clock.seconds(), bytes(data[:512]), f"{kind}: {detail}" if detail else kind)
        for pile_id in pile_ids:
            ring = self._piles.get(pile_id)
            if ring is None:
                ring = self.ring_of(pile_id)
            ring.append(entry)

    def __contains__(self, pile_id: str) -> bool:
        return self._find(pile_id) is not None

    def frames(self, pile_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The pile's frames, oldest first, decoded (the last ``limit``)."""
        entries = list(self._find(pile_id) or ())
        if limit is not None:
            entries = entries[-limit:]
        return [self.describe(entry) for entry in entries]

    def describe(self, entry: Entry) -> dict[str, Any]:
        """The JSON of one entry: time, direction, type, seq, fields, hex, error, field spans."""
        at, raw = entry[0], entry[1]
        error = entry[2] if len(entry) > 2 else None
        out: dict[str, Any] = {
            "at": int(at * 1000),
            "dir": "up",
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
        ftype = catalogue[frame.code]
        out["name"] = ftype.name
        if ftype.direction is FrameDirection.DOWN:
            out["dir"] = "down"
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
