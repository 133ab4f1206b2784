"""Cluster mode: the extra latency of a routed REST command over a local one, in one run.

A ``nats-server -js`` and ``--instances`` proxy processes in cluster mode
(``--cluster``, each its own ``--instanceId`` and data directory, no
forwarding), one simulator process per instance with ``--piles`` piles (ids
distinct per instance) on that instance's pile port.  When the registry shows
every pile and ``--warmup`` seconds have passed, this process sends ``POST /proxy/12?wait=`` (a real-time data
request the simulated pile answers with its real-time data) at ``--rate`` per second for
``--duration`` seconds, round-robin over the instances' REST ports, each to a
pile drawn at random from the whole fleet: about one in ``--instances`` is held
by the instance asked (local), the others go to the holder by NATS (routed).
Each command's latency is from the request to the end of its answer.

    python bench/cluster.py [--instances N] [--piles P] [--rate R] [--duration D] [--json out.json]

``--gc-log`` records every process's garbage-collector pauses over 5 ms (see
``bench/gcprobe/sitecustomize.py``) and lists the proxies' longest ones during the
sending; ``--gc-freeze-at S`` has each proxy call ``gc.freeze()`` S seconds after its start.
``--gc-freeze-interval S`` passes ``--gcFreezeInterval S`` to the proxies (their collector
policy; the default 300 s falls after a run of this length, so a shorter one shows the
state of a proxy that has been up for a while).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    CpuMeter,
    Proc,
    Sim,
    get_json,
    print_machine,
    raise_open_file_limit,
    start_nats,
    start_proxy,
    workdir,
)

ID_BASE = 32010200000001
#: Pile ids of instance k start at ``ID_BASE + k * ID_STRIDE``.
ID_STRIDE = 1_000_000


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0..100) of ``values``, None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def drain(sim: Sim, seen: dict[str, Any]) -> None:
    """Read a simulator's events (so its pipe never fills), noting when all piles logged in."""
    for event in sim.events(timeout=1e9):
        if event.get("event") == "all_logged_in":
            seen["allLoggedInSeconds"] = event.get("seconds")
        elif event.get("event") == "ramp_incomplete":
            seen["allLoggedInSeconds"] = None


def wait_registry(rest: int, total: int, timeout: float) -> float:
    """Wait until ``GET /cluster`` counts ``total`` piles over all instances; returns the seconds waited."""
    t0 = time.monotonic()
    while True:
        try:
            body = get_json(f"http://127.0.0.1:{rest}/cluster")
            held = sum(int(i.get("piles", 0)) for i in body.get("instances", []))
        except OSError:
            held = 0
        if held >= total:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"registry shows {held} of {total} piles after {timeout} s")
        time.sleep(0.5)


