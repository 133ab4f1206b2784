"""A console watching a pile another instance holds: the frames relayed over NATS."""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support import login, reactor, until
from tests.test_cluster import PILE, two_instances
from ykcproxy.cluster.registry_kv import Directory, InstanceBeat, PileEntry, instance_key, pile_key
from ykcproxy.cluster.shared import SharedConnection
from ykcproxy.cluster.watch import RENEW_SECONDS, WATCH_SECONDS, RemoteWatches
from ykcproxy.wire.examples import example


class FakeLink:
    """The requests a :class:`RemoteWatches` sends (no NATS)."""

    def __init__(self) -> None:
        self.shared = SharedConnection()
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def request(self, subject: str, data: bytes, timeout: float) -> Deferred[bytes]:
        self.requests.append((subject, json.loads(data)))
        return succeed(b'{"status": 200}')


class Bookkeeping(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.directory = Directory("a", on_moved=lambda pile, since: None, ttl=15.0)
        self.link = FakeLink()
        self.streaming: dict[str, bool] = {}
        self.watches = RemoteWatches(
            self.clock,
            self.directory,
            self.link,  # type: ignore[arg-type]
            lambda pile, on: self.streaming.__setitem__(pile, on),
            lambda pile, event: None,
        )
        self.watches.start()
        self.addCleanup(self.watches.stop)

    def test_a_holder_streams_while_asked_and_stops_by_itself(self) -> None:
        answer = self.watches.answer_watch(json.dumps({"id": PILE, "seconds": 30}).encode())
        self.assertEqual(self.successResultOf(answer)[0], 200)
        self.assertTrue(self.streaming[PILE])
        self.clock.advance(20)
        self.watches.answer_watch(json.dumps({"id": PILE, "seconds": 30}).encode())  # renewed
        self.clock.advance(20)
        self.assertTrue(self.streaming[PILE])
        self.clock.advance(20)
        self.assertFalse(self.streaming[PILE])
        # A console of the holder's own keeps it streaming after the requests stop.
        self.watches.answer_watch(json.dumps({"id": PILE}).encode())
        self.watches.local_watch(PILE, True)
        self.clock.advance(WATCH_SECONDS + RENEW_SECONDS)
        self.assertTrue(self.streaming[PILE])
        self.watches.local_watch(PILE, False)
        self.assertFalse(self.streaming[PILE])

    def test_bad_requests_are_refused(self) -> None:
        for payload in (b"{", b"{}", b'{"id": "1", "seconds": 0}', b'{"id": "1", "seconds": 3600}'):
            status, answer = self.successResultOf(self.watches.answer_watch(payload))
            self.assertEqual(status, 400, payload)
            self.assertIn('"id"', answer["message"])
        self.assertEqual(self.streaming, {})

    def test_the_watching_side_asks_the_holder_of_the_moment(self) -> None:
        self.watches.local_watch(PILE, True)
        self.assertEqual(self.link.requests, [], "nobody holds it: nobody asked")
        self.directory.update(instance_key("b"), InstanceBeat("b", 1, 0.0).encode(), now=0.0)
        self.directory.update(pile_key(PILE), PileEntry(PILE, "b", "10.0.0.2:5", 1.0).encode(), now=0.0)
        self.clock.advance(RENEW_SECONDS)
        self.assertEqual(len(self.link.requests), 1)
        subject, body = self.link.requests[0]
        self.assertTrue(subject.endswith(".watch"), subject)
        self.assertEqual(body, {"id": PILE, "seconds": WATCH_SECONDS})
        self.assertIn(PILE, self.watches._relays)
        # It moved here: not asked any more.
        self.directory.update(pile_key(PILE), PileEntry(PILE, "a", "10.0.0.1:5", 2.0).encode(), now=10.0)
        self.clock.advance(RENEW_SECONDS)
        self.assertEqual(len(self.link.requests), 1)
        self.watches.local_watch(PILE, False)
        self.assertNotIn(PILE, self.watches._relays)


class AcrossInstances(TestCase):
    timeout = 40

    @inlineCallbacks
    def test_a_console_on_a_sees_the_frames_of_a_pile_on_b(self) -> Any:
        _, a, b = yield two_instances(self)
        link = yield login(self, b, PILE)
        yield until(lambda: a.cluster.directory.holder(PILE) == "b")
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        url = f"http://127.0.0.1:{a.http_port}/events?pile={PILE}"
        response = yield treq.get(url, unbuffered=True, pool=pool)
        self.assertEqual(response.code, 200)
        chunks: list[bytes] = []
        done = treq.collect(response, chunks.append)
        self.addCleanup(lambda: done.addErrback(lambda f: None))
        yield until(lambda: PILE in b.cluster.watches.remote)
        link.send(0x03, example(0x03, PILE))
        yield link.expect(0x04)
        yield until(lambda: b"event: frame" in b"".join(chunks) and b'"code":"04"' in b"".join(chunks))
        frames = [
            json.loads(block.split(b"data: ", 1)[1])
            for block in b"".join(chunks).split(b"\n\n")
            if block.startswith(b"event: frame")
        ]
        self.assertEqual([f["code"] for f in frames], ["03", "04"])
        self.assertEqual({f["id"] for f in frames}, {PILE})
        self.assertNotIn(PILE, a.console.history, "relayed, not kept on a")
        yield a.stopService()
