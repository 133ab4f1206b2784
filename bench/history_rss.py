"""Process RSS of full console frame histories: the proxy with ``--frameHistory 0`` vs its default.

For each run the proxy (no consumer, its own process) gets ``--piles`` piles
from the simulator, which then sends ``--rate`` heartbeats per second over all
piles for ``--seconds`` seconds (``--burst <rate>x<seconds> --burst-frame 03``),
enough to fill each pile's ring (every heartbeat is kept with its 0x04 reply).
At the end of the burst, the piles still connected, the proxy's RSS and peak
RSS are read from /proc, and one pile's ``GET /piles/<id>/frames`` says how
full its ring is.

    python bench/history_rss.py [--piles 10000] [--rate 20000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Sim, print_machine, raise_open_file_limit, start_proxy, workdir  # noqa: E402

#: Run name → the proxy's extra options.
RUNS = {"history off": ["--frameHistory", "0"], "history on (200)": []}


def kept_frames(rest_port: int, pile_id: int) -> int:
    """How many frames of ``pile_id`` the proxy keeps (0 with the history off)."""
    url = f"http://127.0.0.1:{rest_port}/piles/{pile_id}/frames"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return len(json.load(response)["frames"])
    except OSError:
        return 0


def run(name: str, options: list[str], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One proxy, filled by the simulator; its RSS at the end of the burst."""
    slug = name.split()[1]
    proc, port, rest = start_proxy(work, ["--messagingServerType", "none", *options], name=f"proxy-{slug}")
    sim_options = [
        "--id-base", str(args.id_base), "--piles", str(args.piles), "--ramp", "2000",
        "--ramp-timeout", "60", "--burst", f"{args.rate}x{args.seconds:g}", "--burst-frame", "03",
    ]  # fmt: skip
    sim = Sim(work, port, sim_options, name=f"sim-{slug}")
    try:
        out: dict[str, Any] = {"run": name}
        for event in sim.events(timeout=args.seconds + 180):
            if event["event"] == "window_end":  # the piles are still connected
                out["rssMiB"] = round(proc.rss_mib(), 1)
                out["peakRssMiB"] = round(proc.hwm_mib(), 1)
                out["framesKeptOfFirstPile"] = kept_frames(rest, args.id_base)
    finally:
        sim.proc.stop()
        proc.stop()
    return out


def main() -> None:
    """Both runs, then the difference."""
    p = argparse.ArgumentParser()
    p.add_argument("--piles", type=int, default=10000)
    p.add_argument("--rate", type=int, default=20000, help="heartbeats/s over all piles")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--id-base", type=int, default=32010200000001)
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    raise_open_file_limit()
    print_machine()
    results = []
    with workdir(args.keep_logs) as work:
        for name, options in RUNS.items():
            result = run(name, options, args, work)
            results.append(result)
            print(json.dumps(result))
    off, on = results
    print()
    print(f"{'run':<18} {'RSS MiB':>8} {'peak MiB':>9} {'kept (1st pile)':>16}")
    for r in results:
        print(f"{r['run']:<18} {r['rssMiB']:>8.1f} {r['peakRssMiB']:>9.1f} {r['framesKeptOfFirstPile']:>16}")
    print(f"history on - off: {on['rssMiB'] - off['rssMiB']:.1f} MiB RSS for {args.piles} piles")


if __name__ == "__main__":
    main()
