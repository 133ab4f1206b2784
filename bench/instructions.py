"""Instructions per frame, counted by valgrind: the repeatable per-frame cost.

On a shared machine timings swing by 10–20 % between runs; instruction counts
of the same code on the same input do not.  This runs ``bench/pipeline.py``'s
loops (a real :class:`PileProtocol` on a ``StringTransport``, and the bare
:class:`Framer` as the reference) under ``valgrind --tool=callgrind`` twice,
with 1 and with ``1 + rounds`` rounds of 100 frames, and divides the
difference, so start-up and imports cancel out.

Python's string hashing is seeded at random in each process, and the seed
moves the count by a few percent (dict and set probes); each child runs with a
fixed ``PYTHONHASHSEED``, so the same code counts the same.  ``--seeds 0,1,2``
counts under several seeds and gives the median of each mode.

    python bench/instructions.py [--codes 03,13,3b] [--rounds 20] [--seeds 0]
    python bench/instructions.py --tracker [--rounds 20]
    python bench/instructions.py --history [--codes 03,13] [--rounds 20]

``--tracker`` compares 0x13 frames of one charging order through the proxy
without and with the session tracker (and its write-behind marking).
``--history`` compares each code through the proxy without and with the
console's frame history (``--frameHistory`` at its default), wired as the
proxy wires it.

Needs valgrind (Debian: ``apt-get install valgrind``); about a minute per code.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODES = ("framer", "proxy", "forward")
TRACKER_MODES = ("plain", "tracker")
#: Without and with the frame history.
HISTORY_MODES = ("proxy", "history")


def child(mode: str, code: int, rounds: int) -> None:
    """Run one loop (inside valgrind)."""
    from bench.pipeline import PER_CHUNK, PILE, charging_frames, framer_rate, proxy_rate
    from ykcproxy.sim.link import PileLink
    from ykcproxy.wire.examples import example

    if mode in TRACKER_MODES:
        proxy_rate(charging_frames(PER_CHUNK), rounds, False, tracker=mode == "tracker")
        return
    link = PileLink()
    chunk = b"".join(link.frame(code, example(code, PILE, salt=i)) for i in range(PER_CHUNK))
    if mode == "framer":
        framer_rate(chunk, rounds)
    else:
        proxy_rate(chunk, rounds, mode == "forward", history=mode == "history")


#: The hash seeds each mode is counted under (``--seeds``).
SEEDS = ["0"]


def count(mode: str, code: int, rounds: int, seed: str) -> int:
    """Instructions valgrind counted for one child run under the hash seed ``seed``."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    argv += [sys.executable, __file__, "--child", mode, "--codes", f"{code:02x}", "--rounds", str(rounds)]
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
    return int(found.group(1))


def per_frame(mode: str, code: int, rounds: int) -> float:
    """Instructions per frame of one mode: ``1 + rounds`` rounds minus 1 round, divided (median of seeds)."""
    from bench.pipeline import PER_CHUNK

    return statistics.median(
        (count(mode, code, 1 + rounds, seed) - count(mode, code, 1, seed)) / (rounds * PER_CHUNK)
        for seed in SEEDS
    )


def main() -> None:
    """Print instructions per frame for each code: framer, proxy, proxy + forwarding."""
    from bench.common import print_machine

    p = argparse.ArgumentParser()
    p.add_argument("--codes", default="03,13,3b")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--seeds", default="0", help="PYTHONHASHSEED values to count under (median)")
    p.add_argument("--child", choices=(*MODES, *TRACKER_MODES, "history"), default=None)
    p.add_argument("--tracker", action="store_true", help="0x13 of a charging order: tracker off vs on")
    p.add_argument("--history", action="store_true", help="each code: console frame history off vs on")
    args = p.parse_args()
    codes = [int(c, 16) for c in args.codes.split(",")]
    SEEDS[:] = args.seeds.split(",")
    if args.child:
        child(args.child, codes[0], args.rounds)
        return
    print_machine()
    if args.tracker:
        per = {mode: per_frame(mode, 0x13, args.rounds) for mode in TRACKER_MODES}
        print(
            f"0x13 of a charging order: without tracker {per['plain']:.0f}, with tracker {per['tracker']:.0f}"
            f" instructions per frame ({per['tracker'] / per['plain']:.2f}x)"
        )
        return
    if args.history:
        print(f"{'frame':8} {'off':>8} {'history':>8} {'ratio':>6}  (instructions per frame)")
        for code in codes:
            per = {mode: per_frame(mode, code, args.rounds) for mode in HISTORY_MODES}
            print(
                f"0x{code:02x}     {per['proxy']:8.0f} {per['history']:8.0f}"
                f" {per['history'] / per['proxy']:6.2f}x"
            )
        return
    print(f"{'frame':8} {'framer':>8} {'proxy':>8} {'+forward':>9} {'framer/proxy':>13}  (per frame)")
    for code in codes:
        per = {mode: per_frame(mode, code, args.rounds) for mode in MODES}
        print(
            f"0x{code:02x}     {per['framer']:8.0f} {per['proxy']:8.0f} {per['forward']:9.0f}"
            f" {per['framer'] / per['proxy']:13.2f}"
        )


if __name__ == "__main__":
    main()
