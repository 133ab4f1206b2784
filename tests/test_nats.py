"""NatsPublisher against a real nats-server (core NATS, user/password, JetStream)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.protocols import portforward
from twisted.trial.unittest import TestCase

from tests.nats_server import NatsServer, connect_client, timeout_deferred
from tests.support import settle, until
from ykcproxy.forward.base import IPublisher, Message, PublishError
from ykcproxy.forward.nats import NatsConnectError, NatsPublisher, _GroupOutcome

reactor: Any = _reactor
PILE = "32010200000001"
FTS = ["03", "13", "3b", "online"]


def message(i: int, ft: str | None = None, message_id: str | None = None) -> Message:
    ft = ft or FTS[i % len(FTS)]
    mid = message_id or f"{PILE}-{i}"
    payload = json.dumps(
        {"header": {"frameId": ft, "messageId": mid, "seq": i, "raw": "68" + "0" * 300}, "id": PILE, "n": i}
    ).encode()
    return Message(ft=ft, pile_id=PILE, message_id=mid, payload=payload)


class CuttableProxy(portforward.ProxyFactory):
    """A TCP proxy whose connections can be cut, losing what is in flight."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.noisy = False
        self.protocols: list[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.protocols.append(protocol)
        return protocol

    def cut(self) -> None:
        for protocol in self.protocols:
            protocol.transport.abortConnection()
            if protocol.peer is not None:
                protocol.peer.transport.abortConnection()
        self.protocols = []


class NatsCase(TestCase):
    timeout = 20

    @inlineCallbacks
    def server(self, **kwargs: Any) -> Any:
        server = NatsServer(reactor, **kwargs)
        self.addCleanup(server.cleanup)
        yield server.start()
        return server

    def publisher(self, url: str, **kwargs: Any) -> NatsPublisher:
        options: dict[str, Any] = {
            "reactor": reactor,
            "connect_timeout": 3.0,
            "publish_timeout": 3.0,
            "reconnect_wait": 0.05,
            "stop_timeout": 2.0,
        }
        options.update(kwargs)
        pub = NatsPublisher([url], **options)
        self.addCleanup(pub.stop)
        return pub

    @inlineCallbacks
    def subscriber(self, server: NatsServer, subject: str = "charge.proxy.ykc.>", **auth: Any) -> Any:
        client = yield connect_client(server.port, **auth)
        self.addCleanup(client.transport.loseConnection)
        sid = client.subscribe(subject)
        yield client.ping()  # the SUB is in place
        return client, sid

    @inlineCallbacks
    def closed_port_url(self) -> Any:
        """The address of a port where nothing listens (a server that was stopped)."""
        server = yield self.server()
        yield server.stop()
        return server.url

    @inlineCallbacks
    def assert_fails_within(self, d: Deferred[Any], seconds: float, error: type, *texts: str) -> Any:
        started = reactor.seconds()
        f = yield self.assertFailure(timeout_deferred(d, seconds + 5, "the failure"), error)
        elapsed = reactor.seconds() - started
        self.assertLess(elapsed, seconds, f"failed only after {elapsed:.2f} s: {f}")
        for text in texts:
            self.assertIn(text, str(f))
        return f


class Plain(NatsCase):
    def test_interface(self) -> None:
        pub = NatsPublisher(["127.0.0.1:4222"], reactor=reactor)
        self.assertTrue(IPublisher.providedBy(pub))
        self.assertEqual(pub.servers, ["nats://127.0.0.1:4222"])
        self.assertEqual(pub.name, "nats")
        self.assertRaises(ValueError, NatsPublisher, [], reactor=reactor)
        self.assertRaises(ValueError, NatsPublisher, ["x"], subject_prefix="a.*", reactor=reactor)
        self.assertRaises(ValueError, NatsPublisher, ["http://x"], reactor=reactor)

    @inlineCallbacks
    def test_in_order_subject_and_payload(self) -> Any:
        server = yield self.server()
        client, sid = yield self.subscriber(server)
        pub = self.publisher(server.url)
        yield pub.start()
        self.assertTrue(pub.health()["ok"])
        count = 3000
        sent = [message(i) for i in range(count)]
        yield gatherResults([pub.publish(m) for m in sent])
        got = yield client.wait_for(sid, count)
        self.assertEqual([m.subject for m in got], [f"charge.proxy.ykc.{m.ft}" for m in sent])
        self.assertEqual([m.payload for m in got], [m.payload for m in sent])
        health = pub.health()
        self.assertEqual((health["published"], health["confirmed"], health["failed"]), (count, count, 0))
        # Flushes are coalesced: far fewer PING/PONG round trips than messages.
        self.assertLessEqual(health["flushes"], count // 50)
        self.assertGreaterEqual(health["flushes"], 1)
        # ...and messages published one reactor turn at a time are confirmed too.
        for i in range(5):
            yield pub.publish(message(count + i))
        got = yield client.wait_for(sid, count + 5)
        self.assertEqual(json.loads(got[-1].payload)["n"], count + 4)

    @inlineCallbacks
    def test_groups(self) -> Any:
        """publish_batch: one Deferred per group, fired once all its messages are confirmed."""
        server = yield self.server()
        client, sid = yield self.subscriber(server)
        pub = self.publisher(server.url)
        yield pub.start()
        groups = [[message(g * 100 + i) for i in range(100)] for g in range(5)]
        results = yield gatherResults([pub.publish_batch(group) for group in groups])
        self.assertEqual(results, [None] * 5)
        got = yield client.wait_for(sid, 500)
        self.assertEqual([json.loads(m.payload)["n"] for m in got], list(range(500)))
        self.assertEqual(pub.health()["confirmed"], 500)
        yield pub.publish_batch([])  # nothing to send: fires at once
        yield pub.stop()
        yield self.assertFailure(pub.publish_batch([message(600)]), PublishError)

    @inlineCallbacks
    def test_group_fails_once_when_the_server_is_gone(self) -> Any:
        server = yield self.server()
        pub = self.publisher(server.url, publish_timeout=0.5)
        yield pub.start()
        yield server.stop()
        yield until(lambda: not pub.health()["ok"])
        group = pub.publish_batch([message(i) for i in range(10)])
        yield self.assert_fails_within(group, 5.0, PublishError)

    def test_group_outcome(self) -> None:
        """The first failure fails the group; later outcomes of its messages are ignored."""
        d: Deferred[None] = Deferred()
        outcome = _GroupOutcome(d, 3)
        fired: list[Any] = []
        d.addBoth(fired.append)
        outcome.callback(None)
        outcome.callback(None)
        self.assertEqual(fired, [])
        outcome.callback(None)
        self.assertEqual(fired, [None])
        d2: Deferred[None] = Deferred()
        failed = _GroupOutcome(d2, 3)
        fired2: list[Any] = []
        d2.addBoth(fired2.append)
        failed.callback(None)
        failed.errback(PublishError("first"))
        failed.errback(PublishError("second"))
        failed.callback(None)
        self.assertEqual(len(fired2), 1)
        self.assertEqual(str(fired2[0].value), "first")

    @inlineCallbacks
    def test_subject_prefix(self) -> Any:
        server = yield self.server()
        client, sid = yield self.subscriber(server, "ev.ykc.>")
        pub = self.publisher(server.url, subject_prefix="ev.ykc")
        yield pub.start()
        yield pub.publish(message(0, ft="online"))
        got = yield client.wait_for(sid, 1)
        self.assertEqual(got[0].subject, "ev.ykc.online")

    @inlineCallbacks
    def test_stop(self) -> Any:
        server = yield self.server()
        pub = self.publisher(server.url)
        yield pub.start()
        last = pub.publish(message(1))
        yield pub.stop()
        yield last  # handed over before stop(): confirmed, not dropped
        yield self.assertFailure(pub.publish(message(2)), PublishError)
        yield pub.stop()
        self.assertFalse(pub.health()["ok"])

    @inlineCallbacks
    def test_no_server(self) -> Any:
        url = yield self.closed_port_url()
        pub = self.publisher(url, connect_timeout=0.5, publish_timeout=0.5)
        publish = pub.publish(message(0))  # before start: refused at once
        yield self.assertFailure(publish, PublishError)
        f = yield self.assert_fails_within(pub.start(), 1.5, NatsConnectError, url, "within 0.5 s")
        self.assertIn("refused", str(f).lower())
        yield self.assert_fails_within(pub.publish(message(1)), 1.5, PublishError, "not connected")
        self.assertFalse(pub.health()["ok"])

    @inlineCallbacks
    def test_server_gone(self) -> Any:
        server = yield self.server()
        pub = self.publisher(server.url, publish_timeout=0.5)
        yield pub.start()
        yield server.stop()
        yield self.assert_fails_within(pub.publish(message(0)), 1.5, PublishError)
        self.assertFalse(pub.health()["ok"])

    @inlineCallbacks
    def test_buffered_while_disconnected(self) -> Any:
        server = yield self.server()
        pub = self.publisher(server.url)
        yield pub.start()
        yield server.stop(kill=True)
        # (published before the publisher notices, they could fail: they may
        # have gone into the dead socket)
        yield until(lambda: not pub.health()["ok"])
        pending = [pub.publish(message(i)) for i in range(3)]
        yield server.start()
        yield gatherResults(pending)  # sent and confirmed after the reconnect
        self.assertGreaterEqual(pub.health()["reconnects"], 1)
        client, sid = yield self.subscriber(server)
        yield pub.publish(message(9))
        got = yield client.wait_for(sid, 1)
        self.assertEqual(json.loads(got[0].payload)["n"], 9)

    @inlineCallbacks
    def test_confirmed_means_received(self) -> Any:
        """Cut the publisher's connection (through a proxy) while it publishes:
        every message whose Deferred succeeded reached the server."""
        server = yield self.server()
        client, sid = yield self.subscriber(server)
        proxy = CuttableProxy("127.0.0.1", server.port)
        port = reactor.listenTCP(0, proxy, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(proxy.cut)
        pub = self.publisher(f"nats://127.0.0.1:{port.getHost().port}", publish_timeout=2.0)
        yield pub.start()
        outcomes: dict[int, bool] = {}
        ds = []
        for tick in range(60):
            for i in range(tick * 100, tick * 100 + 100):
                d = pub.publish(message(i))
                d.addCallbacks(
                    lambda _, i=i: outcomes.__setitem__(i, True),
                    lambda f, i=i: outcomes.__setitem__(i, False),
                )
                ds.append(d)
            if tick in (20, 40):
                proxy.cut()
            yield deferLater(reactor, 0.002, lambda: None)
        yield gatherResults(ds)
        yield client.ping()
        yield deferLater(reactor, 0.1, lambda: None)
        received = {json.loads(m.payload)["n"] for m in client.messages[sid]}
        confirmed = {i for i, ok in outcomes.items() if ok}
        self.assertEqual(len(outcomes), 6000)
        self.assertEqual(confirmed - received, set())
        self.assertGreater(len(confirmed), 3000)
        self.assertGreaterEqual(pub.health()["reconnects"], 2)

    @inlineCallbacks
    def test_client_closed_for_good_is_replaced(self) -> Any:
        """nats-py closes a client for good on some server errors; a new one takes over."""
        server = yield self.server()
        client, sid = yield self.subscriber(server)
        pub = self.publisher(server.url)
        yield pub.start()
        first = pub._nc
        pub._loop.call_soon_threadsafe(lambda: pub._loop.create_task(first.close()))  # type: ignore
        yield until(lambda: pub._nc is not first and pub.health()["ok"])
        yield pub.publish(message(7))
        got = yield client.wait_for(sid, 1)
        self.assertEqual(json.loads(got[0].payload)["n"], 7)

    @inlineCallbacks
    def test_waits_for_first_connection(self) -> Any:
        server = yield self.server()
        yield server.stop()
        pub = self.publisher(server.url, connect_timeout=5.0)
        started = pub.start()
        early = pub.publish(message(0))
        yield server.start()
        yield started
        yield early


class PlainStdlibLoop(Plain):
    """The same, with the NATS thread on the stdlib asyncio loop instead of uvloop."""

    def publisher(self, url: str, **kwargs: Any) -> NatsPublisher:
        pub = super().publisher(url, use_uvloop=False, **kwargs)
        self.assertFalse(pub.use_uvloop)
        return pub


class Auth(NatsCase):
    @inlineCallbacks
    def test_user_password(self) -> Any:
        server = yield self.server(user="ykc", password="s3cret")
        client, sid = yield self.subscriber(server, user="ykc", password="s3cret")
        pub = self.publisher(server.url, username="ykc", password="s3cret")
        yield pub.start()
        yield gatherResults([pub.publish(message(i)) for i in range(10)])
        got = yield client.wait_for(sid, 10)
        self.assertEqual(len(got), 10)

    @inlineCallbacks
    def test_wrong_password(self) -> Any:
        server = yield self.server(user="ykc", password="s3cret")
        pub = self.publisher(server.url, username="ykc", password="wrong")
        yield self.assert_fails_within(
            pub.start(), 2.0, NatsConnectError, "Authorization Violation", server.url, "'ykc'"
        )
        self.assertNotIn("wrong", str(pub.health()))

    @inlineCallbacks
    def test_missing_credentials(self) -> Any:
        server = yield self.server(user="ykc", password="s3cret")
        pub = self.publisher(server.url)
        yield self.assert_fails_within(pub.start(), 2.0, NatsConnectError, "Authorization Violation")


class JetStream(NatsCase):
    @inlineCallbacks
    def stream_server(self, stream: bool = True) -> Any:
        server = yield self.server(jetstream=True)
        if stream:
            client = yield connect_client(server.port)
            yield client.add_stream("YKC", ["charge.proxy.ykc.>"], storage="file")
            client.transport.loseConnection()
        return server

    @inlineCallbacks
    def stored(self, server: NatsServer) -> Any:
        client = yield connect_client(server.port)
        try:
            msgs = yield client.stream_messages("YKC")
        finally:
            client.transport.loseConnection()
        return msgs

    @inlineCallbacks
    def test_acks_order_and_dedup(self) -> Any:
        server = yield self.stream_server()
        pub = self.publisher(server.url, jetstream=True)
        yield pub.start()
        sent = [message(i) for i in range(200)]
        yield gatherResults([pub.publish(m) for m in sent])
        stored = yield self.stored(server)
        self.assertEqual([m.payload for m in stored], [m.payload for m in sent])
        self.assertEqual([m.subject for m in stored], [f"charge.proxy.ykc.{m.ft}" for m in sent])
        self.assertEqual([m.headers["Nats-Msg-Id"] for m in stored], [m.message_id for m in sent])
        # The same messageId again (a pile resending its record): acked, stored once.
        yield pub.publish(message(999, message_id=sent[5].message_id))
        stored = yield self.stored(server)
        self.assertEqual(len(stored), 200)
        self.assertEqual(pub.health()["duplicates"], 1)

    @inlineCallbacks
    def test_no_stream(self) -> Any:
        server = yield self.stream_server(stream=False)
        pub = self.publisher(server.url, jetstream=True)
        yield pub.start()
        yield self.assert_fails_within(
            pub.publish(message(0)), 1.0, PublishError, "no JetStream stream", "charge.proxy.ykc.03"
        )

    @inlineCallbacks
    def test_published_while_down_is_stored_after_restart(self) -> Any:
        server = yield self.stream_server()
        pub = self.publisher(server.url, jetstream=True, publish_timeout=5.0)
        yield pub.start()
        yield pub.publish(message(0))
        yield server.stop()
        during = pub.publish(message(1))
        yield server.start()
        yield during
        stored = yield self.stored(server)  # message 0 survived the restart (file storage)
        self.assertEqual([json.loads(m.payload)["n"] for m in stored], [0, 1])

    @inlineCallbacks
    def test_ack_timeout(self) -> Any:
        server = yield self.stream_server()
        pub = self.publisher(server.url, jetstream=True, publish_timeout=0.5)
        yield pub.start()
        yield server.stop()
        yield self.assert_fails_within(pub.publish(message(0)), 1.5, PublishError, "no JetStream ack")


class NonBlockingStop(TestCase):
    """The reactor thread never waits for the NATS thread to end."""

    @inlineCallbacks
    def test_thread_still_unwinding_does_not_stall_the_reactor(self) -> Any:
        import threading
        import time

        pub = NatsPublisher(["127.0.0.1:1"], reactor=reactor)
        release = threading.Event()
        # A NATS thread that said it is finishing and still needs a while to end.
        pub._thread = threading.Thread(target=release.wait, args=(5.0,), daemon=True)
        pub._thread.start()
        self.addCleanup(release.set)
        pub._state = "stopping"
        stopped: Deferred[None] = Deferred()
        pub._stop_waiters.append(stopped)
        began = time.monotonic()
        pub._thread_finished()
        self.assertLess(time.monotonic() - began, 0.05, "the reactor thread waited for the NATS thread")
        self.assertFalse(stopped.called)
        reactor.callLater(0.2, release.set)
        yield timeout_deferred(stopped, 5.0, "stop")
        self.assertFalse(pub._thread.is_alive())
        self.assertEqual(pub._state, "stopped")

    @inlineCallbacks
    def test_real_stop_returns_at_once(self) -> Any:
        """stop() of a running publisher returns without blocking, and its Deferred fires."""
        import time

        server = NatsServer(reactor)
        self.addCleanup(server.cleanup)
        yield server.start()
        pub = NatsPublisher([server.url], reactor=reactor, connect_timeout=3.0)
        yield pub.start()
        began = time.monotonic()
        d = pub.stop()
        self.assertLess(time.monotonic() - began, 0.05)
        yield timeout_deferred(d, 10.0, "stop")
        self.assertEqual(pub._state, "stopped")


class JetStreamAvailability(NatsCase):
    """JetStream mode: whether the server has JetStream is found out when connecting."""

    def capture_log(self) -> list[dict[str, Any]]:
        from twisted.logger import globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    @inlineCallbacks
    def test_server_without_jetstream(self) -> Any:
        """Logged, degraded in health, and a publish fails at once (not after publish_timeout)."""
        events = self.capture_log()
        server = yield self.server()  # no -js
        client, _ = yield self.subscriber(server)  # a plain consumer: no "no responders" either
        pub = self.publisher(server.url, jetstream=True, publish_timeout=10.0)
        yield pub.start()
        yield until(lambda: pub.health()["jetstreamState"] == "unavailable")
        health = pub.health()
        self.assertIs(health["ok"], False)
        self.assertIn("JetStream is not enabled on the NATS server", health["reason"])
        f = yield self.assert_fails_within(
            pub.publish(message(0)), 1.0, PublishError, "JetStream is not enabled", "-js"
        )
        self.assertNotIn("no JetStream stream", str(f))
        (logged,) = [e for e in events if e.get("jetstream_state") == "unavailable"]
        self.assertEqual(logged["log_level"].name, "error")
        self.assertIn("-js", logged["reason"])

    @inlineCallbacks
    def test_server_with_jetstream(self) -> Any:
        events = self.capture_log()
        server = yield self.server(jetstream=True)
        client = yield connect_client(server.port)
        yield client.add_stream("YKC", ["charge.proxy.ykc.>"], storage="memory")
        client.transport.loseConnection()
        pub = self.publisher(server.url, jetstream=True)
        yield pub.start()
        yield pub.publish(message(0))  # waits for the probe, then is acked
        health = pub.health()
        self.assertEqual(
            (health["ok"], health["jetstreamState"], health["reason"]), (True, "available", None)
        )
        self.assertEqual(len([e for e in events if e.get("jetstream_state") == "available"]), 1)

    @inlineCallbacks
    def test_repeated_publish_failures_degrade_health(self) -> Any:
        server = yield self.server(jetstream=True)  # JetStream, but no stream for the subjects
        pub = self.publisher(server.url, jetstream=True, failures_to_degrade=3)
        yield pub.start()
        for i in range(2):
            yield self.assertFailure(pub.publish(message(i)), PublishError)
        self.assertIs(pub.health()["ok"], True)
        yield self.assertFailure(pub.publish(message(2)), PublishError)
        health = pub.health()
        self.assertIs(health["ok"], False)
        self.assertIn("the last 3 publishes failed: no JetStream stream", health["reason"])
        client = yield connect_client(server.port)
        yield client.add_stream("YKC", ["charge.proxy.ykc.>"], storage="memory")
        client.transport.loseConnection()
        yield pub.publish(message(3))
        self.assertEqual((pub.health()["ok"], pub.health()["failingInARow"]), (True, 0))
        yield settle(0.05)  # a hand-over the NATS thread scheduled after the ack runs before the test ends

    def test_plain_mode_has_no_jetstream_state(self) -> None:
        pub = NatsPublisher(["127.0.0.1:1"], reactor=reactor)
        self.assertEqual(pub.health()["jetstreamState"], "off")
