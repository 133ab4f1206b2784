"""Shared by the benchmarks: processes under test, their CPU and memory, the machine.

Every process a benchmark starts (the proxy, the reference server, the
simulator, nats-server, the HTTP consumer) is its own OS process started
here, so its CPU time and RSS can be read from ``/proc/<pid>``.  All load
goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_open_file_limit() -> int:
    """Soft open-file limit up to the hard one (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Wait until something listens on 127.0.0.1:``port``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def env() -> dict[str, str]:
    """The environment for children: this checkout first on the path."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def machine() -> dict[str, Any]:
    """What the benchmark ran on."""
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) // 1024
    import twisted

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memMiB": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "openFiles": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def print_machine() -> dict[str, Any]:
    """Print and return :func:`machine`."""
    m = machine()
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memMiB']} MiB, Linux {m['kernel']}, "
        f"Python {m['python']}, Twisted {m['twisted']}, open files {m['openFiles']}, {m['when']}"
    )
    return m


class Proc:
    """A child process with CPU and RSS readings from /proc."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, **popen: Any) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115
        popen.setdefault("stdout", self._out)
        popen.setdefault("stderr", subprocess.STDOUT)
        self.popen = subprocess.Popen(self.argv, env=env(), cwd=ROOT, start_new_session=True, **popen)
        self.pid = self.popen.pid
        self.profiled = Path(self.argv[0]).name == "py-spy"
        if self.profiled:  # measure the profiled child, not py-spy
            self.pid = self._child_pid()

    def _child_pid(self) -> int:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with open(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children") as f:
                    children = f.read().split()
            except OSError:
                children = []
            if children:
                return int(children[0])
            time.sleep(0.05)
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far (this process, its threads)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self) -> float:
        """Resident memory now, MiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def hwm_mib(self) -> float:
        """Peak resident memory, MiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` (only this process group, which we started)."""
        if self.profiled and self.popen.poll() is None:
            # py-spy writes its profile when the profiled process exits.
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout + 30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._out.close()


class CpuMeter:
    """CPU share of a process between two points: ``start()``, then ``stop()``."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc
        self.t0 = self.c0 = 0.0
        self.share = 0.0

    def start(self) -> None:
        self.t0, self.c0 = time.monotonic(), self.proc.cpu_seconds()

    def stop(self) -> float:
        """The share of one core used since start (1.0 = a whole core)."""
        t1, c1 = time.monotonic(), self.proc.cpu_seconds()
        self.share = (c1 - self.c0) / max(1e-9, t1 - self.t0)
        return self.share


@contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    """A temporary directory for logs and data (kept with ``keep``)."""
    path = Path(tempfile.mkdtemp(prefix="ykcbench-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
        else:
            print(f"logs kept in {path}")


def start_proxy(
    work: Path,
    options: Sequence[str] = (),
    reactor: str = "default",
    name: str = "proxy",
    profile: str = "",
    without: Sequence[str] = (),
) -> tuple[Proc, int, int]:
    """``twistd -n ykcproxy`` as its own process on free ports; returns (proc, pile port, REST port).

    ``without``: parts of the proxy made to observe no frame (see ``run_proxy.py``).
    """
    tcp, http = free_port(), free_port()
    argv = [
        PYTHON,
        str(ROOT / "bench" / "run_proxy.py"),
        "--reactor",
        reactor,
        *(["--without", ",".join(without)] if without else []),
        "--",
        "-n",
        "--pidfile=",
        "-l",
        str(work / f"{name}.twistd.log"),
        "ykcproxy",
        "--host",
        "127.0.0.1",
        "--tcpPort",
        str(tcp),
        "--httpPort",
        str(http),
        "--autoVerification",
        "true",
        "--autoBillingModelVerify",
        "true",
        # The load generators drive piles far faster than real ones: no per-pile frame-rate limit.
        "--maxFrameRate",
        "0",
        *options,
    ]
    if "--dataDir" not in options:
        argv += ["--dataDir", str(work / f"{name}-data")]
    if profile:
        argv = [
            str(BIN / "py-spy"),
            "record",
            "--nonblocking",
            "-r",
            "100",
            "-o",
            profile,
            "-f",
            "raw",
            "--threads",
            "--",
            *argv,
        ]
    proc = Proc(name, argv, work / f"{name}.out")
    wait_port(tcp)
    wait_port(http)
    return proc, tcp, http


def start_nats_proxy(
    work: Path, target: str, reactor: str, name: str, profile: str = ""
) -> tuple[Proc, int, int, Proc, int]:
    """A nats-server and a proxy forwarding to it; ``target`` ``nats-mem`` runs
    without the durable outbox (``--dataDir ''``).  Returns (proxy, pile port,
    REST port, nats-server, its monitoring port)."""
    nats, nats_port, monitor = start_nats(work)
    options = ["--messagingServerType", "nats", "--servers", f"nats://127.0.0.1:{nats_port}"]
    if target == "nats-mem":  # no durable outbox: messages kept in memory only
        options += ["--dataDir", ""]
    proc, port, rest = start_proxy(work, options, reactor, name=name, profile=profile)
    return proc, port, rest, nats, monitor


def start_reference(work: Path, reactor: str = "default") -> tuple[Proc, int, int]:
    """The bare-framing reference server; returns (proc, pile port, stats port)."""
    tcp, stats = free_port(), free_port()
    argv = [PYTHON, str(ROOT / "bench" / "refserver.py"), "--port", str(tcp), "--stats-port", str(stats)]
    argv += ["--reactor", reactor]
    proc = Proc("reference", argv, work / "reference.out")
    wait_port(tcp)
    wait_port(stats)
    return proc, tcp, stats


def start_nats(work: Path, jetstream: bool = False) -> tuple[Proc, int, int]:
    """A real nats-server on free ports (with JetStream stored under ``work`` if
    ``jetstream``); returns (proc, client port, monitoring port)."""
    port, monitor = free_port(), free_port()
    binary = shutil.which("nats-server") or str(BIN / "nats-server")
    argv = [binary, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)]
    if jetstream:
        argv += ["-js", "-sd", str(work / "nats-js")]
    proc = Proc("nats-server", argv, work / "nats.out")
    wait_port(port)
    wait_port(monitor)
    return proc, port, monitor


def start_consumer(work: Path) -> tuple[Proc, int]:
    """The HTTP webhook consumer (counts POSTs and batched messages); returns (proc, port)."""
    port = free_port()
    proc = Proc(
        "consumer", [PYTHON, str(ROOT / "bench" / "consumer.py"), "--port", str(port)], work / "consumer.out"
    )
    wait_port(port)
    return proc, port


def get_json(url: str) -> Any:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def nats_in_msgs(monitor: int) -> int:
    """Messages published to nats-server so far (its /varz ``in_msgs``)."""
    return int(get_json(f"http://127.0.0.1:{monitor}/varz")["in_msgs"])


def consumer_messages(port: int) -> int:
    """Messages the HTTP consumer received so far (single POSTs plus batched ones)."""
    return int(get_json(f"http://127.0.0.1:{port}/stats")["messages"])


def reference_frames(port: int) -> int:
    """Frames the reference server split so far."""
    return int(get_json(f"http://127.0.0.1:{port}/stats")["frames"])


def proxy_frames_in(rest_port: int) -> int:
    """Frames the proxy received and decoded so far (sum of ``ykc_frames_in``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("ykc_frames_in_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def sim_argv(port: int, *options: str, reactor: str = "default") -> list[str]:
    """The simulator command line against 127.0.0.1:``port`` with JSON-lines output."""
    return [
        PYTHON,
        "-m",
        "ykcproxy.sim.cli",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--progress",
        "json",
        "--reactor",
        reactor,
        *options,
    ]


class Sim:
    """The simulator as a child process whose JSON-lines events are read as they come."""

    def __init__(
        self, work: Path, port: int, options: Sequence[str], name: str = "sim", reactor: str = "default"
    ):
        self.proc = Proc(
            name,
            sim_argv(port, *options, reactor=reactor),
            work / f"{name}.err",
            stdout=subprocess.PIPE,
            stderr=None,
        )
        self.summary: dict[str, Any] | None = None

    def events(self, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield each event line until the simulator exits (killed after ``timeout`` s)."""
        deadline = time.time() + timeout
        stdout = self.proc.popen.stdout
        assert stdout is not None
        for raw in stdout:
            if time.time() > deadline:
                self.proc.stop(1)
                raise TimeoutError("simulator ran over its time")
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if event.get("event") == "summary":
                self.summary = event["summary"]
            yield event
        self.proc.popen.wait()


def ratio(ours: float, reference: float) -> float:
    """ours / reference, rounded (NaN if the reference is 0)."""
    return round(ours / reference, 3) if reference else float("nan")