def load(rests: list[int], piles: list[list[str]], args: argparse.Namespace) -> dict[str, Any]:
    """Send the commands on a Twisted reactor; returns the latencies and status counts."""
    import treq
    from twisted.internet import reactor, task
    from twisted.web.client import HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = args.connections
    pool.retryAutomatically = False
    rnd = random.Random(args.seed)
    fleet = [(k, pid) for k, ids in enumerate(piles) for pid in ids]
    latency: dict[str, list[float]] = {"local": [], "routed": []}
    slow: list[tuple[float, str, int, float]] = []  # (sent at, kind, instance asked, ms)
    status: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {"local": Counter(), "routed": Counter()}
    state = {"sent": 0, "done": 0, "t0": 0.0, "p0": 0.0, "sending": True}

    def send() -> None:
        i = state["sent"] % len(rests)
        holder, pid = rnd.choice(fleet)
        kind = "local" if holder == i else "routed"
        state["sent"] += 1
        started = time.perf_counter()
        url = f"http://127.0.0.1:{rests[i]}/proxy/12?wait={args.wait:g}"
        d = treq.post(url, json={"id": pid, "gunId": "01"}, pool=pool, timeout=args.wait + 10)

        def answered(response: Any) -> Any:
            def read(body: bytes) -> None:
                ms = (time.perf_counter() - started) * 1000
                code = str(response.code)
                if response.code == 200 and b'"reply"' not in body:
                    code = "200-no-reply"
                status[code] += 1
                by_kind[kind][code] += 1
                if code == "200":
                    latency[kind].append(ms)
                if ms > args.slow_ms:
                    slow.append((round(started - state["p0"], 3), kind, i, round(ms, 1)))

            return response.content().addCallback(read)

        def failed(failure: Any) -> None:
            name = failure.type.__name__ if failure.type else "error"
            status[name] += 1
            by_kind[kind][name] += 1

        def finished(_: object) -> None:
            state["done"] += 1
            if not state["sending"] and state["done"] >= state["sent"]:
                reactor.stop()

        d.addCallbacks(answered, failed).addErrback(failed).addBoth(finished)

    def tick() -> None:
        elapsed = time.monotonic() - state["t0"]
        if elapsed >= args.duration:
            state["sending"] = False
            loop.stop()
            if state["done"] >= state["sent"]:
                reactor.stop()
            else:  # the stragglers get their own wait and a margin, then the run ends
                reactor.callLater(args.wait + 15, lambda: reactor.running and reactor.stop())
            return
        for _ in range(int(elapsed * args.rate) - state["sent"]):
            send()

    loop = task.LoopingCall(tick)

    def begin() -> None:
        state["t0"], state["p0"] = time.monotonic(), time.perf_counter()
        loop.start(0.005)

    reactor.callWhenRunning(begin)
    reactor.run()
    return {
        "sent": state["sent"],
        "finished": state["done"],
        "seconds": round(time.monotonic() - state["t0"], 2),
        "latency": latency,
        "status": dict(status),
        "statusLocal": dict(by_kind["local"]),
        "statusRouted": dict(by_kind["routed"]),
        "slow": slow,
    }


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Counts and p50/p99 of local and routed commands, and routed minus local."""
    out: dict[str, Any] = {k: raw[k] for k in ("sent", "finished", "seconds", "status", "slow")}
    out["answered"] = raw["status"].get("200", 0)
    out["errors"] = {k: v for k, v in raw["status"].items() if k != "200"}
    out["allAnswered"] = out["answered"] == raw["sent"]
    for kind in ("local", "routed"):
        ms = raw["latency"][kind]
        out[kind] = {
            "count": sum(raw["status" + kind.capitalize()].values()),
            "answered": len(ms),
            "p50": round(percentile(ms, 50) or 0, 2) if ms else None,
            "p99": round(percentile(ms, 99) or 0, 2) if ms else None,
            "max": round(max(ms), 2) if ms else None,
        }
    local, routed = out["local"], out["routed"]
    out["routedMinusLocal"] = {
        q: round(routed[q] - local[q], 2) if routed[q] is not None and local[q] is not None else None
        for q in ("p50", "p99")
    }
    return out


def gc_pauses(work: Path, since: float) -> list[list[tuple[float, int, float]]]:
    """Each proxy's collector pauses from ``since`` (unix s) on: (seconds after it, generation, ms)."""
    out = []
    for log in sorted(work.glob("gc-*.log")):
        lines = log.read_text().splitlines()
        if not lines or "run_proxy.py" not in lines[0]:
            continue
        ps = []
        for line in lines[1:]:
            at, what, ms = line.split()
            if what.startswith("gen") and float(at) >= since:
                ps.append((round(float(at) - since, 2), int(what[3:]), float(ms)))
        out.append(ps)
    return out


