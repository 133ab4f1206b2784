"""NATS (core or JetStream) publishing from Twisted's default reactor.

nats-py, the official client, is asyncio-only, while ``twistd -n ykcproxy`` runs
on Twisted's default (epoll) reactor.  So the client lives in its own asyncio
event loop on a daemon thread, the "NATS thread", and the reactor thread talks
to it through two batched hand-offs (see ``doc/nats.md`` for why and for the
measurements):

* reactor -> NATS thread: :meth:`NatsPublisher.publish` appends to a list under
  a lock and calls ``loop.call_soon_threadsafe`` only when no wake-up is already
  pending, so a burst of publishes costs one wake-up;
* NATS thread -> reactor: outcomes are appended to another list and delivered
  by one ``reactor.callFromThread`` per batch.

Deferreds are created, fired and cancelled only in the reactor thread; asyncio
objects are touched only in the NATS thread.  The reactor thread never blocks
(it never joins the NATS thread: it polls ``is_alive()`` after the thread
said it is finishing).

Plain mode: a publish's Deferred fires once a PING sent *after* its PUB got its
PONG (a flush round trip).  Flushes are coalesced: one is in flight at a time
and confirms everything published before it.  The message must have been
written on the connection that answered the PONG; a message written on a
connection that was lost before its confirmation fails (it may or may not have
reached the server, so a retry can duplicate: consumers dedup on the
``messageId``).

JetStream mode: ``js.publish_async`` with header ``Nats-Msg-Id`` = the
message id (server-side dedup); the Deferred fires on the stream's ack.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATSClient
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from ykcproxy.cluster.shared import SharedConnection
from ykcproxy.forward.base import IBatchPublisher, Message, PublishError

DEFAULT_SUBJECT_PREFIX = "charge.proxy.ykc"

_FORBIDDEN_SUBJECT_CHARS = frozenset(" \t\r\n*>")


class NatsConnectError(PublishError):
    """:meth:`NatsPublisher.start` could not connect (refused, timed out, bad credentials)."""


class _ConnectionLost(Exception):
    """The connection a confirmation was waiting on went away."""

    def __init__(self, gen: int) -> None:
        super().__init__(gen)
        self.gen = gen


class _GroupOutcome:
    """The outcome of a group from :meth:`NatsPublisher.publish_batch` (reactor-owned).

    Stands in for the Deferred of each message of the group: its Deferred fires
    once every message is confirmed, or with the first failure.  One Deferred per
    group instead of one per message plus a ``gatherResults`` over them.
    """

    __slots__ = ("deferred", "remaining")

    def __init__(self, deferred: Deferred[None], count: int) -> None:
        self.deferred = deferred
        self.remaining = count

    def callback(self, _: None) -> None:
        """One message of the group is confirmed."""
        self.remaining -= 1
        if self.remaining == 0:
            self.deferred.callback(None)

    def errback(self, error: BaseException) -> None:
        """One message of the group failed: the group fails (once)."""
        if self.remaining > 0:
            self.remaining = -1
            self.deferred.errback(error)


class _Item:
    """One publish in flight: the message, its Deferred (reactor-owned) and its deadline."""

    __slots__ = ("message", "deferred", "deadline", "gen")

    def __init__(self, message: Message, deferred: Deferred[None] | _GroupOutcome, deadline: float) -> None:
        self.message = message
        self.deferred = deferred
        self.deadline = deadline  # time.monotonic()
        # Plain mode: the number of the connection the PUB goes out on.
        self.gen = 0


def redact_server(url: str) -> str:
    """``url`` with a password in it replaced by ``***`` (for logs and /healthz)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def normalize_server(server: str) -> str:
    """A server address with a scheme: ``host:4222`` -> ``nats://host:4222``."""
    server = server.strip()
    if not server:
        raise ValueError("empty NATS server address")
    if "://" not in server:
        server = "nats://" + server
    scheme = server.split("://", 1)[0]
    if scheme not in ("nats", "tls"):
        raise ValueError(f"{server!r} is not a nats:// (or tls://) address")
    return server


def check_subject_prefix(subject_prefix: str) -> str:
    """``subject_prefix`` without outer dots; ``ValueError`` if NATS would refuse it."""
    prefix = subject_prefix.strip(".")
    if not prefix or _FORBIDDEN_SUBJECT_CHARS & set(prefix) or ".." in prefix:
        raise ValueError(
            f"{subject_prefix!r} is not a NATS subject prefix (no spaces, '*', '>' or empty tokens)"
        )
    return prefix


def _describe(e: BaseException) -> str:
    text = str(e)
    if not text:
        return type(e).__name__
    if isinstance(e, OSError | asyncio.TimeoutError):
        return f"{type(e).__name__}: {text}"
    return text


