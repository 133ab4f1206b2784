"""Steady state: N simulated piles (half charging) against one proxy process, vs the reference.

For each target (the bare-framing reference, the proxy with no consumer,
the proxy publishing to a real nats-server, and the proxy without one of its
parts or with a console watching a pile) the simulator (its own process)
ramps N piles up, waits ``--warmup`` seconds, then measures a window of
``--duration`` seconds: heartbeat round trips (p50/p99 of the simulator's
0x03→0x04), the target's CPU share of one core and its RSS (from /proc).

    python bench/steady.py [--piles 10000] [--duration 40] [--targets reference,none,nats]
                           [--reactors default,uvloop] [--json out.json]

Targets: ``reference`` (bare framing), ``none`` (the proxy with no consumer;
session tracker and frame history on, as by default), ``none-no-tracker``
(the tracker reading no frame), ``none-no-history`` (``--frameHistory 0``),
``none-watched`` (a console's event stream open on the first pile during the
run, as a browser showing its frames), ``nats``, ``nats-mem``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CpuMeter,
    Proc,
    Sim,
    nats_in_msgs,
    print_machine,
    raise_open_file_limit,
    ratio,
    start_nats_proxy,
    start_proxy,
    start_reference,
    workdir,
)

#: The proxy with no consumer: target → (extra options, parts observing no frame).
PLAIN_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "none": ([], []),
    "none-no-tracker": ([], ["tracker"]),
    "none-no-history": (["--frameHistory", "0"], []),
    "none-watched": ([], []),
}


class EventWatcher(threading.Thread):
    """A console's event stream on one pile (``GET /events?pile=``), read and counted in a thread."""

    def __init__(self, rest_port: int, pile_id: str) -> None:
        super().__init__(daemon=True)
        self.connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=120)
        self.pile_id = pile_id
        self.frames = 0
        self.events = 0

    def run(self) -> None:
        self.connection.request("GET", f"/events?pile={self.pile_id}")
        response = self.connection.getresponse()
        try:
            for line in response:
                if line.startswith(b"event:"):
                    self.events += 1
                    self.frames += line.strip() == b"event: frame"
        except (OSError, ValueError, http.client.HTTPException):
            return  # closed at the end of the run

    def stop(self) -> None:
        """Close the stream."""
        sock = self.connection.sock
        if sock is not None:
            sock.close()


