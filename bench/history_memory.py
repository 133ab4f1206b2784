"""Memory of full frame histories, counted by tracemalloc: deterministic, not a process RSS.

Builds one :class:`FrameHistory` at ``--frameHistory``'s default, fills the
ring of each of ``--piles`` piles with frames of a typical mix (heartbeats and
their replies; with ``--charging``, real-time data, BMS frames and heartbeats),
fed through ``observe`` as the pile side feeds it, and prints the bytes
tracemalloc saw allocated, per pile and extrapolated to ``--extrapolate`` piles.

    python bench/history_memory.py [--piles 1000] [--charging] [--extrapolate 10000]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ykcproxy.console.history import FrameHistory  # noqa: E402
from ykcproxy.options import default_config  # noqa: E402
from ykcproxy.sim.link import PileLink  # noqa: E402
from ykcproxy.wire.examples import example  # noqa: E402

#: Idle: heartbeat up, its reply down.  Charging: real-time data, BMS frames, heartbeats.
IDLE = ((0x03, "up"), (0x04, "down"))
CHARGING = ((0x13, "up"), (0x23, "up"), (0x25, "up"), (0x03, "up"), (0x04, "down"))


class Ticking:
    """A clock whose every reading is a new float, as the reactor's are."""

    def __init__(self) -> None:
        self.now = 1.8e9

    def seconds(self) -> float:
        self.now += 0.001
        return self.now


def fill(piles: int, mix: tuple[tuple[int, str], ...], capacity: int) -> FrameHistory:
    """A history with ``capacity`` frames of each of ``piles`` piles."""
    history = FrameHistory(Ticking(), capacity)  # type: ignore[arg-type]
    link = PileLink()
    for n in range(piles):
        pile_id = f"{32010200000000 + n:014d}"
        for code, direction in itertools.islice(itertools.cycle(mix), capacity):
            raw = link.frame(code, example(code, pile_id))
            # A new bytes object per frame, as the framer slices each frame out of what it read.
            raw = (b"\0" + raw)[1:]
            history.observe(pile_id, direction, code, {}, raw)  # type: ignore[arg-type]
    return history


def main() -> None:
    """Print tracemalloc's bytes for full histories, per pile, and extrapolated."""
    from bench.common import print_machine

    p = argparse.ArgumentParser()
    p.add_argument("--piles", type=int, default=1000)
    p.add_argument("--extrapolate", type=int, default=10000)
    p.add_argument("--charging", action="store_true", help="the charging mix (default: idle)")
    args = p.parse_args()
    capacity = default_config().frame_history
    mix = CHARGING if args.charging else IDLE
    print_machine()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    history = fill(args.piles, mix, capacity)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    frames = [entry[1] for ring in history._piles.values() for entry in ring]
    assert len(frames) == args.piles * capacity
    mean = sum(map(len, frames)) / len(frames)
    per_pile = (after - before) / args.piles
    print(
        f"{'charging' if args.charging else 'idle'} mix, {capacity} frames per pile (mean {mean:.0f} bytes):"
        f" {after - before:,} bytes for {args.piles:,} piles, {per_pile:,.0f} per pile;"
        f" {args.extrapolate:,} piles: {per_pile * args.extrapolate / 2**20:,.0f} MiB (tracemalloc, not RSS)"
    )


if __name__ == "__main__":
    main()