def _is_auth_error(e: BaseException) -> bool:
    return isinstance(e, nats.errors.AuthorizationError) or "authorization violation" in str(e).lower()


@implementer(IBatchPublisher)
class NatsPublisher:
    """Publishes each message to ``<subject_prefix>.<ft>`` on NATS.

    :param servers: ``nats://host:port`` addresses (``host:port`` gets ``nats://``);
        with several, the client picks one and fails over to the others.
    :param username: user for user/password authentication (or None).
    :param password: its password.
    :param subject_prefix: subjects are ``f"{subject_prefix}.{message.ft}"``.
    :param jetstream: wait for a JetStream ack (a stream must be bound to the
        subjects) instead of a core-NATS flush round trip.
    :param reactor: the Twisted reactor (default: the global one).
    :param connect_timeout: :meth:`start` fails after this many seconds
        without a connection (reconnecting goes on in the background).
    :param publish_timeout: a publish's Deferred fails with
        :class:`PublishError` if it is not confirmed within this many seconds.
    :param reconnect_wait: seconds between connection attempts to one server.
    :param reconnect_buffer_size: bytes of PUBs nats-py buffers while
        disconnected; a publish that does not fit fails at once.
    :param max_pending_acks: JetStream publishes awaiting their ack at once;
        more wait (up to their timeout) for a free slot.
    :param stop_timeout: :meth:`stop` waits this long for confirmations of
        messages already handed over, then fails the rest.
    :param client_name: the connection name shown in NATS monitoring.
    :param tls: an SSL context for ``tls://`` servers (default: system CAs).
    :param use_uvloop: run the NATS thread's event loop on uvloop; None (the
        default): when uvloop is installed (its cross-thread wake-ups are
        cheaper, see ``doc/nats.md``).
    :param jetstream_probe_timeout: JetStream mode: on each connection, the
        JetStream account info request (``$JS.API.INFO``) must be answered
        within this many seconds, or JetStream counts as unavailable.
    :param jetstream_probe_interval: while JetStream is unavailable, it is
        asked again this often; publishes fail at once meanwhile.
    :param failures_to_degrade: this many publishes failing in a row (no
        success between them) make :meth:`health` not ok.
    """

    name = "nats"
    #: A group of one is the same PUB either way; ``publish`` does less work.
    lone_via_publish = True

    def __init__(
        self,
        servers: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        subject_prefix: str = DEFAULT_SUBJECT_PREFIX,
        jetstream: bool = False,
        reactor: Any = None,
        *,
        connect_timeout: float = 5.0,
        publish_timeout: float = 10.0,
        reconnect_wait: float = 1.0,
        reconnect_buffer_size: int = 8 * 1024 * 1024,
        max_pending_acks: int = 4000,
        stop_timeout: float = 5.0,
        client_name: str = "ykcproxy",
        tls: ssl.SSLContext | None = None,
        use_uvloop: bool | None = None,
        jetstream_probe_timeout: float = 2.0,
        jetstream_probe_interval: float = 5.0,
        failures_to_degrade: int = 3,
    ) -> None:
        if isinstance(servers, str):
            servers = [s for s in servers.split(",") if s.strip()]
        if not servers:
            raise ValueError("NatsPublisher needs at least one server")
        self.servers = [normalize_server(s) for s in servers]
        prefix = check_subject_prefix(subject_prefix)
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("publish_timeout", publish_timeout),
            ("stop_timeout", stop_timeout),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.subject_prefix = prefix
        self.jetstream = jetstream
        self.username = username or None
        self._password = password or None
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.reconnect_wait = reconnect_wait
        self.reconnect_buffer_size = reconnect_buffer_size
        self.max_pending_acks = max_pending_acks
        self.stop_timeout = stop_timeout
        self.client_name = client_name
        self.jetstream_probe_timeout = jetstream_probe_timeout
        self.jetstream_probe_interval = jetstream_probe_interval
        self.failures_to_degrade = failures_to_degrade
        self._tls = tls
        if use_uvloop is None:
            try:
                import uvloop  # noqa: F401
            except ImportError:
                use_uvloop = False
            else:
                use_uvloop = True
        self.use_uvloop = use_uvloop
        self._reactor: Any = reactor
        self._log = Logger(namespace="ykcproxy.forward.nats")
        self._shown_servers = [redact_server(s) for s in self.servers]

        # Reactor-thread state.
        self._state = "new"  # new -> running -> stopping -> stopped
        self._start_d: Deferred[None] | None = None
        self._start_timer: Any = None
        self._stop_waiters: list[Deferred[None]] = []
        self._stop_guard: Any = None
        self._thread: threading.Thread | None = None

        # The two hand-offs.  deque.append/popleft are atomic; each side clears
        # its "scheduled" flag *before* draining, and the other side appends
        # *before* testing the flag, so no wake-up is ever lost.
        self._inbox: deque[_Item] = deque()
        self._inbox_scheduled = False
        self._hand_over_call: Any = None
        self._results: deque[tuple[list[_Item], str | None]] = deque()
        self._results_scheduled = False

        # Reactor-thread state: publishes failing in a row, and the last failure.
        self._failing = 0
        self._last_failure: str | None = None

        # Written by the NATS thread, read by health() (plain attribute reads).
        #: JetStream mode: "unknown" (not connected yet), "probing", "available" or "unavailable".
        self._js_state = "unknown" if jetstream else "off"
        self._js_reason: str | None = None
        self._js_logged: str | None = None  # NATS thread: the last state or reason logged
        self._connected = False
        self._connected_server: str | None = None
        self._last_error: str | None = None
        self._stats = {
            "published": 0,
            "confirmed": 0,
            "failed": 0,
            "flushes": 0,
            "reconnects": 0,
            "duplicates": 0,
        }

        # NATS-thread state (created in the thread).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: NATSClient | None = None
        #: This publisher's connection, for the command responders to subscribe on.
        self.shared = SharedConnection()
        self._js: Any = None
        self._up: asyncio.Event | None = None
        self._wakeup: asyncio.Event | None = None
        self._gen = 0
        self._lost: asyncio.Future[None] | None = None
        self._ever_connected = False
        self._stopping = False
        self._backlog: deque[_Item] = deque()
        self._backlog_timer: asyncio.TimerHandle | None = None
        self._unconfirmed: list[_Item] = []
        self._confirm_task: asyncio.Task[None] | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._supervisor_task: asyncio.Task[None] | None = None
        self._js_pending: set[asyncio.Future[Any]] = set()
        self._subjects: dict[str, str] = {}
        self._error_logged: str | None = None

    # ------------------------------------------------------------------
    # IPublisher, reactor thread

    def start(self) -> Deferred[None]:
        """Start the NATS thread and connect.

        Fires when connected; fails with :class:`NatsConnectError` naming the
        servers after ``connect_timeout`` (or at once when the server refuses
        the credentials).  Either way the publisher keeps trying to connect
        in the background until :meth:`stop`, and messages published in the
        meantime wait for the connection (up to ``publish_timeout``).
        """
        if self._state != "new":
            return fail(NatsConnectError(f"NatsPublisher.start() called when {self._state}"))
        if self.use_uvloop:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        self._loop = self.shared.loop = loop
        self._state = "running"
        d: Deferred[None] = Deferred()
        self._start_d = d
        self._start_timer = self._reactor.callLater(self.connect_timeout, self._start_timed_out)
        self._thread = threading.Thread(target=self._thread_main, name="ykcproxy-nats", daemon=True)
        self._thread.start()
        self._log.info(
            "connecting to NATS {servers} (jetstream={jetstream}, subjects {prefix}.<ft>, uvloop={uvloop})",
            servers=self._shown_servers,
            uvloop=self.use_uvloop,
            jetstream=self.jetstream,
            prefix=self.subject_prefix,
        )
        return d

    #: Seconds publishes are gathered on the reactor thread before one hand-over.
    HANDOVER_DELAY = 0.005

    def publish_batch(self, messages: Sequence[Message]) -> Deferred[None]:
        """Publish several messages in order; fires once all are confirmed.

        Fails (with the first error) if any is not: the delivery loop then sends
        the whole group again, so a pile's order holds (JetStream drops the
        duplicates by ``Nats-Msg-Id``; consumers of plain NATS deduplicate by
        ``messageId``).
        """
        if not messages:
            return succeed(None)
        if self._state != "running":
            return fail(PublishError(f"NATS publisher is {self._state}, not running"))
        d: Deferred[None] = Deferred()
        outcome = _GroupOutcome(d, len(messages))
        deadline = time.monotonic() + self.publish_timeout
        self._inbox.extend([_Item(m, outcome, deadline) for m in messages])
        self._schedule_hand_over()
        return d

    def publish(self, message: Message) -> Deferred[None]:
        """Hand ``message`` to the NATS thread; see the module docstring for when it fires."""
        if self._state != "running":
            return fail(PublishError(f"NATS publisher is {self._state}, not running"))
        d: Deferred[None] = Deferred()
        item = _Item(message, d, time.monotonic() + self.publish_timeout)
        self._inbox.append(item)
        self._schedule_hand_over()
        return d

    def _schedule_hand_over(self) -> None:
        if not self._inbox_scheduled:
            # Hand over at most every HANDOVER_DELAY: everything published meanwhile
            # (every pile read in those turns) goes to the NATS thread in one wake-up.
            # At a steady 2,000 messages/s that is ~10 per wake-up instead of one.
            self._inbox_scheduled = True
            self._hand_over_call = self._reactor.callLater(self.HANDOVER_DELAY, self._hand_over)

    def _hand_over(self) -> None:
        self._hand_over_call = None
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: only if the thread died
            self._inbox_scheduled = False
            while self._inbox:
                self._inbox.popleft().deferred.errback(PublishError("the NATS thread is not running"))

    def stop(self) -> Deferred[None]:
        """Fail new publishes, wait (up to ``stop_timeout``) for the confirmations
        of messages already handed over, fail the rest, close the connection and
        join the NATS thread."""
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._stop_waiters.append(d)
        if self._state == "stopping":
            return d
        call, self._hand_over_call = self._hand_over_call, None
        if call is not None and call.active():  # what was published goes first
            call.cancel()
            self._hand_over()
        self._state = "stopping"
        self._fail_start("the NATS publisher was stopped before it connected")
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._begin_shutdown)
        except RuntimeError:
            self._reactor.callLater(0, self._thread_finished)
            return d
        # Never hang a shutdown on a stuck NATS thread (it is a daemon thread).
        self._stop_guard = self._reactor.callLater(self.stop_timeout + 10.0, self._stop_overdue)
        return d

    def health(self) -> dict[str, Any]:
        """``ok`` is false, with a ``reason``, while not connected, while JetStream is
        unavailable (JetStream mode), or after ``failures_to_degrade`` failed publishes
        in a row."""
        reason = None
        if not self._connected:
            reason = f"not connected to NATS ({self._last_error or 'connecting'})"
        elif self._js_state == "unavailable":
            reason = self._js_reason
        elif self._failing >= self.failures_to_degrade:
            reason = f"the last {self._failing} publishes failed: {self._last_failure}"
        return {
            "ok": reason is None,
            "reason": reason,
            "servers": self._shown_servers,
            "jetstream": self.jetstream,
            "jetstreamState": self._js_state,
            "failingInARow": self._failing,
            "lastPublishError": self._last_failure,
            "subjectPrefix": self.subject_prefix,
            "connectedServer": self._connected_server,
            "lastError": self._last_error,
            **self._stats,
        }

    # ------------------------------------------------------------------
    # reactor thread internals

    def _start_succeeded(self) -> None:
        if self._start_timer is not None and self._start_timer.active():
            self._start_timer.cancel()
        self._start_timer = None
        d, self._start_d = self._start_d, None
        if d is not None:
            d.callback(None)

    def _fail_start(self, reason: str) -> None:
        if self._start_timer is not None and self._start_timer.active():
            self._start_timer.cancel()
        self._start_timer = None
        d, self._start_d = self._start_d, None
        if d is not None:
            self._log.error("NATS publisher not started: {reason}", reason=reason)
            d.errback(NatsConnectError(reason))

    def _start_timed_out(self) -> None:
        self._start_timer = None
        last = self._last_error or "no answer"
        self._fail_start(
            f"could not connect to NATS server(s) {', '.join(self._shown_servers)} "
            f"within {self.connect_timeout:g} s: {last} (still retrying)"
        )

    def _deliver_results(self) -> None:
        self._results_scheduled = False
        results = self._results
        while results:
            items, error = results.popleft()
            if error is None:
                self._failing = 0
                for item in items:
                    item.deferred.callback(None)
            else:
                self._failing += len(items)
                self._last_failure = error
                for item in items:
                    item.deferred.errback(PublishError(error))

    #: Seconds between checks that the NATS thread has ended, after it said it is finishing.
    JOIN_POLL = 0.01

    def _thread_finished(self) -> None:
        """The NATS thread's last act was to schedule this: wait for it to end, without blocking.

        The reactor thread never joins (a join could stall it while the thread
        is still unwinding); it checks ``is_alive()`` on the reactor's clock
        until the thread has ended, then finishes the stop.  (The stop guard
        still abandons a thread that never ends.)
        """
        if self._state == "stopped":  # abandoned by the stop guard meanwhile
            return
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._reactor.callLater(self.JOIN_POLL, self._thread_finished)
            return
        self._finish_stop()

    def _stop_overdue(self) -> None:
        self._stop_guard = None
        self._log.error("the NATS thread did not stop in time; abandoning it")
        self._finish_stop()

    def _finish_stop(self) -> None:
        if self._stop_guard is not None and self._stop_guard.active():
            self._stop_guard.cancel()
        self._stop_guard = None
        self._deliver_results()
        self._state = "stopped"
        self._connected = False
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)

    # ------------------------------------------------------------------
    # NATS thread

    def _call_in_reactor(self, f: Any, *args: Any, **kwargs: Any) -> None:
        self._reactor.callFromThread(f, *args, **kwargs)

    def _log_from_thread(self, level: str, fmt: str, **fields: Any) -> None:
        self._call_in_reactor(getattr(self._log, level), fmt, **fields)

    def _thread_main(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._up = asyncio.Event()
            self._wakeup = asyncio.Event()
            self._supervisor_task = loop.create_task(self._supervise())
            self._pump_task = loop.create_task(self._pump())
            loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._call_in_reactor(self._thread_finished)

    def _wake(self) -> None:
        assert self._wakeup is not None
        self._wakeup.set()

    def _report(self, items: list[_Item], error: str | None) -> None:
        """Send outcomes to the reactor thread (one callFromThread per batch)."""
        if not items:
            return
        self._stats["confirmed" if error is None else "failed"] += len(items)
        self._results.append((items, error))
        if not self._results_scheduled:
            self._results_scheduled = True
            self._call_in_reactor(self._deliver_results)

    def _subject(self, ft: str) -> str:
        subject = self._subjects.get(ft)
        if subject is None:
            subject = self._subjects[ft] = f"{self.subject_prefix}.{ft}"
        return subject

    # -- connection ----------------------------------------------------

    async def _supervise(self) -> None:
        """Keep a client connected: nats-py reconnects forever by itself, but
        closes for good on some server errors; then start a new client."""
        while not self._stopping:
            nc = NATSClient()
            closed = asyncio.Event()
            self._nc = nc
            self._js = None
            if self.jetstream:
                self._js = nc.jetstream(publish_async_max_pending=self.max_pending_acks)
            try:
                await nc.connect(
                    servers=self.servers,
                    user=self.username,
                    password=self._password,
                    name=self.client_name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self.reconnect_wait,  # type: ignore[arg-type]
                    connect_timeout=min(2.0, self.connect_timeout),  # type: ignore[arg-type]
                    pending_size=self.reconnect_buffer_size,
                    flush_timeout=self.publish_timeout,
                    dont_randomize=False,
                    tls=self._tls,
                    error_cb=partial(self._on_error, nc),
                    disconnected_cb=partial(self._on_disconnected, nc),
                    reconnected_cb=partial(self._on_reconnected, nc),
                    closed_cb=partial(self._on_closed, nc, closed),
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:  # not expected with max_reconnect_attempts=-1
                self._last_error = _describe(e)
                self._log_from_thread("warn", "NATS connect failed: {error}", error=self._last_error)
                await asyncio.sleep(max(self.reconnect_wait, 0.1))
                continue
            self._connection_up(nc, first=True)
            await closed.wait()
            if self._stopping:
                return
            self._log_from_thread(
                "warn",
                "NATS client closed the connection for good ({error}); starting a new client",
                error=self._last_error or "no error reported",
            )
            await asyncio.sleep(max(self.reconnect_wait, 0.1))

    def _connection_up(self, nc: NATSClient, first: bool) -> None:
        assert self._up is not None and self._wakeup is not None
        if nc is not self._nc:
            return
        self._gen += 1
        self._lost = asyncio.get_running_loop().create_future()
        self._up.set()
        self._connected = True
        url = nc.connected_url
        self._connected_server = redact_server(url.geturl()) if url is not None else None
        self._error_logged = None
        if self.jetstream:
            self._js_state = "probing"
            asyncio.get_running_loop().create_task(self._probe_jetstream(self._gen))
        if not self._ever_connected:
            self._ever_connected = True
            self._wakeup.set()  # the backlog held until now can go
            self._call_in_reactor(self._start_succeeded)
        if first:
            self.shared.connected(nc)
            self._log_from_thread("info", "connected to NATS {server}", server=self._connected_server)
        else:
            self._stats["reconnects"] += 1
            self._log_from_thread("info", "reconnected to NATS {server}", server=self._connected_server)

    def _connection_down(self, nc: NATSClient) -> bool:
        assert self._up is not None
        if nc is not self._nc or not self._up.is_set():
            return False
        self._up.clear()
        self._connected = False
        self._connected_server = None
        if self.jetstream:
            self._js_state = "unknown"  # publishes are held until the next connection's probe
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        return True

    async def _on_error(self, nc: NATSClient, e: Exception) -> None:
        if nc is not self._nc:
            return
        self._last_error = _describe(e)
        if self._error_logged != self._last_error:
            # Log each distinct error once per outage, not every reconnect attempt.
            self._error_logged = self._last_error
            self._log_from_thread("warn", "NATS: {error}", error=self._last_error)
        if _is_auth_error(e) and not self._ever_connected:
            user = f" of user {self.username!r}" if self.username else ""
            reason = (
                f"NATS server(s) {', '.join(self._shown_servers)} refused the credentials{user}: "
                f"{self._last_error} (still retrying)"
            )
            self._call_in_reactor(self._fail_start, reason)

    async def _on_disconnected(self, nc: NATSClient) -> None:
        if self._connection_down(nc) and not self._stopping:
            self._log_from_thread("warn", "disconnected from NATS; reconnecting (messages are buffered)")

    async def _on_reconnected(self, nc: NATSClient) -> None:
        self._connection_up(nc, first=False)

    async def _on_closed(self, nc: NATSClient, closed: asyncio.Event) -> None:
        if nc is self._nc:
            self._connection_down(nc)
            # What this client buffered for its next connection is gone with it:
            # skip a number so that the next client's first connection does not
            # confirm it.
            self._gen += 1
        closed.set()

    # -- JetStream availability -----------------------------------------

    async def _probe_jetstream(self, gen: int) -> None:
        """Ask the server for the JetStream account info; set ``_js_state`` by the answer.

        Without JetStream on the server nobody answers ``$JS.API.INFO``, and a
        JetStream publish would get no ack: it would fail after
        ``publish_timeout``, or at once as "no responders" and look like a
        missing stream.  So it is asked once per connection, and again every
        ``jetstream_probe_interval`` while unavailable.
        """
        js = self._js
        if js is None or gen != self._gen or self._stopping:
            return
        try:
            info = await asyncio.wait_for(js.account_info(), self.jetstream_probe_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            assert self._up is not None
            if gen != self._gen or self._stopping or not self._up.is_set():
                return  # the connection went away: the next one is probed
            self._set_js_state("unavailable", self._explain_probe(e))
            loop = asyncio.get_running_loop()
            loop.call_later(
                self.jetstream_probe_interval,
                lambda: loop.create_task(self._probe_jetstream(gen)),
            )
        else:
            if gen != self._gen:
                return
            self._set_js_state("available", None, streams=getattr(info, "streams", None))
        self._wake()

    def _explain_probe(self, e: BaseException) -> str:
        server = self._connected_server or ", ".join(self._shown_servers)
        no_responders = isinstance(e, nats.js.errors.ServiceUnavailableError) and not getattr(
            e, "description", None
        )  # nats-py's form of a 503 "no responders" status
        if no_responders or isinstance(e, nats.errors.NoRespondersError):
            return (
                f"JetStream is not enabled on the NATS server {server} (nobody answers $JS.API.INFO): "
                "start nats-server with -js, or use --natsJetStream false"
            )
        if isinstance(e, asyncio.TimeoutError | nats.errors.TimeoutError):
            return (
                f"the NATS server {server} did not answer the JetStream account info request within "
                f"{self.jetstream_probe_timeout:g} s (JetStream not enabled, or not for this account)"
            )
        if isinstance(e, nats.js.errors.APIError):
            detail = getattr(e, "description", None) or str(e)
            return f"JetStream is not available on the NATS server {server} for this account: {detail}"
        return f"the JetStream account info request to {server} failed: {_describe(e)}"

    def _set_js_state(self, state: str, reason: str | None, streams: int | None = None) -> None:
        """Record what the probe found; log each change once (not every re-probe)."""
        self._js_state = state
        self._js_reason = reason
        logged = reason if state == "unavailable" else state
        if logged == self._js_logged:
            return
        self._js_logged = logged
        if state == "unavailable":
            self._log_from_thread(
                "error",
                "NATS JetStream unavailable: {reason}; every publish fails at once until it is available",
                reason=reason,
                jetstream_state=state,
            )
        else:
            self._log_from_thread(
                "info",
                "NATS JetStream available ({streams} streams in the account)",
                streams=streams,
                jetstream_state=state,
            )

    # -- publishing ----------------------------------------------------

    async def _pump(self) -> None:
        """Move messages from the inbox into nats-py, in order."""
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._inbox_scheduled = False
            inbox = self._inbox
            for _ in range(len(inbox)):
                self._backlog.append(inbox.popleft())
            if not self._ever_connected:
                # Do not let nats-py buffer before its first connection: it
                # writes that buffer into a failed socket between attempts.
                self._expire_backlog()
            else:
                await self._publish_backlog()
            if self._stopping and (not self._backlog or not self._ever_connected):
                return

    def _expire_backlog(self, error: str | None = None) -> None:
        """Fail what is past its deadline in the backlog (held, not handed to nats-py);
        wake the pump at the next deadline."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        expired = []
        while self._backlog and self._backlog[0].deadline <= now:
            expired.append(self._backlog.popleft())
        self._report(expired, error or f"not connected to NATS ({self._last_error or 'connecting'})")
        if self._backlog_timer is not None:
            self._backlog_timer.cancel()
            self._backlog_timer = None
        if self._backlog:
            self._backlog_timer = loop.call_later(self._backlog[0].deadline - now, self._wake)

    async def _publish_backlog(self) -> None:
        assert self._up is not None
        nc = self._nc
        assert nc is not None
        backlog = self._backlog
        js = self._js
        if js is not None and self._js_state != "available":
            if self._js_state == "unavailable":
                # Fail at once: a JetStream publish would wait publish_timeout for an ack
                # that never comes (or be answered by a plain subscriber, or no one).
                expired = list(backlog)
                backlog.clear()
                self._report(expired, f"{self._js_reason}; not published")
            else:  # held until the probe of this connection (or of the next one) answered
                waiting = (
                    "waiting for the JetStream check"
                    if self._js_state == "probing"
                    else f"not connected: {self._last_error or 'disconnected'}"
                )
                self._expire_backlog(f"no JetStream ack within {self.publish_timeout:g} s ({waiting})")
            return
        count = 0
        while backlog:
            item = backlog.popleft()
            now = time.monotonic()
            if item.deadline <= now:
                self._report([item], "timed out before it could be handed to the NATS client")
                continue
            message = item.message
            subject = self._subject(message.ft)
            try:
                if js is not None:
                    future = await js.publish_async(
                        subject,
                        message.payload,
                        wait_stall=item.deadline - now,
                        headers={"Nats-Msg-Id": message.message_id},
                    )
                else:
                    # The connection this PUB goes out on: the current one, or
                    # the next one when nats-py buffers it while reconnecting.
                    item.gen = self._gen if self._up.is_set() and nc.is_connected else self._gen + 1
                    await nc.publish(subject, message.payload)
            except asyncio.CancelledError:
                backlog.appendleft(item)
                raise
            except Exception as e:
                self._report([item], self._explain(e, subject, message))
                continue
            self._stats["published"] += 1
            if js is not None:
                self._watch_ack(item, future)
            else:
                self._unconfirmed.append(item)
                if self._confirm_task is None:
                    self._confirm_task = asyncio.get_running_loop().create_task(self._confirm_loop())
            count += 1
            if count % 512 == 0:
                await asyncio.sleep(0)  # let the flusher write and the reader read

    def _explain(self, e: BaseException, subject: str, message: Message) -> str:
        if isinstance(e, nats.js.errors.NoStreamResponseError):
            return (
                f"no JetStream stream is bound to subject {subject!r} "
                f"(create one for '{self.subject_prefix}.>')"
            )
        if isinstance(e, nats.js.errors.TooManyStalledMsgsError):
            return (
                f"{self.max_pending_acks} JetStream publishes already await their ack; "
                f"no slot within {self.publish_timeout:g} s"
            )
        if isinstance(e, nats.js.errors.APIError):
            return f"JetStream refused the message on {subject!r}: {e}"
        if isinstance(e, nats.errors.OutboundBufferLimitError):
            return (
                f"not connected to NATS and the reconnect buffer ({self.reconnect_buffer_size} bytes) is full"
                f" ({self._last_error or 'disconnected'})"
            )
        if isinstance(e, nats.errors.MaxPayloadError):
            return f"message of {len(message.payload)} bytes exceeds the NATS server's max_payload"
        if isinstance(e, nats.errors.ConnectionClosedError):
            return "the NATS connection is closed"
        return f"NATS publish on {subject!r} failed: {_describe(e)}"

    def _watch_ack(self, item: _Item, future: asyncio.Future[Any]) -> None:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(max(0.0, item.deadline - time.monotonic()), future.cancel)
        self._js_pending.add(future)
        future.add_done_callback(partial(self._ack_done, item, timer))

    def _ack_done(self, item: _Item, timer: asyncio.TimerHandle, future: asyncio.Future[Any]) -> None:
        timer.cancel()
        self._js_pending.discard(future)
        if future.cancelled():
            if self._stopping:
                error = "the NATS publisher stopped before the JetStream ack arrived"
            else:
                state = (
                    "connected" if self._connected else f"not connected: {self._last_error or 'disconnected'}"
                )
                error = f"no JetStream ack within {self.publish_timeout:g} s ({state})"
            self._report([item], error)
            return
        exc = future.exception()
        if exc is not None:
            self._report([item], self._explain(exc, self._subject(item.message.ft), item.message))
            return
        if getattr(future.result(), "duplicate", False):
            self._stats["duplicates"] += 1
        self._report([item], None)

    # -- plain-mode confirmations ---------------------------------------

    async def _confirm_loop(self) -> None:
        """One flush round trip at a time, each confirming all earlier PUBs."""
        try:
            while self._unconfirmed:
                batch = self._unconfirmed
                self._unconfirmed = []
                timeout = max(0.0, min(item.deadline for item in batch) - time.monotonic())
                try:
                    gen = await asyncio.wait_for(self._confirm_once(), timeout)
                except asyncio.CancelledError:
                    self._requeue(batch)  # stop() reports them
                    raise
                except TimeoutError:
                    now = time.monotonic()
                    expired = [item for item in batch if item.deadline <= now + 0.001]
                    state = (
                        "connected"
                        if self._connected
                        else f"not connected: {self._last_error or 'disconnected'}"
                    )
                    self._report(
                        expired,
                        f"the NATS server did not confirm within {self.publish_timeout:g} s ({state})",
                    )
                    self._requeue([item for item in batch if item.deadline > now + 0.001])
                    continue
                except _ConnectionLost as lost:
                    self._report(
                        [item for item in batch if item.gen <= lost.gen],
                        "the connection to NATS was lost before the server confirmed the message",
                    )
                    self._requeue([item for item in batch if item.gen > lost.gen])
                    continue
                except Exception as e:
                    self._report(batch, f"NATS flush failed: {_describe(e)}")
                    continue
                self._stats["flushes"] += 1
                if batch[0].gen == gen:  # gens never decrease along the batch: all of it
                    self._report(batch, None)
                    continue
                self._report([item for item in batch if item.gen == gen], None)
                self._report(
                    [item for item in batch if item.gen != gen],
                    "the connection to NATS was lost before the server confirmed the message",
                )
        finally:
            self._confirm_task = None

    def _requeue(self, items: list[_Item]) -> None:
        if items:
            self._unconfirmed[:0] = items

    async def _confirm_once(self) -> int:
        """Wait for a connection, make sure nats-py wrote what it buffered,
        then PING/PONG; return the number of the connection that answered."""
        assert self._up is not None
        while not self._up.is_set():
            await self._up.wait()
        nc = self._nc
        lost = self._lost
        gen = self._gen
        assert nc is not None and lost is not None
        await self._until(self._written(nc), lost, gen)
        if not nc.is_connected:
            raise _ConnectionLost(gen)
        await self._until(nc.flush(timeout=self.publish_timeout), lost, gen)  # type: ignore[arg-type]
        if not nc.is_connected or gen != self._gen:
            # nats-py's flush() returns at once, without a round trip, when
            # its reader task has ended -- i.e. the connection is going away.
            raise _ConnectionLost(gen)
        return gen

    async def _until(self, coro: Any, lost: asyncio.Future[None], gen: int) -> None:
        """Run ``coro`` unless the connection is lost first."""
        task = asyncio.ensure_future(coro)
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if not task.done() or task.cancelled():
            raise _ConnectionLost(gen)
        task.result()

    @staticmethod
    async def _written(nc: NATSClient) -> None:
        """Wait until nats-py's flusher task wrote every PUB buffered so far.

        nats-py writes a flush() PING straight to the socket, while PUBs wait
        in its pending buffer for its flusher task: a flush() right after
        publish() can be answered before the PUBs even left.  The flusher
        resolves the futures in its queue after writing the buffer.
        """
        queue = getattr(nc, "_flush_queue", None)
        if queue is None:  # another nats-py version: a first PING kicks the flusher
            await nc.flush()
            return
        written = asyncio.get_running_loop().create_future()
        await queue.put(written)
        await written

    # -- shutdown --------------------------------------------------------

    def _begin_shutdown(self) -> None:
        self._stopping = True
        asyncio.get_running_loop().create_task(self._shutdown())

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        deadline = time.monotonic() + self.stop_timeout
        try:
            # 1. hand over what was published before stop()
            self._wakeup.set()
            if self._pump_task is not None:
                await asyncio.wait({self._pump_task}, timeout=max(0.0, deadline - time.monotonic()))
            # 2. wait for the confirmations
            if self._confirm_task is not None:
                await asyncio.wait({self._confirm_task}, timeout=max(0.0, deadline - time.monotonic()))
            if self._js_pending:
                await asyncio.wait(set(self._js_pending), timeout=max(0.0, deadline - time.monotonic()))
            # 3. fail whatever is left
            for task in (self._pump_task, self._confirm_task):
                if task is not None and not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            leftovers = list(self._backlog) + self._unconfirmed
            while self._inbox:
                leftovers.append(self._inbox.popleft())
            self._backlog.clear()
            self._unconfirmed = []
            self._report(leftovers, "the NATS publisher stopped before the message was confirmed")
            for future in list(self._js_pending):
                future.cancel()  # reported by _ack_done
            # 4. close the connection
            nc = self._nc
            if nc is not None and not nc.is_closed:
                try:
                    await asyncio.wait_for(nc.close(), 5.0)
                except Exception as e:  # e.g. closing while reconnecting
                    self._log_from_thread("info", "closing the NATS connection: {error}", error=_describe(e))
            self._connected = False
            if self._supervisor_task is not None and not self._supervisor_task.done():
                self._supervisor_task.cancel()
                await asyncio.gather(self._supervisor_task, return_exceptions=True)
            await asyncio.sleep(0)  # let the done-callbacks of cancelled ack futures run
            self._log_from_thread("info", "NATS publisher stopped")
        finally:
            loop.stop()
