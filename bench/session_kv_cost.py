"""What keeping the charging sessions in a JetStream KV bucket would cost, against asking by request.

Cluster mode answers ``GET /sessions/<tradeSeq>`` for an order another
instance saw by asking the other instances (a NATS request, only when such a
read comes).  The alternative is a KV bucket every instance writes its orders
to, kept current: one write per change of an order's energy, that is per 0x13
of each charging gun (every 15 s).  This bench does those writes for
``--piles`` piles of which ``--charging`` charge: ``piles x charging / 15``
puts per second of a ``--value-bytes`` document (a session with its timeline),
for ``--seconds``, from one nats-py client on its own asyncio loop (as the proxy's
cluster link is), to a ``nats-server -js``; it reports the puts acknowledged,
their latency, and the CPU of the server and of the writing process.  Then, in
the same run, the requests: ``--lookups`` session lookups by NATS request to a
responder answering with a document of the same size, and their CPU.

    python bench/session_kv_cost.py [--piles 10000] [--charging 0.5] [--seconds 30] [--value-bytes 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CpuMeter, print_machine, start_nats, workdir  # noqa: E402


def process_cpu() -> float:
    """CPU seconds of this process so far (all threads)."""
    t = os.times()
    return t.user + t.system


async def puts(url: str, rate: float, seconds: float, size: int) -> dict[str, Any]:
    """``rate`` puts per second of ``size``-byte values for ``seconds``, keys cycling over the orders."""
    import nats

    nc = await nats.connect(url)
    kv = await nc.jetstream().create_key_value(bucket="bench_sessions", history=1)
    value = json.dumps({"timeline": "x" * max(0, size - 16)}).encode()[:size]
    orders = max(1, int(rate * 15))  # each order written once per 15 s
    latencies: list[float] = []
    failures = 0
    pending: set[asyncio.Task[None]] = set()

    async def put(key: str) -> None:
        nonlocal failures
        started = time.perf_counter()
        try:
            await kv.put(key, value)
        except Exception:  # noqa: BLE001 - counted
            failures += 1
            return
        latencies.append((time.perf_counter() - started) * 1000)

    t0 = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - t0) < seconds:
        for _ in range(int(elapsed * rate) - sent):
            task = asyncio.ensure_future(put(f"s.{sent % orders:08d}"))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.005)
    if pending:
        await asyncio.wait(set(pending), timeout=30)
    info = await nc.jetstream().stream_info("KV_bench_sessions")
    await nc.close()
    latencies.sort()
    return {
        "sent": sent,
        "acked": len(latencies),
        "failed": failures,
        "p50ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2) if latencies else None,
        "storeBytes": info.state.bytes,
    }


async def lookups(url: str, count: int, size: int) -> dict[str, Any]:
    """``count`` requests answered by a responder with a ``size``-byte document, one after another."""
    import nats

    server = await nats.connect(url)
    answer = json.dumps({"status": 200, "session": {"timeline": "x" * max(0, size - 40)}}).encode()

    async def respond(msg: Any) -> None:
        await msg.respond(answer)

    await server.subscribe("bench.route.sessions", cb=respond)
    client = await nats.connect(url)
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        await client.request(
            "bench.route.sessions", json.dumps({"tradeSeq": f"{i:032d}"}).encode(), timeout=5
        )
        latencies.append((time.perf_counter() - started) * 1000)
    await client.close()
    await server.close()
    latencies.sort()
    return {
        "count": count,
        "p50ms": round(statistics.median(latencies), 2),
        "p99ms": round(latencies[-max(1, count // 100)], 2),
    }


def main() -> None:
    """The puts, then the lookups, each with the CPU of the server and of this process."""
    p = argparse.ArgumentParser()
    p.add_argument("--piles", type=int, default=10000, help="piles of one instance")
    p.add_argument("--charging", type=float, default=0.5, help="share of them charging")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--value-bytes", type=int, default=3000, help="bytes of a session document")
    p.add_argument("--lookups", type=int, default=1000)
    p.add_argument("--json", default="")
    args = p.parse_args()
    machine = print_machine()
    rate = args.piles * args.charging / 15
    print(
        f"session KV: {rate:g} puts/s of {args.value_bytes} bytes for {args.seconds:g} s, "
        f"then {args.lookups} lookups"
    )
    with workdir() as work:
        nats_proc, port, _ = start_nats(work, jetstream=True)
        url = f"nats://127.0.0.1:{port}"
        try:
            server_cpu, c0, t0 = CpuMeter(nats_proc), process_cpu(), time.monotonic()
            server_cpu.start()
            written = asyncio.run(puts(url, rate, args.seconds, args.value_bytes))
            written["serverCpu"] = round(server_cpu.stop(), 3)
            written["writerCpu"] = round((process_cpu() - c0) / (time.monotonic() - t0), 3)
            server_cpu, c0 = CpuMeter(nats_proc), process_cpu()
            server_cpu.start()
            t0 = time.monotonic()
            asked = asyncio.run(lookups(url, args.lookups, args.value_bytes))
            took = time.monotonic() - t0
            asked["serverCpuSeconds"] = round(server_cpu.stop() * took, 3)
            asked["clientsCpuSeconds"] = round(process_cpu() - c0, 3)
        finally:
            nats_proc.stop()
    print(f"puts: {json.dumps(written)}")
    print(f"lookups: {json.dumps(asked)}")
    per = (asked["serverCpuSeconds"] + asked["clientsCpuSeconds"]) / args.lookups * 1000
    print(
        f"KV: nats-server {100 * written['serverCpu']:.1f} % and the writer "
        f"{100 * written['writerCpu']:.1f} % "
        f"of a core, all the time; requests: {per:.2f} ms of CPU per lookup (both ends and the server), "
        "only when one is made"
    )
    if args.json:
        out = {"machine": machine, "args": vars(args), "puts": written, "lookups": asked}
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
