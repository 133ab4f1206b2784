"""Reconnect storm: N logged-in piles drop their connections at once and log in again.

The simulator ramps ``--piles`` piles up, waits, then aborts every
connection at the same moment (TCP RST, as a pile losing power would not;
but it frees the ports at once) and reconnects each pile immediately
(``--storm-delay``, default 0).  Measured: seconds until every pile has
logged in again (0x02 received), the target's CPU over that time and its
peak RSS, the login round trips (0x01→0x02) and what was lost.

The reference listens with the proxy's default backlog (4096,
``--listenBacklog``): ``reference-4096``, the one the ratios are to.  Add the
target ``reference`` (Twisted's default backlog of 50) to see how much of the
storm is the accept queue.

    python bench/storm.py [--piles 10000] [--targets reference-4096,none,nats,nats-mem] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    PYTHON,
    ROOT,
    CpuMeter,
    Proc,
    Sim,
    free_port,
    print_machine,
    raise_open_file_limit,
    ratio,
    start_nats_proxy,
    start_proxy,
    wait_port,
    workdir,
)


def start_reference(work: Path, backlog: int) -> tuple[Proc, int]:
    """The reference server with a given listen backlog."""
    tcp, stats = free_port(), free_port()
    argv = [PYTHON, str(ROOT / "bench" / "refserver.py"), "--port", str(tcp), "--stats-port", str(stats)]
    argv += ["--backlog", str(backlog)]
    proc = Proc(f"reference-{backlog}", argv, work / f"reference-{backlog}.out")
    wait_port(tcp)
    return proc, tcp


def run_target(target: str, reactor: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One storm against ``target``."""
    extra: list[Proc] = []
    if target == "reference":
        proc, port = start_reference(work, 50)
    elif target == "reference-4096":
        proc, port = start_reference(work, 4096)
    elif target == "none":
        proc, port, _ = start_proxy(
            work, ["--messagingServerType", "none"], reactor, name=f"storm-none-{reactor}"
        )
    elif target in ("nats", "nats-mem"):
        proc, port, _, nats, _ = start_nats_proxy(
            work, target, reactor, f"storm-{target}-{reactor}", args.profile
        )
        extra.append(nats)
    else:
        raise ValueError(target)
    sim_options = [
        "--piles", str(args.piles), "--ramp", str(args.ramp), "--warmup", "3",
        "--duration", str(args.duration), "--storm-at", "3", "--storm-delay", str(args.storm_delay),
        "--reply-timeout", "10", "--ramp-timeout", "60",
    ]  # fmt: skip
    sim = Sim(work, port, sim_options, name=f"sim-storm-{target}-{reactor}", reactor=args.sim_reactor)
    cpu = CpuMeter(proc)
    out: dict[str, Any] = {"target": target, "reactor": reactor}
    try:
        for event in sim.events(timeout=args.duration + 120):
            name = event["event"]
            if name == "all_logged_in":
                out["rampSeconds"] = event["seconds"]
            elif name == "storm":
                cpu.start()
                out["stormPiles"] = event["piles"]
            elif name == "storm_recovered":
                out["recoverySeconds"] = event["seconds"]
                out["cpuDuringRecovery"] = round(cpu.stop(), 3)
                out["peakRssMiB"] = round(proc.hwm_mib(), 1)
        time.sleep(0.2)
    finally:
        sim.proc.stop()
        proc.stop()
        for p in extra:
            p.stop()
    summary = sim.summary or {}
    login = summary.get("latencyWindow", {}).get("01", {})
    out.update(
        logins=summary.get("events", {}).get("logins"),
        loginP50=login.get("p50"),
        loginP99=login.get("p99"),
        connectFailed=summary.get("errors", {}).get("connect_failed", 0),
        lost=sum(summary.get("lost", {}).values()),
        errors=summary.get("errors", {}),
    )
    out.setdefault("recoverySeconds", None)
    return out


def main() -> None:
    """Run every target and print the table."""
    p = argparse.ArgumentParser()
    p.add_argument("--piles", type=int, default=10000)
    p.add_argument("--ramp", type=float, default=1000)
    p.add_argument("--duration", type=float, default=60, help="window length; the storm is 3 s into it")
    p.add_argument("--storm-delay", type=float, default=0.0)
    p.add_argument("--targets", default="reference-4096,none,nats,nats-mem")
    p.add_argument(
        "--reference",
        default="reference-4096",
        help="the target the ratios are to: reference-4096 listens with the proxy's default backlog (4096); "
        "reference (backlog 50) is Twisted's default",
    )
    p.add_argument("--reactors", default="default")
    p.add_argument("--sim-reactor", default="default")
    p.add_argument("--profile", default="")
    p.add_argument("--json", default="")
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    raise_open_file_limit()
    machine = print_machine()
    print(f"storm: {args.piles} piles drop at once and reconnect after {args.storm_delay} s")
    results = []
    with workdir(args.keep_logs) as work:
        for reactor in args.reactors.split(","):
            for target in args.targets.split(","):
                if target.startswith("reference") and reactor != args.reactors.split(",")[0]:
                    continue
                r = run_target(target, reactor, args, work)
                results.append(r)
                print(json.dumps(r))
    ref = next((r for r in results if r["target"] == args.reference), None)
    print()
    print(
        f"{'target':<15} {'reactor':<8} {'recovery s':>10} {'vs ref':>7} {'login p50':>10} "
        f"{'login p99':>10} {'CPU':>6} {'RSS MiB':>8} {'lost':>5}"
    )
    nan = float("nan")
    for r in results:
        rel = (
            ratio(r["recoverySeconds"] or nan, ref["recoverySeconds"])
            if ref and ref["recoverySeconds"]
            else nan
        )
        r["vsReference"] = rel
        print(
            f"{r['target']:<15} {r['reactor']:<8} {r['recoverySeconds'] or nan:>10.2f} {rel:>7.2f} "
            f"{r['loginP50'] or nan:>10.2f} {r['loginP99'] or nan:>10.2f} "
            f"{100 * r.get('cpuDuringRecovery', 0):>5.0f}% {r.get('peakRssMiB', 0):>8.1f} {r['lost']:>5}"
        )
    if args.json:
        report = {"machine": machine, "args": vars(args), "results": results}
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
