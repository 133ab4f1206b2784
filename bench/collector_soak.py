"""Memory over a long run with reconnecting and charging piles, with and without the collector policy.

Two proxies (no consumer, each its own process and data directory) run side by
side for ``--minutes``: one with ``--gcFreezeInterval 0`` (Python's collector
as it comes), one with ``--gcFreezeInterval --interval`` (the policy, sped up:
every ``--interval`` seconds the objects alive are frozen, every 12th time
unfrozen and collected once).  Each gets ``--piles`` simulated piles, a
``--charging`` share of them charging in charges of ``--charge-minutes`` (new
orders all the time), and every ``--storm-every`` seconds a ``--storm-share`` of
the piles drops its connection and logs in again (new connections and
sessions, the old ones garbage).  Every ``--sample`` seconds each proxy's RSS is
read from /proc.  Reported: RSS at the start of the window, at each tenth of
it, its peak, and the growth over the second half.

    python bench/collector_soak.py [--minutes 30] [--piles 5000] [--interval 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Proc, Sim, get_json, print_machine, raise_open_file_limit, start_proxy, workdir  # noqa: E402


def drain(sim: Sim, seen: dict[str, Any]) -> None:
    """Read the simulator's events (so its pipe never fills); note when all piles are in."""
    for event in sim.events(timeout=10**9):
        if event.get("event") == "all_logged_in":
            seen["allLoggedIn"] = time.time()


def main() -> None:
    """Both proxies side by side; RSS sampled over the window."""
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--piles", type=int, default=5000, help="simulated piles per proxy")
    p.add_argument("--interval", type=float, default=20, help="the policy's --gcFreezeInterval (s)")
    p.add_argument("--charging", type=float, default=0.5)
    p.add_argument("--charge-minutes", type=float, default=2)
    p.add_argument("--storm-every", type=float, default=60)
    p.add_argument("--storm-share", type=float, default=0.2)
    p.add_argument("--sample", type=float, default=10)
    p.add_argument("--warmup", type=float, default=30, help="seconds after all logins before the window")
    p.add_argument("--json", default="")
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    raise_open_file_limit()
    machine = print_machine()
    runs = {"collector as it comes": "0", f"policy every {args.interval:g} s": f"{args.interval:g}"}
    print(
        f"collector soak: {len(runs)} proxies x {args.piles} piles for {args.minutes:g} min, "
        f"{args.charging:g} charging ({args.charge_minutes:g}-minute charges), "
        f"{args.storm_share:g} of the piles reconnecting every {args.storm_every:g} s"
    )
    seconds = args.minutes * 60
    procs: dict[str, tuple[Proc, int]] = {}
    sims: list[Sim] = []
    seen: dict[str, dict[str, Any]] = {name: {} for name in runs}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    with workdir(args.keep_logs) as work:
        try:
            for k, (name, interval) in enumerate(runs.items()):
                options = ["--messagingServerType", "none", "--gcFreezeInterval", interval]
                proc, tcp, rest = start_proxy(work, options, name=f"proxy-{k}")
                procs[name] = (proc, rest)
                sim_options = [
                    "--piles", str(args.piles), "--ramp", "1000", "--ramp-timeout", "120",
                    "--warmup", f"{args.warmup:g}", "--duration", f"{seconds + 60:g}",
                    "--charging", f"{args.charging:g}", "--charge-minutes", f"{args.charge_minutes:g}",
                    "--storm-at", "0", "--storm-every", f"{args.storm_every:g}",
                    "--storm-share", f"{args.storm_share:g}", "--storm-delay", "1",
                    "--seed", str(k + 1),
                ]  # fmt: skip
                sim = Sim(work, tcp, sim_options, name=f"sim-{k}")
                sims.append(sim)
                threading.Thread(target=drain, args=(sim, seen[name]), daemon=True).start()
            deadline = time.time() + 150
            while not all("allLoggedIn" in s for s in seen.values()):
                if time.time() > deadline:
                    raise TimeoutError("the piles did not all log in")
                time.sleep(1)
            time.sleep(args.warmup)
            start = time.time()
            while time.time() - start < seconds:
                for name, (proc, _) in procs.items():
                    samples[name].append((round(time.time() - start, 1), round(proc.rss_mib(), 1)))
                time.sleep(args.sample)
            piles = {
                name: get_json(f"http://127.0.0.1:{rest}/healthz").get("piles")
                for name, (_, rest) in procs.items()
            }
            peaks = {name: round(proc.hwm_mib(), 1) for name, (proc, _) in procs.items()}
        finally:
            for sim in sims:
                sim.proc.stop()
            for proc, _ in procs.values():
                proc.stop()
    result: dict[str, Any] = {}
    for name, rows in samples.items():
        half = [rss for t, rss in rows if t >= seconds / 2]
        tenths = [rows[min(len(rows) - 1, round(i * (len(rows) - 1) / 10))][1] for i in range(11)]
        result[name] = {
            "startMiB": rows[0][1],
            "endMiB": rows[-1][1],
            "peakMiB": peaks[name],
            "secondHalfGrowthMiB": round(half[-1] - half[0], 1) if half else None,
            "secondHalfMinMaxMiB": [min(half), max(half)] if half else None,
            "byTenths": tenths,
            "pilesAtEnd": piles[name],
            "samples": rows,
        }
    print()
    print(f"{'run':<24} {'start':>7} {'end':>7} {'peak':>7} {'2nd half +':>10}   RSS MiB at each tenth")
    for name, r in result.items():
        print(
            f"{name:<24} {r['startMiB']:>7.1f} {r['endMiB']:>7.1f} {r['peakMiB']:>7.1f} "
            f"{r['secondHalfGrowthMiB']:>10.1f}   " + " ".join(f"{v:.0f}" for v in r["byTenths"])
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine, "args": vars(args), "result": result}, indent=1)
        )


if __name__ == "__main__":
    main()
