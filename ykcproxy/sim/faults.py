"""Faults a simulated pile can inject on its way to the platform.

:class:`FaultWriter` sits between a simulated pile and its
:class:`~ykcproxy.sim.link.PileLink`: every frame the pile writes goes
through it and may be preceded by a corrupted copy or by garbage, held
back and merged with the next frames, or cut into pieces written a moment
apart.  The pile's protocol is unchanged: the real frame is always sent,
in order, so a proxy that copes with the fault answers every request.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ykcproxy.sim.stats import Stats

START = 0x68


@attrs.frozen
class Faults:
    """Which faults to inject, and how often.

    Rates are probabilities per frame written; ``slow_share`` is the share
    of piles that read slowly (pause reading ``slow_pause`` seconds every
    ``slow_every`` seconds).
    """

    #: A write is cut into 2–4 pieces written ``split_gap`` seconds apart.
    split: float = 0.0
    split_gap: float = 0.002
    #: Frames are held back for ``merge_window`` seconds and written together.
    merge: bool = False
    merge_window: float = 0.005
    #: A copy of the frame with a broken CRC is written before it.
    bad_crc: float = 0.0
    #: 1–32 bytes of garbage (never a start byte 0x68) are written before the frame.
    garbage: float = 0.0
    slow_share: float = 0.0
    slow_pause: float = 2.0
    slow_every: float = 10.0

    @property
    def on_writes(self) -> bool:
        """Whether any fault changes what is written."""
        return bool(self.split or self.merge or self.bad_crc or self.garbage)


NO_FAULTS = Faults()


def corrupt(frame: bytes) -> bytes:
    """``frame`` with both CRC bytes changed (so it matches neither byte order)."""
    return frame[:-2] + bytes((frame[-2] ^ 0x5A, frame[-1] ^ 0xA5))


def garbage(rnd: random.Random, n: int) -> bytes:
    """``n`` random bytes without a start byte (a 0x68 would hold back the next frame)."""
    data = bytearray(rnd.getrandbits(8) for _ in range(n))
    return bytes(b if b != START else 0 for b in data)


class FaultWriter:
    """Writes a pile's frames to ``sink``, injecting the configured faults."""

    def __init__(self, faults: Faults, clock: IReactorTime, rnd: random.Random, stats: Stats) -> None:
        self.faults = faults
        self.clock = clock
        self.rnd = rnd
        self.stats = stats
        self.sink: Callable[[bytes], None] | None = None
        self._merge = bytearray()
        self._merge_call: IDelayedCall | None = None
        self._pieces: deque[bytes] = deque()
        self._drain_call: IDelayedCall | None = None

    def attach(self, sink: Callable[[bytes], None] | None) -> None:
        """Write to ``sink`` from now on (None: the link is gone; drop what is queued)."""
        self.sink = sink
        for call in (self._merge_call, self._drain_call):
            if call is not None and call.active():
                call.cancel()
        self._merge_call = self._drain_call = None
        self._merge.clear()
        self._pieces.clear()

    def write(self, frame: bytes) -> None:
        """Write one frame, with whatever faults the dice pick."""
        f, rnd, events = self.faults, self.rnd, self.stats.events
        data = frame
        if f.bad_crc and rnd.random() < f.bad_crc:
            data = corrupt(frame) + data
            events["injected_bad_crc"] += 1
        if f.garbage and rnd.random() < f.garbage:
            data = garbage(rnd, rnd.randint(1, 32)) + data
            events["injected_garbage"] += 1
        if f.merge:
            self._merge += data
            if self._merge_call is None:
                self._merge_call = self.clock.callLater(f.merge_window, self._flush_merged)
            return
        self._emit(data)

    def _flush_merged(self) -> None:
        self._merge_call = None
        if self._merge:
            data = bytes(self._merge)
            self._merge.clear()
            self.stats.events["injected_merged_writes"] += 1
            self._emit(data)

    def _emit(self, data: bytes) -> None:
        f = self.faults
        if f.split and len(data) > 1 and self.rnd.random() < f.split:
            cuts = sorted(self.rnd.sample(range(1, len(data)), min(len(data) - 1, self.rnd.randint(1, 3))))
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
            self.stats.events["injected_splits"] += 1
        else:
            pieces = [data]
        if not self._pieces and self._drain_call is None:
            self._send(pieces.pop(0))
        self._pieces.extend(pieces)
        if self._pieces and self._drain_call is None:
            self._drain_call = self.clock.callLater(f.split_gap, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        if self._pieces:
            self._send(self._pieces.popleft())
        if self._pieces:
            self._drain_call = self.clock.callLater(self.faults.split_gap, self._drain)

    def _send(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink(data)