def main() -> None:
    """Start the cluster and the simulators, send the commands, print the table."""
    p = argparse.ArgumentParser()
    p.add_argument("--instances", type=int, default=3)
    p.add_argument("--piles", type=int, default=2000, help="simulated piles per instance")
    p.add_argument("--rate", type=float, default=200, help="commands per second over all instances")
    p.add_argument("--duration", type=float, default=20, help="seconds of sending")
    p.add_argument("--ramp", type=float, default=500, help="piles started per second by each simulator")
    p.add_argument("--ramp-limit", type=float, default=180, help="registry wait limit (s)")
    p.add_argument("--warmup", type=float, default=10, help="seconds between the full registry and sending")
    p.add_argument("--wait", type=float, default=5, help="the ?wait= of each command (s)")
    p.add_argument("--connections", type=int, default=64, help="persistent HTTP connections per instance")
    p.add_argument("--slow-ms", type=float, default=50, help="list commands slower than this in the JSON")
    p.add_argument("--cluster-ttl", type=float, default=15)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default="")
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--gc-log", action="store_true", help="record the garbage collector's pauses")
    p.add_argument("--gc-freeze-at", type=float, default=0, help="gc.freeze() in each proxy after S s")
    p.add_argument(
        "--gc-freeze-interval", type=float, default=None, help="the proxies' --gcFreezeInterval (s)"
    )
    args = p.parse_args()
    raise_open_file_limit()
    machine = print_machine()
    n = args.instances
    print(
        f"cluster: {n} instances x {args.piles} piles, {args.rate:g} commands/s for {args.duration:g} s "
        f"(POST /proxy/12?wait={args.wait:g}, round-robin over the instances)"
    )
    procs: list[Proc] = []
    sims: list[Sim] = []
    seen: list[dict[str, Any]] = [{} for _ in range(n)]
    with workdir(args.keep_logs) as work:
        if args.gc_log or args.gc_freeze_at:
            probe = str(Path(__file__).resolve().parent / "gcprobe")
            old = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = probe + (os.pathsep + old if old else "")
            os.environ["YKC_GC_LOG_DIR"] = str(work)
            if args.gc_freeze_at:
                os.environ["YKC_GC_FREEZE_AT"] = f"{args.gc_freeze_at:g}"
        try:
            nats, nats_port, _ = start_nats(work, jetstream=True)
            procs.append(nats)
            url = f"nats://127.0.0.1:{nats_port}"
            ports: list[tuple[int, int]] = []
            for k in range(n):
                options = ["--messagingServerType", "none", "--cluster", url, "--instanceId", f"i{k}"]
                options += ["--clusterTtl", f"{args.cluster_ttl:g}"]
                if args.gc_freeze_interval is not None:
                    options += ["--gcFreezeInterval", f"{args.gc_freeze_interval:g}"]
                proc, tcp, rest = start_proxy(work, options, name=f"proxy-{k}")
                procs.append(proc)
                ports.append((tcp, rest))
            piles = [[f"{ID_BASE + k * ID_STRIDE + i:014d}" for i in range(args.piles)] for k in range(n)]
            hold = args.ramp_limit + args.duration + 600  # the simulators outlive the run; stopped at the end
            for k, (tcp, _) in enumerate(ports):
                sim_options = [
                    "--piles", str(args.piles), "--id-base", str(ID_BASE + k * ID_STRIDE),
                    "--ramp", f"{args.ramp:g}", "--ramp-timeout", f"{args.ramp_limit:g}",
                    "--warmup", "0", "--duration", f"{hold:g}", "--seed", str(args.seed + k),
                ]  # fmt: skip
                sim = Sim(work, tcp, sim_options, name=f"sim-{k}")
                sims.append(sim)
                threading.Thread(target=drain, args=(sim, seen[k]), daemon=True).start()
            registered = wait_registry(ports[0][1], n * args.piles, args.ramp_limit)
            print(f"registry shows all {n * args.piles} piles after {registered:.1f} s")
            time.sleep(args.warmup)  # the logins' aftermath (first heartbeats, registry writes) settles
            meters = [CpuMeter(proc) for proc in procs]
            for m in meters:
                m.start()
            sending = time.time()
            raw = load([rest for _, rest in ports], piles, args)
            cpu = {m.proc.name: round(m.stop(), 3) for m in meters}
            pauses = gc_pauses(work, sending) if args.gc_log or args.gc_freeze_at else None
        finally:
            for sim in sims:
                sim.proc.stop()
            for proc in reversed(procs):
                proc.stop()
    result = summarize(raw)
    result["registrySeconds"] = round(registered, 1)
    result["allLoggedInSeconds"] = [s.get("allLoggedInSeconds") for s in seen]
    result["cpu"] = cpu
    if pauses is not None:
        result["gcPauses"] = pauses
    print()
    print(f"{'':<8} {'sent':>6} {'200':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    nan = float("nan")
    for kind in ("local", "routed"):
        r = result[kind]
        print(
            f"{kind:<8} {r['count']:>6} {r['answered']:>6} {r['p50'] or nan:>8.2f} "
            f"{r['p99'] or nan:>8.2f} {r['max'] or nan:>8.2f}"
        )
    d = result["routedMinusLocal"]
    print(f"routed - local: p50 {d['p50']} ms, p99 {d['p99']} ms")
    print(f"sent {result['sent']}, answered {result['answered']}, errors {result['errors'] or 'none'}")
    print("CPU share of one core: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in cpu.items()))
    for i, ps in enumerate(pauses or []):
        shown = ", ".join(f"{p[0]:.1f} s gen{p[1]} {p[2]:.0f} ms" for p in ps) or "none over 5 ms"
        print(f"proxy {i} collector pauses while sending (s into the sending): {shown}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": machine, "args": vars(args), "result": result}, indent=1)
        )


if __name__ == "__main__":
    main()
