"""Coverage-guided fuzzing of the pile side with atheris (run on demand, not in CI).

    python fuzz/fuzz_pile.py -atheris_runs=1000000

Prints the number of inputs run and the growth of the resident set size; any
exception that escapes the pile side is a crash that atheris saves as
``crash-*`` (turn each into a regression test).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import atheris  # noqa: E402

with atheris.instrument_imports():
    from fuzz.pile_target import SEEDS, Target

TARGET = Target()
RUNS = [0]
START_RSS = [0]


def one_input(data: bytes) -> None:
    """One input: the first byte picks a seed frame and a chunk size, the rest mutates it."""
    RUNS[0] += 1
    if not data:
        return
    pick = data[0]
    seed = SEEDS[pick % len(SEEDS)]
    body = data[1:]
    mixed = seed[: len(body) % (len(seed) + 1)] + body if pick & 0x80 else body
    TARGET.feed(mixed, chunk=(pick >> 4) & 0x7)


def _report() -> None:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stderr.write(
        f"inputs run: {RUNS[0]}, max RSS {rss // 1024} MB (at start {START_RSS[0] // 1024} MB)\n"
    )


def main() -> None:
    """Run atheris over :func:`one_input`."""
    import atexit

    START_RSS[0] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    atexit.register(_report)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
