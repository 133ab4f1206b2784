"""Burst: the highest sustained rate of uplink frames decoded and forwarded.

The simulator (its own process) logs ``--piles`` piles in, then sends 0x13
frames in steps of rising offered rate (``RATExSECONDS``; ``max`` = as fast
as the server reads).  A sampler polls the target's own counter every
0.25 s; a step's rate is measured over its last ``SECONDS - settle``
seconds:

- reference (bare framing): frames split, from its /stats;
- proxy, no consumer: frames received and decoded (``ykc_frames_in`` of /metrics);
- proxy → NATS: messages published, from nats-server's /varz ``in_msgs``;
- proxy → HTTP: messages the consumer got (one POST each, or ``--http-batch N``
  for the opt-in batch mode), and treq's own ceiling against the same consumer.

A step is *sustained* when the target's rate is at least 95 % of the rate
the simulator really sent in it.  The result per target is its highest
sustained step and its rate in the ``max`` step.

The cost of durability (issue 4) is printed at the end when a forwarder ran
both ways in the same run: nats against nats-mem, http against http-mem
(``--dataDir ''``), as the ratio of their ``max``-step and sustained rates.

    python bench/burst.py [--targets reference,none,nats,nats-mem,http,http-mem] [--http-batch 0]
                          [--reactors default,uvloop] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    PYTHON,
    ROOT,
    CpuMeter,
    Proc,
    Sim,
    consumer_messages,
    env,
    nats_in_msgs,
    print_machine,
    proxy_frames_in,
    raise_open_file_limit,
    ratio,
    reference_frames,
    start_consumer,
    start_nats_proxy,
    start_proxy,
    start_reference,
    workdir,
)

FAST_STEPS = "5000x6,10000x6,15000x6,20000x6,25000x6,30000x6,40000x6,maxx8"
HTTP_STEPS = "500x6,1000x6,1500x6,2000x6,2500x6,3000x6,maxx8"
BATCH_STEPS = "2500x6,5000x6,10000x6,15000x6,20000x6,maxx8"


class Sampler(threading.Thread):
    """Polls ``counter()`` every ``interval`` seconds: a list of (monotonic time, count)."""

    def __init__(self, counter: Callable[[], int], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.counter = counter
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.samples.append((time.monotonic(), self.counter()))
            except OSError:
                pass
            self.done.wait(self.interval)

    def rate(self, start: float, end: float) -> float:
        """Counted per second between two moments (from the samples inside).

        A saturated target answers its counter slowly (its reactor is busy
        reading), so a short window may hold fewer than two samples; then the
        nearest samples around it are used.
        """
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            before = [s for s in self.samples if s[0] < start]
            after = [s for s in self.samples if s[0] > end]
            inside = before[-1:] + inside + after[:1]
        if len(inside) < 2:
            return float("nan")
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0)


def run_target(target: str, reactor: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One simulator run of burst steps against ``target``."""
    extra: list[Proc] = []
    steps = args.steps
    name = f"{target}-{reactor}"
    if target == "reference":
        proc, port, stats = start_reference(work, reactor)
        counter: Callable[[], int] = lambda: reference_frames(stats)  # noqa: E731
    elif target == "none":
        proc, port, rest = start_proxy(
            work, ["--messagingServerType", "none"], reactor, name=name, profile=args.profile
        )
        counter = lambda: proxy_frames_in(rest)  # noqa: E731
    elif target in ("nats", "nats-mem"):
        proc, port, rest, nats, monitor = start_nats_proxy(work, target, reactor, name, args.profile)
        extra.append(nats)
        counter = lambda: nats_in_msgs(monitor)  # noqa: E731
    elif target in ("http", "http-batch", "http-mem"):
        consumer, cport = start_consumer(work)
        extra.append(consumer)
        options = ["--messagingServerType", "http", "--servers", f"http://127.0.0.1:{cport}"]
        options += ["--httpConcurrency", str(args.http_concurrency)]
        if target == "http-mem":
            options += ["--dataDir", ""]
        if target == "http-batch":
            options += ["--httpBatch", str(args.http_batch)]
            steps = args.batch_steps
        else:
            steps = args.http_steps
        proc, port, rest = start_proxy(work, options, reactor, name=name, profile=args.profile)
        counter = lambda: consumer_messages(cport)  # noqa: E731
    else:
        raise ValueError(target)
    sim_options = [
        "--piles", str(args.piles), "--ramp", "1000", "--warmup", "1", "--idle-interval", "0",
        "--heartbeat", "10", "--reply-timeout", "30", "--burst", steps,
    ]  # fmt: skip
    sampler = Sampler(counter)
    sampler.start()
    sim = Sim(work, port, sim_options, name=f"sim-burst-{name}", reactor=args.sim_reactor)
    cpu = CpuMeter(proc)
    marks: list[dict[str, Any]] = []
    out: dict[str, Any] = {"target": target, "reactor": reactor}
    try:
        for event in sim.events(timeout=600):
            if event["event"] == "window_start":
                cpu.start()
            elif event["event"] == "step_start":
                marks.append({"rate": event["rate"], "seconds": event["seconds"], "t0": time.monotonic()})
            elif event["event"] == "step_end":
                marks[-1].update(t1=time.monotonic(), sentPerSecond=event["sentPerSecond"])
            elif event["event"] == "window_end":
                out["cpu"] = round(cpu.stop(), 3)
                out["peakRssMiB"] = round(proc.hwm_mib(), 1)
        time.sleep(0.5)
    finally:
        sampler.done.set()
        sampler.join()
        sim.proc.stop()
        proc.stop()
        treq_rate = None
        if target in ("http", "http-mem") and args.treq:
            treq_rate = treq_ceiling(extra[0], args, work)
        for p in extra:
            p.stop()
    results = []
    for m in marks:
        if "t1" not in m:
            continue
        got = sampler.rate(m["t0"] + args.settle, m["t1"])
        results.append(
            {
                "offered": m["rate"],
                "sent": round(m["sentPerSecond"], 1),
                "processed": round(got, 1),
                "sustained": got >= 0.95 * m["sentPerSecond"],
            }
        )
    out["steps"] = results
    sustained = [r["processed"] for r in results if r["sustained"] and r["offered"] is not None]
    out["highestSustained"] = max(sustained) if sustained else 0.0
    maxed = [r["processed"] for r in results if r["offered"] is None]
    out["maxStep"] = maxed[-1] if maxed else None
    out["best"] = max([out["highestSustained"], *(m for m in maxed if m == m)])
    if treq_rate is not None:
        out["treqCeiling"] = round(treq_rate, 1)
    return out


