"""Benchmark: where to host the asyncio NATS client in a Twisted process.

Not a test.  Measures, each variant in its own subprocess against one real
nats-server that this script starts:

1. core-NATS publishing with per-message confirmation by coalesced flushes
   (PING/PONG), ~400-byte JSON payloads:

   a. ``thread``          NatsPublisher: nats-py on an asyncio loop in its own
                          thread, Twisted's default (epoll) reactor in the main thread
   a'. ``thread+uvloop``  the same, the NATS thread's loop on uvloop
   b. ``asyncio``         nats-py directly on twisted.internet.asyncioreactor
                          (one loop, no thread hop), the same batching and
                          coalesced flushes, Deferreds via Deferred.fromFuture
   b'. ``asyncio+uvloop`` the same on uvloop
   c. ``asyncio/task``    the naive direct way: one asyncio Task per publish
                          wrapped with Deferred.fromFuture (and coalesced flushes)

   "max": a window of 20,000 unconfirmed messages, as fast as it goes;
   "paced": 20,000 msg/s for a few seconds, publish->confirm latency.

2. TCP echo round trip (64 bytes, one connection, a blocking client in this
   process) against a Twisted echo server on epoll / asyncio / asyncio+uvloop:
   what the pile side would pay for switching reactors.

Usage::

    python bench/nats_hosting.py [--count 100000] [--repeat 5]

Prints medians over the repetitions and ratios to the ``thread`` variant.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

PUBLISH_VARIANTS = ["thread", "thread+uvloop", "asyncio", "asyncio+uvloop", "asyncio/task"]
ECHO_VARIANTS = ["epoll", "asyncio", "asyncio+uvloop"]
SUBJECT_PREFIX = "bench.ykc"


def payload(i: int) -> bytes:
    """A ~400-byte JSON message like a 0x13 real-time record."""
    body = {
        "header": {
            "length": 64,
            "seq": i & 0xFFFF,
            "encrypted": False,
            "frameId": "13",
            "messageId": f"32010200000001-13-{i:012d}",
            "receivedAt": 1763900000000 + i,
            "raw": "6840" + "00" * 40,
        },
        "tradeSeq": "32010200000001012311241200000001",
        "id": "32010200000001",
        "gunId": "01",
        "status": 3,
        "reset": 0,
        "plugged": 1,
        "ov": 3800,
        "oc": 1200,
        "lineTemp": 75,
        "lineCode": "0000000000000000",
        "soc": 55,
        "chargedAmount": 12345,
    }
    return json.dumps(body, separators=(",", ":")).encode()


# ----------------------------------------------------------------------
# children


def install_reactor(kind: str) -> Any:
    """Install the reactor for ``kind`` and return it."""
    if kind.startswith("asyncio"):
        import asyncio

        from twisted.internet import asyncioreactor

        if "uvloop" in kind:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    from twisted.internet import reactor

    return reactor


class DirectPublisher:
    """nats-py on the reactor's own asyncio loop: same batching and coalesced,
    correctly ordered flushes as NatsPublisher, minus the thread hop."""

    def __init__(self, nc: Any, per_message_task: bool) -> None:
        import asyncio

        self.nc = nc
        self.loop = asyncio.get_event_loop()
        self.per_message_task = per_message_task
        self.inbox: list[tuple[str, bytes, Any]] = []
        self.scheduled = False
        self.unconfirmed: list[Any] = []
        self.confirming = False

    def publish(self, subject: str, data: bytes) -> Any:
        from twisted.internet.defer import Deferred

        d: Deferred[None] = Deferred()
        if self.per_message_task:
            fut = self.loop.create_task(self.nc.publish(subject, data))
            Deferred.fromFuture(fut).addCallback(lambda _: self._published([d]))
            return d
        self.inbox.append((subject, data, d))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._kick)
        return d

    def _kick(self) -> None:
        self.scheduled = False
        batch, self.inbox = self.inbox, []
        self.loop.create_task(self._pump(batch))

    async def _pump(self, batch: list[tuple[str, bytes, Any]]) -> None:
        for subject, data, _ in batch:
            await self.nc.publish(subject, data)
        self._published([d for _, _, d in batch])

    def _published(self, ds: list[Any]) -> None:
        from twisted.internet.defer import Deferred

        self.unconfirmed.extend(ds)
        if not self.confirming:
            self.confirming = True
            Deferred.fromFuture(self.loop.create_task(self._confirm()))

    async def _confirm(self) -> None:
        from ykcproxy.forward.nats import NatsPublisher

        while self.unconfirmed:
            batch, self.unconfirmed = self.unconfirmed, []
            await NatsPublisher._written(self.nc)
            await self.nc.flush(timeout=10)
            for d in batch:
                d.callback(None)
        self.confirming = False


def child_publish(
    variant: str, port: int, count: int, mode: str, rate: int, seconds: float
) -> dict[str, Any]:
    reactor = install_reactor("epoll" if variant.startswith("thread") else variant.split("/")[0])
    from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
    from twisted.internet.task import LoopingCall

    from ykcproxy.forward.base import Message

    url = f"nats://127.0.0.1:{port}"
    messages = [payload(i) for i in range(1000)]
    result: dict[str, Any] = {"variant": variant, "reactor": type(reactor).__name__}

    async def connect() -> Any:
        if variant.startswith("thread"):
            from ykcproxy.forward.nats import NatsPublisher

            pub = NatsPublisher([url], reactor=reactor, use_uvloop="uvloop" in variant, publish_timeout=30)
            await pub.start()
            return pub, lambda i: pub.publish(Message("13", "32010200000001", str(i), messages[i % 1000]))
        import nats

        nc = await Deferred.fromFuture(reactor._asyncioEventloop.create_task(nats.connect(url)))
        direct = DirectPublisher(nc, per_message_task=variant.endswith("/task"))
        subject = f"{SUBJECT_PREFIX}.13"
        return nc, lambda i: direct.publish(subject, messages[i % 1000])

    async def run_max(publish: Any) -> None:
        # Bursts of 1000 per reactor turn while fewer than `window` messages
        # are unconfirmed; a full window resumes from the confirmations (no
        # busy polling, which would compete for the GIL with the NATS thread).
        window = 20000
        state = {"sent": 0, "done": 0, "scheduled": 0}
        finished: Deferred[None] = Deferred()

        def fired(_: Any) -> None:
            state["done"] += 1
            if state["done"] == count:
                finished.callback(None)
            elif not state["scheduled"] and state["sent"] < count and state["sent"] - state["done"] < window:
                state["scheduled"] = 1
                reactor.callLater(0, produce)

        def produce() -> None:
            state["scheduled"] = 0
            burst = 0
            while state["sent"] < count and state["sent"] - state["done"] < window and burst < 1000:
                publish(state["sent"]).addCallback(fired)
                state["sent"] += 1
                burst += 1
            if state["sent"] < count and state["sent"] - state["done"] < window and not state["scheduled"]:
                state["scheduled"] = 1
                reactor.callLater(0, produce)

        wall, cpu = time.perf_counter(), time.process_time()
        produce()
        await finished
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        result.update(msgs_per_s=count / wall, cpu_us_per_msg=cpu / count * 1e6, seconds=wall)

    async def run_paced(publish: Any) -> None:
        latencies: list[float] = []
        state = {"sent": 0}
        total = int(rate * seconds)
        finished: Deferred[None] = Deferred()
        t0 = time.perf_counter()

        def fired(_: Any, at: float) -> None:
            latencies.append(time.perf_counter() - at)
            if len(latencies) == total:
                finished.callback(None)

        def tick() -> None:
            now = time.perf_counter()
            due = min(total, int((now - t0) * rate))
            while state["sent"] < due:
                publish(state["sent"]).addCallback(fired, now)
                state["sent"] += 1
            if state["sent"] >= total and loop.running:
                loop.stop()

        loop = LoopingCall(tick)
        cpu = time.process_time()
        loop.start(0.001)
        await finished
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
        latencies.sort()
        result.update(
            p50_ms=latencies[len(latencies) // 2] * 1e3,
            p99_ms=latencies[int(len(latencies) * 0.99)] * 1e3,
            max_ms=latencies[-1] * 1e3,
            cpu_percent=cpu / wall * 100,
            achieved_rate=total / wall,
        )

    async def main() -> None:
        conn, publish = await connect()
        try:
            # warm-up
            await gatherResults([publish(i) for i in range(2000)])
            if mode == "max":
                await run_max(publish)
            else:
                await run_paced(publish)
        finally:
            if variant.startswith("thread"):
                await conn.stop()
            else:
                await Deferred.fromFuture(reactor._asyncioEventloop.create_task(conn.close()))

    def done(r: Any) -> None:
        if hasattr(r, "printTraceback"):
            r.printTraceback()
            result["error"] = str(r.value)
        reactor.stop()

    reactor.callWhenRunning(lambda: ensureDeferred(main()).addBoth(done))
    reactor.run()
    return result


def child_echo(variant: str) -> None:
    reactor = install_reactor(variant)
    from twisted.internet.protocol import Factory, Protocol

    class Echo(Protocol):
        transport: Any

        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)

        def connectionLost(self, reason: Any = None) -> None:
            reactor.stop()

    port = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    cpu = time.process_time()
    reactor.run()
    print(json.dumps({"cpu_s": time.process_time() - cpu, "reactor": type(reactor).__name__}), flush=True)


# ----------------------------------------------------------------------
# parent


def start_nats_server() -> tuple[subprocess.Popen[bytes], int, str]:
    from tests.nats_server import find_nats_server

    binary = find_nats_server()
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", "-1"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    assert proc.stderr is not None
    version = ""
    for raw in proc.stderr:
        line = raw.decode(errors="replace")
        m = re.search(r"Version:\s+(\S+)", line)
        if m:
            version = m.group(1)
        m = re.search(r"Listening for client connections on [^\s:]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    else:
        raise RuntimeError("nats-server did not start")
    # keep draining its output so it never blocks on a full pipe
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    return proc, port, version


def run_child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, check=False, cwd=ROOT
    )
    lines = out.stdout.decode().strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"child {args} failed:\n{out.stderr.decode()}")
    result: dict[str, Any] = json.loads(lines[-1])
    if "error" in result:
        raise RuntimeError(f"child {args}: {result['error']}\n{out.stderr.decode()}")
    return result


def echo_rtt(variant: str, count: int) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child-echo", variant],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = b"h" * 64
    samples = []
    for i in range(count + 1000):
        t = time.perf_counter_ns()
        sock.sendall(data)
        got = 0
        while got < len(data):
            got += len(sock.recv(65536))
        if i >= 1000:  # warm-up
            samples.append(time.perf_counter_ns() - t)
    sock.close()
    child = json.loads(proc.stdout.readline())
    proc.wait(10)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1e3,
        "p99_us": samples[int(len(samples) * 0.99)] / 1e3,
        "server_cpu_us_per_rt": child["cpu_s"] / (count + 1000) * 1e6,
        "reactor": child["reactor"],
    }


def median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def spread(rows: list[dict[str, Any]], key: str, fmt: str = ".0f") -> str:
    values = [r[key] for r in rows]
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="messages per 'max' run")
    parser.add_argument("--rate", type=int, default=20_000, help="messages/s in 'paced' runs")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of 'paced' runs")
    parser.add_argument("--echo-count", type=int, default=20_000, help="round trips per echo run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--child-publish", nargs=3, metavar=("VARIANT", "PORT", "MODE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--child-echo", metavar="REACTOR", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_publish:
        variant, port, mode = args.child_publish
        result = child_publish(variant, int(port), args.count, mode, args.rate, args.seconds)
        print(json.dumps(result), flush=True)
        return
    if args.child_echo:
        child_echo(args.child_echo)
        return

    from importlib.metadata import version

    import twisted

    try:
        import uvloop

        uv = uvloop.__version__
    except ImportError:  # pragma: no cover
        uv = "absent"
    server, port, server_version = start_nats_server()
    try:
        print(
            f"machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
            f"{platform.system()} {platform.release()}"
        )
        print(
            f"python {platform.python_version()}, twisted {twisted.__version__}, "
            f"nats-py {version('nats-py')}, uvloop {uv}, nats-server {server_version} (on this machine)"
        )
        print(
            f"publish: {args.count} msgs of {len(payload(0))} bytes ('max'), "
            f"{args.rate}/s for {args.seconds:g} s ('paced'); echo: {args.echo_count} round trips; "
            f"{args.repeat} repetitions, medians (and min-max)"
        )
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        echo: dict[str, list[dict[str, Any]]] = {}
        common = ["--count", str(args.count), "--rate", str(args.rate), "--seconds", str(args.seconds)]
        for rep in range(args.repeat):
            for mode in ("max", "paced"):
                for variant in PUBLISH_VARIANTS:
                    r = run_child(["--child-publish", variant, str(port), mode, *common])
                    runs.setdefault((variant, mode), []).append(r)
            for variant in ECHO_VARIANTS:
                echo.setdefault(variant, []).append(echo_rtt(variant, args.echo_count))
            print(f"  repetition {rep + 1}/{args.repeat} done", file=sys.stderr, flush=True)
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        print()

        base = median(runs[("thread", "max")], "msgs_per_s")
        print("publish, max rate (confirmed by coalesced flushes)")
        print(
            f"  {'variant':<16} {'reactor':<22} {'msgs/s':>9} {'(min-max)':>13} "
            f"{'ratio':>6} {'CPU us/msg':>11}"
        )
        for variant in PUBLISH_VARIANTS:
            rows = runs[(variant, "max")]
            rate = median(rows, "msgs_per_s")
            print(
                f"  {variant:<16} {rows[0]['reactor']:<22} {rate:>9.0f} {spread(rows, 'msgs_per_s'):>13} "
                f"{rate / base:>6.2f} "
                f"{median(rows, 'cpu_us_per_msg'):>11.1f}"
            )
        print()
        base_p50 = median(runs[("thread", "paced")], "p50_ms")
        print(f"publish, paced at {args.rate} msgs/s: publish -> confirmed latency")
        print(
            f"  {'variant':<16} {'p50 ms':>7} {'ratio':>6} {'p99 ms':>7} {'max ms':>7} "
            f"{'CPU %':>6} {'(min-max)':>9}"
        )
        for variant in PUBLISH_VARIANTS:
            rows = runs[(variant, "paced")]
            p50 = median(rows, "p50_ms")
            print(
                f"  {variant:<16} {p50:>7.2f} {p50 / base_p50:>6.2f} {median(rows, 'p99_ms'):>7.2f} "
                f"{median(rows, 'max_ms'):>7.2f} {median(rows, 'cpu_percent'):>6.0f} "
                f"{spread(rows, 'cpu_percent'):>9}"
            )
        print()
        base_rtt = median(echo["epoll"], "p50_us")
        print("TCP echo round trip, 64 bytes, one connection (blocking client in the parent)")
        print(
            f"  {'reactor':<16} {'p50 us':>7} {'ratio':>6} {'p99 us':>7} "
            f"{'server CPU us/rt':>17} {'(min-max)':>11}"
        )
        for variant in ECHO_VARIANTS:
            rows = echo[variant]
            p50 = median(rows, "p50_us")
            print(
                f"  {variant:<16} {p50:>7.1f} {p50 / base_rtt:>6.2f} {median(rows, 'p99_us'):>7.1f} "
                f"{median(rows, 'server_cpu_us_per_rt'):>17.1f} "
                f"{spread(rows, 'server_cpu_us_per_rt', '.1f'):>11}"
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
