"""``ykcproxy-sim``: simulated charging piles against a YKC server, with a summary.

Run ``ykcproxy-sim --help`` for the options; ``doc/performance.md`` shows
the command lines the benchmarks use.  The run is: ramp (start piles at
``--ramp`` per second until all logged in, showing progress), ``--warmup``
seconds, then the measured window (``--duration`` seconds of steady load,
with storms if asked, or the ``--burst`` steps), then a drain of the
replies still due, and the summary (frames by type, reply latency
percentiles of the window, errors).  ``--progress json`` prints one JSON
object per line instead (events with a unix ``t``), for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ykcproxy.sim.faults import Faults
from ykcproxy.sim.fleet import Fleet, FleetSettings
from ykcproxy.sim.pile import PileSettings
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.frames import CATALOGUE


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard limit; returns (soft, hard) now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def install_reactor(name: str) -> str:
    """Install the reactor ``name`` (default, epoll, asyncio, uvloop); returns what runs."""
    if name == "uvloop":
        import asyncio

        import uvloop

        uv_loop: Any = uvloop.new_event_loop()
        asyncio.set_event_loop(uv_loop)
        from twisted.internet import asyncioreactor

        asyncioreactor.install(uv_loop)
    elif name == "asyncio":
        import asyncio

        from twisted.internet import asyncioreactor

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    elif name == "epoll":
        from twisted.internet import epollreactor

        epollreactor.install()
    from twisted.internet import reactor

    return type(reactor).__name__


def _steps(text: str) -> list[tuple[float | None, float]]:
    """``RATE[xSECONDS],...`` → [(rate or None for max, seconds)]."""
    out: list[tuple[float | None, float]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        rate_text, _, seconds_text = part.rpartition("x")
        rate = None if rate_text in ("max", "") else float(rate_text)
        out.append((rate, float(seconds_text) if seconds_text else 10.0))
    if not out:
        raise argparse.ArgumentTypeError("no burst steps")
    return out


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="ykcproxy-sim",
        description="Simulated YKC V1.6 charging piles: log in, heartbeat, charge, answer commands.",
    )
    a = p.add_argument
    from ykcproxy import __version__

    a("--version", action="version", version=f"ykcproxy-sim {__version__}")
    a("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    a("--port", type=int, default=27600, help="server pile port (default 27600)")
    a("--piles", type=int, default=10, help="number of piles (default 10)")
    a("--guns", type=int, default=1, help="guns per pile (default 1)")
    a("--id-base", type=int, default=32010200000001, help="first pile id; the others count up")
    a("--ramp", type=float, default=500.0, help="piles started per second; 0 = all at once (default 500)")
    a("--ramp-timeout", type=float, default=120.0, help="give up waiting for all logins after this (s)")
    a("--warmup", type=float, default=2.0, help="seconds between all logged in and the measured window")
    a("--duration", type=float, default=30.0, help="seconds of the measured window (default 30)")
    a("--heartbeat", type=float, default=10.0, help="heartbeat interval (s, default 10)")
    a("--charging-interval", type=float, default=15.0, help="0x13/0x23/0x25 interval while charging (s)")
    a("--idle-interval", type=float, default=300.0, help="0x13 interval of idle guns (s); 0 = never")
    a("--charging", type=float, default=0.0, help="share of piles that charge (0..1)")
    a("--charge-minutes", type=float, default=0.0, help="length of those charges; 0 = whole run")
    a("--reply-timeout", type=float, default=10.0, help="a request unanswered this long is lost (s)")
    a("--reconnect-base", type=float, default=1.0, help="first reconnect backoff step (s); 0 = at once")
    a("--reconnect-cap", type=float, default=60.0, help="longest reconnect backoff (s)")
    a("--record-retry", type=float, default=30.0, help="0x3B retry interval (s)")
    a("--crc", choices=("low-first", "high-first", "mixed"), default="low-first", help="CRC byte order")
    a("--seed", type=int, default=1)
    g = p.add_argument_group("faults")
    g.add_argument("--split", type=float, default=0.0, help="share of writes cut into pieces")
    g.add_argument("--merge", action="store_true", help="merge frames written within 5 ms")
    g.add_argument("--bad-crc", type=float, default=0.0, help="share of frames preceded by a broken copy")
    g.add_argument("--garbage", type=float, default=0.0, help="share of frames preceded by garbage")
    g.add_argument("--slow", type=float, default=0.0, help="share of piles that pause reading")
    g.add_argument("--slow-pause", type=float, default=2.0, help="seconds a slow reader pauses")
    g.add_argument("--storm-at", type=float, default=-1.0, help="drop piles this many s into the window")
    g.add_argument("--storm-every", type=float, default=0.0, help="drop piles every this many s")
    g.add_argument("--storm-share", type=float, default=1.0, help="share of piles a storm drops")
    g.add_argument("--storm-delay", type=float, default=0.0, help="reconnect delay after a storm (s)")
    g.add_argument(
        "--misbehave",
        type=int,
        choices=range(0, 9),
        default=0,
        metavar="N",
        help="break spec 13.3 rule N (1-8) in every charge the platform starts: 1 no start answer, "
        "2 refused but charging, 3 stop refused, 4 idle while charging, 5 unplugged and no record, "
        "6 wrong tradeSeq in 0x13, 7 no record, 8 a unit price off the billing model (0: none)",
    )
    b = p.add_argument_group("burst")
    b.add_argument(
        "--burst",
        type=_steps,
        default=None,
        help="burst steps instead of steady load: RATExSECONDS,... (frames/s over all piles; max = as fast "
        "as the server reads), e.g. 5000x8,10000x8,maxx8",
    )
    b.add_argument("--burst-frame", default="13", help="frame type of the burst (hex, default 13)")
    o = p.add_argument_group("output")
    o.add_argument("--progress", choices=("text", "json", "none"), default="text")
    o.add_argument("--json-out", default="", help="also write the summary as JSON to this file")
    o.add_argument("--reactor", choices=("default", "epoll", "asyncio", "uvloop"), default="default")
    o.add_argument("--log", default="", help="write the twisted log to this file ('-' = stderr)")
    o.add_argument(
        "--fail-on-lost", action="store_true", help="exit 1 if any reply was lost or an error counted"
    )
    return p


def settings_from(args: argparse.Namespace) -> FleetSettings:
    """The fleet settings of parsed arguments."""
    pile = PileSettings(
        guns=args.guns,
        heartbeat_interval=args.heartbeat,
        charging_interval=args.charging_interval,
        idle_interval=args.idle_interval,
        reply_timeout=args.reply_timeout,
        reconnect_base=args.reconnect_base,
        reconnect_cap=args.reconnect_cap,
        record_retry_interval=args.record_retry,
        crc_order=CrcOrder.HIGH_FIRST if args.crc == "high-first" else CrcOrder.LOW_FIRST,
    )
    faults = Faults(
        split=args.split,
        merge=args.merge,
        bad_crc=args.bad_crc,
        garbage=args.garbage,
        slow_share=args.slow,
        slow_pause=args.slow_pause,
    )
    return FleetSettings(
        host=args.host,
        port=args.port,
        piles=args.piles,
        id_base=args.id_base,
        ramp_rate=args.ramp,
        charging_share=args.charging,
        charge_duration=args.charge_minutes * 60 if args.charge_minutes else None,
        crc=args.crc,
        seed=args.seed,
        pile=pile,
        faults=faults,
        misbehave=args.misbehave,
    )


class Output:
    """Progress lines and events, as text or JSON lines."""

    def __init__(self, mode: str, stream: TextIO = sys.stdout) -> None:
        self.mode = mode
        self.stream = stream
        self.started = time.time()

    def event(self, name: str, data: dict[str, Any]) -> None:
        """A milestone (``all_logged_in``, ``window_start``, ``storm``...)."""
        if self.mode == "json":
            self._json({"event": name, "t": time.time(), **data})
        elif self.mode == "text":
            extra = " ".join(f"{k}={v}" for k, v in data.items())
            self._line(f"[{time.time() - self.started:7.1f}s] {name} {extra}")

    def progress(self, data: dict[str, Any]) -> None:
        """A periodic progress report."""
        if self.mode == "json":
            self._json({"event": "progress", "t": time.time(), **data})
        elif self.mode == "text":
            self._line(
                f"[{time.time() - self.started:7.1f}s] started {data['started']}/{data['piles']} "
                f"connected {data['connected']} logged in {data['loggedIn']} ready {data['ready']} "
                f"charging {data['charging']} | frames out {data['sent']} in {data['received']} "
                f"errors {data['errors']} lost {data['lost']}"
            )

    def _json(self, obj: dict[str, Any]) -> None:
        self.stream.write(json.dumps(obj) + "\n")
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def machine() -> dict[str, Any]:
    """What this ran on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _name(ft: str) -> str:
    try:
        return CATALOGUE[int(ft, 16)].name
    except (KeyError, ValueError):
        return ft


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as text."""
    lines = []
    run = summary["run"]
    lines.append(
        f"ykcproxy-sim: {run['piles']} piles x {run['guns']} gun(s) -> {run['target']} "
        f"(reactor {run['reactor']}, open files {run['openFiles']})"
    )
    login = run.get("allLoggedInSeconds")
    lines.append(
        "all logged in after "
        + (f"{login:.2f} s" if login is not None else f"NOT ALL ({run['loggedInOnce']} of {run['piles']})")
        + f"; measured window {run['windowSeconds']:.1f} s"
    )
    for key, title in (("sent", "frames sent"), ("received", "frames received")):
        counts = summary[key]
        lines.append(f"{title}: {sum(counts.values())}")
        for ft, n in counts.items():
            lines.append(f"  {ft} {_name(ft):<28} {n:>10}")
    for key, title in (
        ("latencyWindow", "reply latency, window (ms)"),
        ("latencyAll", "reply latency, all (ms)"),
    ):
        lat = summary[key]
        if not lat:
            continue
        lines.append(title + ":")
        for ft, s in lat.items():
            lines.append(
                f"  {ft} {_name(ft):<20} n={s['count']:<8} p50={s['p50']:<8} p90={s['p90']:<8} "
                f"p99={s['p99']:<8} p99.9={s['p999']:<8} max={s['max']}"
            )
    for step in summary.get("burst", []):
        lines.append(
            f"burst step {step['rate'] or 'max'}/s for {step['seconds']} s: sent {step['sent']} "
            f"({step['sentPerSecond']:.0f}/s)"
        )
    for storm in summary.get("storms", []):
        lines.append(f"storm: {storm['piles']} piles logged in again after {storm['seconds']} s")
    for key in ("errors", "lost", "outstanding", "abandoned", "events"):
        data = summary[key]
        lines.append(f"{key}: " + (", ".join(f"{k}={v}" for k, v in data.items()) if data else "none"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    args = parser().parse_args(argv)
    soft, hard = raise_open_file_limit()
    reactor_name = install_reactor(args.reactor)
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    if args.log:
        from twisted.logger import globalLogBeginner, textFileLogObserver

        stream = sys.stderr if args.log == "-" else open(args.log, "a")  # noqa: SIM115
        globalLogBeginner.beginLoggingTo([textFileLogObserver(stream)], redirectStandardIO=False)
    if args.piles + 64 > soft:
        print(f"ykcproxy-sim: {args.piles} piles need more open files than the limit {soft}", file=sys.stderr)
        return 2
    out = Output(args.progress)
    result: dict[str, Any] = {"exit": 1, "phase": "starting"}
    runs: list[Any] = []

    def run() -> None:
        d = _run(reactor, args, out, result, reactor_name, soft)
        runs.append(d)

        def failed(failure: Any) -> None:
            print(f"ykcproxy-sim: {failure.getTraceback()}", file=sys.stderr)

        def done(_: object) -> None:
            result["phase"] = "done"
            if not result.get("interrupted"):
                reactor.stop()

        d.addErrback(failed)
        d.addBoth(done)

    def interrupted() -> Any:
        """Ctrl-C or SIGTERM (the reactor is stopping): end the window now, then the summary."""
        if result["phase"] == "done" or not runs:
            return None
        result["interrupted"] = True
        interrupt = result.get("interrupt")
        if interrupt is not None and not interrupt.called:
            interrupt.callback(None)  # the run ends its window, closes the piles, writes its summary
        return runs[0]

    reactor.callWhenRunning(run)
    reactor.addSystemEventTrigger("before", "shutdown", interrupted)
    reactor.run()
    return int(result["exit"])


def _run(
    reactor: Any,
    args: argparse.Namespace,
    out: Output,
    result: dict[str, Any],
    reactor_name: str,
    nofile: int,
) -> Any:
    from twisted.internet.defer import CancelledError, Deferred, DeferredList, ensureDeferred
    from twisted.internet.task import LoopingCall, deferLater

    from ykcproxy.sim.burst import BurstSender

    settings = settings_from(args)
    fleet = Fleet(settings, reactor, on_event=out.event)
    storms: list[dict[str, Any]] = []
    bursts: list[dict[str, Any]] = []

    window_start = reactor.seconds()

    async def go() -> None:
        progress = LoopingCall(lambda: out.progress(fleet.progress()))
        progress.clock = reactor
        progress.start(1.0 if args.progress == "text" else 2.0, now=False)
        interrupt: Deferred[None] = Deferred()
        result["interrupt"] = interrupt
        measuring = ensureDeferred(measure())
        await DeferredList(
            [measuring, interrupt], fireOnOneCallback=True, fireOnOneErrback=True, consumeErrors=True
        )
        if interrupt.called:
            out.event("interrupted", {})
            measuring.addErrback(lambda f: f.trap(CancelledError))
            measuring.cancel()
        else:
            interrupt.callback(None)  # nothing to interrupt any more
        result["phase"] = "closing"
        window_end = reactor.seconds()
        out.event("window_end", {})
        if progress.running:
            progress.stop()
        drain = 1.0 if result.get("interrupted") else min(args.reply_timeout, 10.0)
        await fleet.stop(drain=drain)
        finish(window_end)

    async def measure() -> None:
        """Ramp, warm-up and the measured window (cancelled by Ctrl-C or SIGTERM)."""
        nonlocal window_start
        window_start = reactor.seconds()
        ramp: Deferred[Any] = fleet.start()
        timeout: Deferred[Any] = deferLater(reactor, args.ramp_timeout, lambda: None)
        await DeferredList([ramp, timeout], fireOnOneCallback=True, consumeErrors=True)
        if result.get("interrupted"):  # a cancelled DeferredList fires, it does not fail
            return
        if fleet.all_logged_in_at is None:
            out.event("ramp_incomplete", {"loggedIn": len(fleet.ever_logged_in)})
        else:
            timeout.addErrback(lambda f: None)
            timeout.cancel()
        await deferLater(reactor, args.warmup, lambda: None)
        window_start = reactor.seconds()
        out.event("window_start", {})
        if args.burst:
            sender = BurstSender(fleet.piles, reactor, code=int(args.burst_frame, 16))
            try:
                for rate, seconds in args.burst:
                    out.event("step_start", {"rate": rate, "seconds": seconds, "sent": sender.sent})
                    t0 = reactor.seconds()
                    sent = await sender.run(rate, seconds)
                    took = reactor.seconds() - t0
                    step = {"rate": rate, "seconds": seconds, "sent": sent, "sentPerSecond": sent / took}
                    bursts.append(step)
                    out.event("step_end", {**step, "total": sender.sent})
            finally:
                fleet.stats.sent[args.burst_frame.lower()] += sender.sent
        else:
            end = window_start + args.duration
            storm_times = []
            if args.storm_at >= 0:
                storm_times.append(window_start + args.storm_at)
            if args.storm_every > 0:
                t = window_start + args.storm_every
                while t < end:
                    storm_times.append(t)
                    t += args.storm_every
            for when in sorted(storm_times):
                await deferLater(reactor, max(0.0, when - reactor.seconds()), lambda: None)
                recovered = fleet.storm(args.storm_share, args.storm_delay)
                recovered.addCallback(
                    lambda s: storms.append({"seconds": round(s, 3), "piles": len(fleet.piles)})
                )
            await deferLater(reactor, max(0.0, end - reactor.seconds()), lambda: None)

    def finish(window_end: float) -> None:
        """The summary: printed, and written to ``--json-out``."""
        stats = fleet.stats
        summary: dict[str, Any] = {
            "run": {
                "piles": args.piles,
                "guns": args.guns,
                "target": f"{args.host}:{args.port}",
                "reactor": reactor_name,
                "openFiles": nofile,
                "allLoggedInSeconds": (
                    round(fleet.all_logged_in_at - fleet.started_at, 3) if fleet.all_logged_in_at else None
                ),
                "loggedInOnce": len(fleet.ever_logged_in),
                "windowSeconds": round(window_end - window_start, 3),
                "interrupted": bool(result.get("interrupted")),
                "args": vars(args) | {"burst": args.burst},
                "machine": machine(),
            },
            **stats.snapshot(),
            "latencyWindow": stats.latency_summary(window_start, window_end),
            "latencyAll": stats.latency_summary(),
            "burst": bursts,
            "storms": storms,
        }
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(summary, f, indent=1, default=str)
        if args.progress == "json":
            out._json({"event": "summary", "t": time.time(), "summary": summary})
        elif args.progress == "text" or not args.json_out:
            print(format_summary(summary))
        bad = stats.lost_total or sum(stats.errors.values()) or fleet.all_logged_in_at is None
        result["exit"] = 1 if (args.fail_on_lost and bad) else 0

    return ensureDeferred(go())


if __name__ == "__main__":
    raise SystemExit(main())
