"""The console's server side: frame history, field spans, the event stream, the static files."""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.test.requesthelper import DummyRequest

from tests.stub_api import StubApi
from tests.support import login, start_proxy
from ykcproxy.console.events import EventHub
from ykcproxy.console.history import FrameHistory
from ykcproxy.console.spans import field_spans
from ykcproxy.sim.link import PileLink
from ykcproxy.wire.examples import example

PILE = "32010200000001"


class StreamRequest(DummyRequest):
    """A DummyRequest that takes a push producer (DummyRequest loops on any producer)."""

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


def answer(test: TestCase, stub: StubApi, *args: Any, **kwargs: Any) -> Any:
    d = stub.call(*args, **kwargs)
    stub.flush()
    return test.successResultOf(d)


class History(TestCase):
    def test_frames_both_ways_decoded_with_spans(self) -> None:
        stub = StubApi(frame_history=5)
        pile = stub.pile(PILE)
        pile.send(0x03, seq=9)
        got = answer(self, stub, "GET", f"/piles/{PILE}/frames")
        self.assertEqual(got.code, 200)
        frames = got.body["frames"]
        self.assertEqual(
            [(f["dir"], f["code"]) for f in frames],
            [("up", "01"), ("down", "02"), ("up", "03"), ("down", "04")],
        )
        heartbeat = frames[2]
        self.assertEqual((heartbeat["seq"], heartbeat["name"], heartbeat["error"]), (9, "heartbeat", None))
        self.assertEqual(heartbeat["fields"]["id"], PILE)
        spans = {s["field"]: (s["start"], s["end"]) for s in heartbeat["spans"]}
        self.assertEqual(spans["id"], (6, 13))
        raw = bytes.fromhex(heartbeat["raw"])
        self.assertEqual(raw[6:13].hex(), PILE)

    def test_bounded_and_bad_frames_marked(self) -> None:
        stub = StubApi(frame_history=3)
        pile = stub.pile(PILE)
        link = PileLink()
        frame = bytearray(link.frame(0x03, example(0x03, PILE)))
        frame[-1] ^= 0xFF
        pile.protocol.dataReceived(bytes(frame))
        frames = answer(self, stub, "GET", f"/piles/{PILE}/frames").body["frames"]
        self.assertEqual(len(frames), 3)
        self.assertTrue(frames[-1]["error"].startswith("crc"), frames[-1])
        self.assertEqual(frames[-1]["raw"], bytes(frame).hex())
        self.assertEqual(
            answer(self, stub, "GET", f"/piles/{PILE}/frames?limit=1").body["frames"], frames[-1:]
        )
        self.assertEqual(answer(self, stub, "GET", f"/piles/{PILE}/frames?limit=x").code, 400)
        self.assertEqual(answer(self, stub, "GET", "/piles/32010200000009/frames").code, 404)

    def test_off(self) -> None:
        stub = StubApi(frame_history=0)
        stub.pile(PILE)
        self.assertEqual(answer(self, stub, "GET", f"/piles/{PILE}/frames").code, 404)
        self.assertEqual(stub.history.up_types, frozenset())

    def test_offline_piles_kept_up_to_a_bound(self) -> None:
        history = FrameHistory(Clock(), 4, offline_piles=1)
        for pile in ("a", "b"):
            history.observe(pile, "up", 3, {}, b"\x68")
            history.pile_offline(pile)
        self.assertNotIn("a", history)
        self.assertIn("b", history)

    def test_logins_never_accepted_are_bounded(self) -> None:
        history = FrameHistory(Clock(), 4, offline_piles=2)
        history.observe("online", "up", 1, {}, b"\x68")
        history.observe("online", "down", 2, {}, b"\x68")
        history.observe("online", "up", 3, {}, b"\x68")
        for i in range(5):  # logins with made-up ids, each answered "refused"
            history.observe(f"made-up-{i}", "up", 1, {}, b"\x68")
            history.observe(f"made-up-{i}", "down", 2, {}, b"\x68")
        self.assertEqual(
            [p for p in ("made-up-0", "made-up-3", "made-up-4") if p in history], ["made-up-3", "made-up-4"]
        )
        self.assertIn("online", history, "an online pile is never dropped for parked ones")
        self.assertEqual(len(history.frames("online")), 3)

    def test_back_online_after_a_new_login(self) -> None:
        history = FrameHistory(Clock(), 10, offline_piles=1)
        history.observe("a", "up", 1, {}, b"\x01")
        history.observe("a", "up", 3, {}, b"\x03")
        history.pile_offline("a")
        history.observe("a", "up", 1, {}, b"\x01")  # logs in again
        history.observe("a", "down", 2, {}, b"\x02")
        history.observe("a", "up", 3, {}, b"\x03")  # accepted: online again
        history.observe("b", "up", 1, {}, b"\x01")
        history.pile_offline("b")
        history.observe("c", "up", 1, {}, b"\x01")  # parks c, dropping b
        self.assertNotIn("b", history)
        self.assertEqual([f["raw"] for f in history.frames("a")], ["01", "03", "01", "02", "03"])

    def test_only_watched_piles_stream_while_watched(self) -> None:
        stub = StubApi(frame_history=5)
        watched, other = stub.pile(PILE), stub.pile("32010200000002")
        request = StreamRequest([b"events"])
        stub.hub.subscribe(request, PILE, {})
        (client,) = stub.hub.clients

        def streamed() -> list[tuple[str, str]]:
            events = [json.loads(w.split(b"data: ")[1]) for w in request.written if b"event: frame" in w]
            return [(e["id"], e["code"]) for e in events]

        watched.send(0x03)
        other.send(0x03)
        self.assertEqual(streamed(), [(PILE, "03"), (PILE, "04")])
        client.close()
        watched.send(0x03)
        self.assertEqual(len(streamed()), 2, "nothing streamed once nobody watches")
        got = answer(self, stub, "GET", f"/piles/{PILE}/frames").body["frames"]
        self.assertEqual([f["code"] for f in got], ["02", "03", "04", "03", "04"], "every frame still kept")

    def test_gun_changes_are_streamed_once(self) -> None:
        stub = StubApi()
        pile = stub.pile(PILE)
        request = StreamRequest([b"events"])
        stub.hub.subscribe(request, None, {})

        def guns() -> list[dict[str, Any]]:
            return [json.loads(w.split(b"data: ")[1]) for w in request.written if b"event: gun" in w]

        pile.send(0x03, gun="01", gunStatus=0)
        pile.send(0x03, gun="01", gunStatus=0)
        self.assertEqual(guns(), [{"id": PILE, "gun": "01", "gunStatus": 0}])
        ts = PILE + "01" + "2612071200000001"
        pile.send(0x13, gunId="01", status=3, plugged=1, tradeSeq=ts)
        pile.send(0x13, gunId="01", status=3, plugged=1, tradeSeq=ts)
        pile.send(0x03, gun="01", gunStatus=1)
        self.assertEqual(
            guns()[1:],
            [
                {"id": PILE, "gun": "01", "gunStatus": 0, "status": 3, "plugged": 1, "tradeSeq": ts},
                {"id": PILE, "gun": "01", "gunStatus": 1, "status": 3, "plugged": 1, "tradeSeq": ts},
            ],
        )

    def test_spans_of_a_list(self) -> None:
        spans = [s.field for s in field_spans(0x46, 6 + 7 + 1 + 8 * 2 + 2)]
        self.assertIn("cards[1]", " ".join(spans))