def run_target(target: str, reactor: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One run of the simulator against ``target``; returns its figures."""
    extra: list[Proc] = []
    monitor = 0
    watcher: EventWatcher | None = None
    if target == "reference":
        proc, port, _ = start_reference(work, reactor)
    elif target in PLAIN_TARGETS:
        options, without = PLAIN_TARGETS[target]
        if args.gc_freeze_interval is not None:
            options = [*options, "--gcFreezeInterval", f"{args.gc_freeze_interval:g}"]
        proc, port, rest = start_proxy(
            work,
            ["--messagingServerType", "none", *options],
            reactor,
            name=f"proxy-{target}-{reactor}",
            without=without,
        )
        if target == "none-watched":
            watcher = EventWatcher(rest, str(args.id_base))
            watcher.start()
    elif target in ("nats", "nats-mem"):
        proc, port, _, nats, monitor = start_nats_proxy(
            work, target, reactor, f"proxy-{target}-{reactor}", args.profile
        )
        extra.append(nats)
    else:
        raise ValueError(target)
    sim_options = [
        "--id-base", str(args.id_base), "--piles", str(args.piles), "--charging", "0.5",
        "--ramp", str(args.ramp),
        "--warmup", str(args.warmup), "--duration", str(args.duration), "--ramp-timeout", "60",
        "--reply-timeout", "10",
    ]  # fmt: skip
    sim = Sim(work, port, sim_options, name=f"sim-{target}-{reactor}", reactor=args.sim_reactor)
    cpu, sim_cpu = CpuMeter(proc), CpuMeter(sim.proc)
    out: dict[str, Any] = {"target": target, "reactor": reactor}
    n0 = 0
    try:
        for event in sim.events(timeout=args.ramp_limit + args.warmup + args.duration + 60):
            name = event["event"]
            if name == "all_logged_in":
                out["allLoggedInSeconds"] = event["seconds"]
            elif name == "ramp_incomplete":
                out["allLoggedInSeconds"] = None
            elif name == "window_start":
                cpu.start()
                sim_cpu.start()
                if monitor:
                    n0 = nats_in_msgs(monitor)
            elif name == "window_end":
                out["cpu"] = round(cpu.stop(), 3)
                out["simCpu"] = round(sim_cpu.stop(), 3)
                out["rssMiB"] = round(proc.rss_mib(), 1)
                out["peakRssMiB"] = round(proc.hwm_mib(), 1)
                if monitor:
                    out["natsMessagesPerSecond"] = round((nats_in_msgs(monitor) - n0) / cpu_window(cpu), 1)
    finally:
        if watcher is not None:
            out["watchedEvents"], out["watchedFrames"] = watcher.events, watcher.frames
            watcher.stop()
        sim.proc.stop()
        proc.stop()
        for p in extra:
            p.stop()
    summary = sim.summary or {}
    hb = summary.get("latencyWindow", {}).get("03", {})
    out.update(
        heartbeats=hb.get("count"),
        heartbeatP50=hb.get("p50"),
        heartbeatP99=hb.get("p99"),
        heartbeatMax=hb.get("max"),
        lost=sum(summary.get("lost", {}).values()),
        errors=summary.get("errors", {}),
        framesSent=sum(summary.get("sent", {}).values()),
    )
    return out


def cpu_window(meter: CpuMeter) -> float:
    import time

    return max(1e-9, time.monotonic() - meter.t0)


def main() -> None:
    """Run every target and print the table."""
    p = argparse.ArgumentParser()
    p.add_argument("--piles", type=int, default=10000)
    p.add_argument(
        "--gc-freeze-interval", type=float, default=None, help="the proxies' --gcFreezeInterval (no consumer)"
    )
    p.add_argument("--id-base", type=int, default=32010200000001, help="the simulator's first pile id")
    p.add_argument("--ramp", type=float, default=1000)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--duration", type=float, default=40)
    p.add_argument("--ramp-limit", type=float, default=60)
    p.add_argument("--targets", default="reference,none,nats,nats-mem")
    p.add_argument("--reactors", default="default", help="proxy reactors to compare: default,asyncio,uvloop")
    p.add_argument("--sim-reactor", default="default")
    p.add_argument("--profile", default="", help="record the NATS run's proxy with py-spy to this file")
    p.add_argument("--json", default="")
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    raise_open_file_limit()
    machine = print_machine()
    print(f"steady: {args.piles} piles (half charging), ramp {args.ramp}/s, window {args.duration} s")
    results = []
    with workdir(args.keep_logs) as work:
        for reactor in args.reactors.split(","):
            for target in args.targets.split(","):
                if target == "reference" and reactor != args.reactors.split(",")[0]:
                    continue
                r = run_target(target, reactor, args, work)
                results.append(r)
                print(json.dumps(r))
    ref = next((r for r in results if r["target"] == "reference"), None)
    print()
    print(
        f"{'target':<16} {'reactor':<8} {'login s':>8} {'hb p50':>8} {'hb p99':>8} {'p99/ref':>8} "
        f"{'CPU':>6} {'RSS MiB':>8} {'lost':>5}"
    )
    for r in results:
        rel = (
            ratio(r["heartbeatP99"] or 0, ref["heartbeatP99"])
            if ref and ref["heartbeatP99"]
            else float("nan")
        )
        r["p99VsReference"] = rel
        nan = float("nan")
        print(
            f"{r['target']:<16} {r['reactor']:<8} {r.get('allLoggedInSeconds') or nan:>8.2f} "
            f"{r['heartbeatP50'] or nan:>8.2f} {r['heartbeatP99'] or nan:>8.2f} {rel:>8.2f} "
            f"{100 * r.get('cpu', 0):>5.1f}% {r.get('rssMiB', 0):>8.1f} {r['lost']:>5}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()