def treq_ceiling(consumer: Proc, args: argparse.Namespace, work: Path) -> float:
    """POSTs per second that treq alone reaches against the consumer (same run)."""
    port = consumer.argv[consumer.argv.index("--port") + 1]
    argv = [PYTHON, str(ROOT / "bench" / "treq_ceiling.py"), "--url", f"http://127.0.0.1:{port}"]
    argv += ["--seconds", "8", "--concurrency", str(args.http_concurrency)]
    done = subprocess.run(argv, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["perSecond"])


def cost_of_durability(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each forwarder run both ways in this run (nats/nats-mem, http/http-mem):
    frames/s with the durable outbox against the same forwarder with ``--dataDir ''``."""
    out = []
    for durable, memory in (("nats", "nats-mem"), ("http", "http-mem")):
        for r in results:
            if r["target"] != durable:
                continue
            m = next((x for x in results if x["target"] == memory and x["reactor"] == r["reactor"]), None)
            if m is None:
                continue
            out.append(
                {
                    "durable": durable,
                    "reactor": r["reactor"],
                    "durableMax": r["maxStep"] or 0.0,
                    "memoryMax": m["maxStep"] or 0.0,
                    "maxRatio": ratio(r["maxStep"] or 0.0, m["maxStep"] or 0.0),
                    "durableSustained": r["highestSustained"],
                    "memorySustained": m["highestSustained"],
                    "sustainedRatio": ratio(r["highestSustained"], m["highestSustained"]),
                }
            )
    return out


def main() -> None:
    """Run every target and print the table."""
    p = argparse.ArgumentParser()
    p.add_argument("--piles", type=int, default=100)
    p.add_argument("--targets", default="reference,none,nats,nats-mem,http,http-mem")
    p.add_argument("--steps", default=FAST_STEPS)
    p.add_argument("--http-steps", default=HTTP_STEPS)
    p.add_argument("--batch-steps", default=BATCH_STEPS)
    p.add_argument("--http-batch", type=int, default=0, help="also measure --httpBatch N (target http-batch)")
    p.add_argument("--http-concurrency", type=int, default=64)
    p.add_argument("--no-treq", dest="treq", action="store_false")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--reactors", default="default")
    p.add_argument("--sim-reactor", default="default")
    p.add_argument("--profile", default="")
    p.add_argument("--json", default="")
    p.add_argument("--keep-logs", action="store_true")
    args = p.parse_args()
    raise_open_file_limit()
    machine = print_machine()
    targets = args.targets.split(",")
    if args.http_batch and "http-batch" not in targets:
        targets.append("http-batch")
    results = []
    with workdir(args.keep_logs) as work:
        for reactor in args.reactors.split(","):
            for target in targets:
                if target == "reference" and reactor != args.reactors.split(",")[0]:
                    continue
                r = run_target(target, reactor, args, work)
                results.append(r)
                print(json.dumps(r))
    ref = next((r for r in results if r["target"] == "reference"), None)
    print()
    print(
        f"{'target':<11} {'reactor':<8} {'sustained/s':>12} {'max step/s':>11} {'vs ref':>7} {'CPU':>6} extra"
    )
    for r in results:
        rel = ratio(r["best"], ref["best"]) if ref else float("nan")
        r["vsReference"] = rel
        extra = ""
        if "treqCeiling" in r:
            r["vsTreq"] = ratio(r["best"], r["treqCeiling"])
            extra = f"treq ceiling {r['treqCeiling']:.0f}/s, ratio {r['vsTreq']:.2f}"
        print(
            f"{r['target']:<11} {r['reactor']:<8} {r['highestSustained']:>12.0f} {r['maxStep'] or 0:>11.0f} "
            f"{rel:>7.2f} {100 * r.get('cpu', 0):>5.0f}% {extra}"
        )
    durability = cost_of_durability(results)
    if durability:
        print()
        print("Cost of durability (same run): frames/s forwarded with the outbox vs --dataDir ''")
        for d in durability:
            print(
                f"  {d['durable']:<5} {d['reactor']:<8} max step {d['durableMax']:>8.0f}"
                f" vs {d['memoryMax']:>8.0f}/s = {d['maxRatio']:.2f};"
                f" sustained {d['durableSustained']:>8.0f} vs {d['memorySustained']:>8.0f}/s"
                f" = {d['sustainedRatio']:.2f}"
            )
    if args.json:
        report = {"machine": machine, "args": vars(args), "results": results, "durability": durability}
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