class Hub(TestCase):
    def test_slow_client_is_dropped_never_waited_for(self) -> None:
        hub = EventHub(Clock(), max_queue=2)
        slow, fast = StreamRequest([b"events"]), StreamRequest([b"events"])
        hub.subscribe(slow, None, {"canCommand": True})
        hub.subscribe(fast, "P1", {"canCommand": False})
        (slow_client,) = [c for c in hub.clients if c.request is slow]
        slow_client.pauseProducing()
        for i in range(3):
            hub.publish("online", {"id": str(i)})
        self.assertEqual(len(fast.written), 4)
        self.assertEqual(hub.dropped, 1)
        self.assertEqual(slow.finished, 1)
        self.assertEqual(len(hub.clients), 1)
        hub.publish("frame", {"id": "P2"}, "P2")
        hub.publish("frame", {"id": "P1"}, "P1")
        self.assertEqual(json.loads(fast.written[-1].split(b"data: ")[1]), {"id": "P1"})
        self.assertEqual(hub.watched, {"P1": 1})
        hub.stop()
        self.assertEqual(hub.watched, {})

    def test_paused_client_gets_the_queue_when_resumed(self) -> None:
        hub = EventHub(Clock(), max_queue=10)
        request = StreamRequest([b"events"])
        hub.subscribe(request, None, {})
        (client,) = hub.clients
        client.pauseProducing()
        hub.publish("online", {"id": "1"})
        self.assertEqual(len(request.written), 1)
        client.resumeProducing()
        self.assertEqual(len(request.written), 2)

    def test_keepalive_on_the_clock(self) -> None:
        clock = Clock()
        hub = EventHub(clock)
        request = StreamRequest([b"events"])
        hub.subscribe(request, None, {})
        clock.advance(EventHub.KEEPALIVE)
        self.assertEqual(request.written[-1], b": keepalive\n\n")
        hub.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class StaticFiles(TestCase):
    def test_public_even_with_a_token(self) -> None:
        stub = StubApi(api_token="t")
        got = answer(self, stub, "GET", "/")
        self.assertEqual((got.code, got.headers["content-type"]), (200, "text/html; charset=utf-8"))
        self.assertEqual(answer(self, stub, "GET", "/console/nothing.js").code, 404)
        self.assertEqual(answer(self, stub, "GET", "/events").code, 401)


class Stream(TestCase):
    """Over loopback: a browser-like client reads the stream while a pile logs in."""

    timeout = 20

    @inlineCallbacks
    def test_events_with_the_token_in_the_query(self) -> None:
        proxy = start_proxy(self, auto_verification=True, api_token="s3cret")
        url = f"http://127.0.0.1:{proxy.http_port}/events?pile={PILE}&token=s3cret"
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        response = yield treq.get(url, unbuffered=True, pool=pool)
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("text/event-stream"))
        chunks: list[bytes] = []
        seen: Deferred[None] = Deferred()

        def collect(data: bytes) -> None:
            chunks.append(data)
            text = b"".join(chunks)
            if b"event: frame" in text and b"event: online" in text and not seen.called:
                seen.callback(None)

        done = treq.collect(response, collect)
        link = yield login(self, proxy, PILE)
        yield seen
        text = b"".join(chunks).decode()
        self.assertIn('event: hello\ndata: {"canCommand":true}', text)
        self.assertIn(f'"id":"{PILE}"', text)
        link.transport.loseConnection()
        yield proxy.stopService()
        yield done.addErrback(lambda f: None)
        self.assertFalse(proxy.console.hub.clients)

    @inlineCallbacks
    def test_wrong_token_in_the_query(self) -> None:
        proxy = start_proxy(self, api_token="s3cret")
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        response = yield treq.get(f"http://127.0.0.1:{proxy.http_port}/events?token=nope", pool=pool)
        self.assertEqual(response.code, 401)
        yield response.content()
