"""Pipelined heartbeats: the server's cost of one 0x03 → 0x04, against the reference.

A small load client (its own process, plain non-blocking sockets on one
``selectors`` loop, so that it stays cheaper than the servers it drives) logs
``--piles`` piles in, then keeps ``--inflight`` heartbeats (0x03) in flight
on each: every 0x04 read is answered at once with the next 0x03.  The server
is saturated; nothing else runs in it.  Both targets run in the same run, in
alternating rounds:

- ``reference``: ``bench/refserver.py`` (bare framing, answers 0x03 by copying the pile id);
- ``none``: the proxy (``twistd -n ykcproxy``) with no consumer (``--messagingServerType none``:
  standalone, auto answers on) and ``--maxFrameRate 0``.

Per round and target: replies/s the client read over ``--seconds`` (after
``--warmup``), the server's CPU share of one core over the same window (from
/proc) and so its CPU µs per heartbeat.  Printed: every round, then the
medians per target and the proxy/reference ratio of the medians.

    python bench/heartbeat.py [--piles 200] [--inflight 16] [--rounds 5] [--seconds 5]
                              [--targets reference,none] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    PYTHON,
    CpuMeter,
    Proc,
    print_machine,
    raise_open_file_limit,
    ratio,
    start_proxy,
    start_reference,
    workdir,
)

LOGIN_REPLY, HEARTBEAT_REPLY = 0x02, 0x04


def pile_id(n: int) -> str:
    """The 14-digit id of simulated pile ``n``."""
    return f"3201{n:010d}"


def client(port: int, piles: int, inflight: int, warmup: float, seconds: float, each: bool) -> None:
    """The load client: JSON lines on stdout (``ready``, ``start``, ``end`` with the count).

    The heartbeats that answer the replies of one read go out in one ``send``,
    or (``each``) one ``send`` per heartbeat, as separate piles' writes would.
    """
    from ykcproxy.sim.link import PileLink
    from ykcproxy.wire.examples import example

    sel = selectors.DefaultSelector()
    link = PileLink(keep=False)
    conns = []
    for n in range(piles):
        pid = pile_id(n)
        login = link.frame(0x01, example(0x01, pid))
        beats = [link.frame(0x03, example(0x03, pid), seq) for seq in range(inflight)]
        size = len(beats[0])
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        # [socket, unread bytes, the heartbeats twice over, frame size, next heartbeat, logged in]
        conn: list[Any] = [sock, b"", b"".join(beats) * 2, size, 0, False]
        conns.append(conn)
        sel.register(sock, selectors.EVENT_READ, conn)
        sock.send(login)
    replies = other = logged_in = 0

    def emit(event: str, **fields: Any) -> None:
        print(json.dumps({"event": event, **fields}), flush=True)

    def pump(until: float) -> None:
        """Read and answer until ``until`` (monotonic), or until every pile is logged in."""
        nonlocal replies, other, logged_in
        select, monotonic = sel.select, time.monotonic
        while monotonic() < until if until else logged_in < piles:
            for key, _ in select(0.1):
                conn = key.data
                sock = conn[0]
                data = sock.recv(65536)
                if not data:
                    raise SystemExit("the server closed a connection")
                buf = conn[1] + data if conn[1] else data
                pos, end, beats, send = 0, len(buf), 0, 0
                while end - pos >= 6 and end - pos >= buf[pos + 1] + 4:
                    code = buf[pos + 5]
                    if code == HEARTBEAT_REPLY:
                        beats += 1
                    elif code == LOGIN_REPLY and not conn[5]:
                        conn[5] = True
                        logged_in += 1
                        send += inflight
                    else:
                        other += 1
                    pos += buf[pos + 1] + 4
                conn[1] = buf[pos:]
                send += beats
                replies += beats
                if send:
                    first, size = conn[4], conn[3]
                    if each:
                        sent = sum(
                            sock.send(conn[2][i * size : (i + 1) * size]) for i in range(first, first + send)
                        )
                    else:
                        sent = sock.send(conn[2][first * size : (first + send) * size])
                    if sent != send * size:
                        raise SystemExit("a socket buffer of the client filled up")
                    conn[4] = (first + send) % inflight

    pump(0.0)  # until every pile is logged in
    emit("ready", piles=logged_in)
    pump(time.monotonic() + warmup)
    base, t0 = replies, time.monotonic()
    emit("start")
    pump(t0 + seconds)
    t1 = time.monotonic()
    emit("end", replies=replies - base, seconds=t1 - t0, other=other)
    for conn in conns:
        conn[0].close()


def round_against(proc: Proc, port: int, args: argparse.Namespace, work: Path, name: str) -> dict[str, Any]:
    """One client run against a server already listening on ``port``."""
    argv = [PYTHON, __file__, "--client", str(port), "--piles", str(args.piles)]
    argv += ["--inflight", str(args.inflight), "--warmup", str(args.warmup), "--seconds", str(args.seconds)]
    argv += ["--write-each"] if args.write_each else []
    load = Proc(name, argv, work / f"{name}.err", stdout=subprocess.PIPE, stderr=None)
    cpu = CpuMeter(proc)
    load_cpu = CpuMeter(load)
    out: dict[str, Any] = {}
    stdout = load.popen.stdout
    assert stdout is not None
    try:
        for raw in stdout:
            event = json.loads(raw)
            if event["event"] == "start":
                cpu.start()
                load_cpu.start()
            elif event["event"] == "end":
                share, client_share = cpu.stop(), load_cpu.stop()
                rate = event["replies"] / event["seconds"]
                out = {
                    "repliesPerSecond": round(rate, 1),
                    "cpu": round(share, 3),
                    "usPerReply": round(share * 1e6 / rate, 2) if rate else float("nan"),
                    "clientCpu": round(client_share, 3),
                    "otherFrames": event["other"],
                }
        load.popen.wait(30)
    finally:
        load.stop()
    if not out:
        raise RuntimeError(f"the load client ended without a result (see {load.log})")
    return out


def main() -> None:
    """Start the targets, run the rounds, print the table."""
    p = argparse.ArgumentParser()
    p.add_argument("--piles", type=int, default=200)
    p.add_argument("--inflight", type=int, default=16, help="heartbeats in flight per pile")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0, help="measured window of a round")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--targets", default="reference,none")
    p.add_argument("--reactor", default="default")
    p.add_argument("--write-each", action="store_true", help="the client sends each heartbeat on its own")
    p.add_argument("--json", default="")
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--client", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        client(args.client, args.piles, args.inflight, args.warmup, args.seconds, args.write_each)
        return
    raise_open_file_limit()
    machine = print_machine()
    print(
        f"{args.piles} piles x {args.inflight} heartbeats in flight,"
        f" {args.rounds} rounds of {args.seconds:g} s"
    )
    targets = args.targets.split(",")
    rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    with workdir(args.keep_logs) as work:
        servers: dict[str, tuple[Proc, int]] = {}
        try:
            for target in targets:
                if target == "reference":
                    proc, port, _ = start_reference(work, args.reactor)
                elif target == "none":
                    options = ["--messagingServerType", "none"]
                    proc, port, _ = start_proxy(work, options, args.reactor, name="proxy-none")
                else:
                    raise ValueError(target)
                servers[target] = (proc, port)
            for n in range(args.rounds):
                for target in targets:
                    proc, port = servers[target]
                    r = round_against(proc, port, args, work, f"load-{target}-{n}")
                    rounds[target].append(r)
                    print(json.dumps({"round": n, "target": target, **r}), flush=True)
        finally:
            for proc, _ in servers.values():
                proc.stop()
    medians = {
        t: {k: statistics.median(r[k] for r in rs) for k in ("repliesPerSecond", "cpu", "usPerReply")}
        for t, rs in rounds.items()
    }
    print()
    print(f"{'target':<10} {'replies/s':>10} {'CPU':>6} {'µs/reply':>9}  (medians of {args.rounds})")
    for t, m in medians.items():
        print(f"{t:<10} {m['repliesPerSecond']:>10.0f} {100 * m['cpu']:>5.0f}% {m['usPerReply']:>9.2f}")
    summary: dict[str, Any] = {}
    if "reference" in medians and "none" in medians:
        ref, ours = medians["reference"], medians["none"]
        summary = {
            "repliesRatio": ratio(ours["repliesPerSecond"], ref["repliesPerSecond"]),
            "costRatio": ratio(ours["usPerReply"], ref["usPerReply"]),
        }
        print(
            f"proxy/reference: replies/s {summary['repliesRatio']:.2f}, "
            f"CPU per heartbeat {summary['costRatio']:.2f}x"
        )
    if args.json:
        report = {"machine": machine, "args": vars(args), "rounds": rounds, "medians": medians, **summary}
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
