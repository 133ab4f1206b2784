"""The real ``ykcproxy`` command (or ``twistd ykcproxy``) as a subprocess, for the operations tests."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

reactor: Any = _reactor
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
LISTENING = re.compile(rb"(pile port|REST API) listening on [\[\]\w.:]+:(\d+)")


def command(name: str) -> str:
    """The path of a console script of the test venv (``ykcproxy``, ``twistd``...)."""
    return os.path.join(BIN, name)


class Daemon(ProcessProtocol):
    """Collects the output; :attr:`ready` fires with (pile port, REST port), :attr:`ended` with the status."""

    def __init__(self) -> None:
        self.ready: Deferred[tuple[int, int]] = Deferred()
        self.ended: Deferred[int | None] = Deferred()
        self.output = b""
        self.ports: dict[bytes, int] = {}
        self._waiters: list[tuple[bytes, Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        self.output += data
        for match in LISTENING.finditer(self.output):
            self.ports[match.group(1)] = int(match.group(2))
        if len(self.ports) == 2 and not self.ready.called:
            self.ready.callback((self.ports[b"pile port"], self.ports[b"REST API"]))
        for entry in list(self._waiters):
            if entry[0] in self.output:
                self._waiters.remove(entry)
                entry[1].callback(None)

    errReceived = outReceived

    def saying(self, text: bytes) -> Deferred[None]:
        """Fires once the output contains ``text``."""
        d: Deferred[None] = Deferred()
        if text in self.output:
            d.callback(None)
        else:
            self._waiters.append((text, d))
        return d

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError("ended early:\n" + self.output.decode(errors="replace")))
        self.ended.callback(reason.value.exitCode)

    def signal(self, name: str) -> None:
        assert self.transport is not None
        self.transport.signalProcess(name)  # type: ignore[attr-defined]


class ChildOutput(ProcessProtocol):
    """A child process (the simulator...) whose output is kept; :attr:`ended` fires at its end."""

    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[Any] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value)


def spawn(test: TestCase, argv: list[str], cwd: str | None = None) -> Daemon:
    """Run ``argv`` (killed at cleanup if still running)."""
    proc = Daemon()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("YKCPROXY_CONFIG", None)
    if cwd is None:
        cwd = os.path.abspath(test.mktemp())
        os.makedirs(cwd)
    reactor.spawnProcess(proc, argv[0], argv, env=env, path=cwd)

    def kill() -> Deferred[int | None]:
        if not proc.ended.called:
            proc.signal("KILL")
        return proc.ended

    test.addCleanup(kill)
    return proc


def proxy_argv(consumer_url: str, data_dir: str, *extra: str) -> list[str]:
    """The ``ykcproxy`` command on loopback ephemeral ports, forwarding to ``consumer_url``."""
    return [
        command("ykcproxy"),
        "-host",
        "127.0.0.1",
        "-tcpPort=0",
        "--httpPort",
        "0",
        "-servers",
        consumer_url,
        "-dataDir",
        data_dir,
        "-autoVerification",
        "-retryMaxDelay=0.1",
        *extra,
    ]
