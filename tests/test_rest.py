"""The REST control API end to end: REST call → the proxy → bytes a raw-socket pile reads.

Every test runs the real proxy on loopback; the pile is a :class:`PileLink`
speaking frames over a real TCP connection.
"""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.rest_helpers import CODEC, DOWNLINK, OTHER, PILE, command_body, expected_fields
from tests.support import call, connect_pile, login, reactor, settle, start_consumer, start_proxy, until
from ykcproxy.wire.examples import example
from ykcproxy.wire.frames import CATALOGUE

_POOL = HTTPConnectionPool(reactor, persistent=False)


@inlineCallbacks
def barrier(link: Any, pile_id: str = PILE) -> Any:
    """Wait until the proxy has handled everything the pile sent so far (a heartbeat round trip)."""
    link.send(0x03, example(0x03, pile_id))
    yield link.expect(0x04)


class SeedExamples(TestCase):
    """The request bodies of the seed project's doc/restapi.md, byte for byte."""

    timeout = 15

    PILE = "12345620230378"
    B02 = b"""{
    "header":{
        "encrypted": false,
        "seq": 72
    },
    "id": "12345620230378",
    "result": true
}"""
    B06 = b"""{
    "header":{
        "encrypted": false,
        "seq": 72
    },
    "id": "12345620230378",
    "billingModelCode": "0000",
    "result": true
}"""
    B34 = b"""{
    "header":{
        "encrypted": false,
        "seq": 73
    },
    "id": "12345620230378",
    "tradeSeq": "55031412782305012018061914444680",
    "gunId": "01",
    "logicCard": "0000001000000573",
    "physicalCard": "00000000D14B0A54",
    "balance": 1000000
}"""
    B40 = b"""{
    "header":{
        "encrypted": false,
        "seq": 73
    },
    "id": "12345620230378",
    "tradeSeq": "55031412782305012018061914444680",
    "result": 0
}"""
    B92 = b"""{
    "header":{
        "encrypted": false,
        "seq": 73
    },
    "id": "12345620230378",
    "control": 1
}"""

    @inlineCallbacks
    def test_02_accepts_a_pending_login(self) -> None:
        consumer, url = start_consumer(self)
        proxy = start_proxy(self, servers=url)
        link = yield connect_pile(self, proxy)
        link.send(0x01, example(0x01, self.PILE), seq=5)
        yield consumer.count(1)
        answer = yield call(proxy, "POST", "/proxy/02", raw=self.B02)
        self.assertEqual(answer.code, 200, answer.body)
        got = yield link.expect(0x02)
        self.assertEqual((got.seq, got.fields), (72, {"id": self.PILE, "result": True}))
        self.assertEqual(answer.body, {"message": "done", "seq": 72, "frame": got.raw.hex()})
        yield consumer.count(2)
        self.assertEqual(consumer.posts[1].path, "/online")

    @inlineCallbacks
    def test_06_34_40_92(self) -> None:
        proxy = start_proxy(self, auto_verification=True)
        link = yield login(self, proxy, self.PILE)
        cases = [
            (0x06, self.B06, 72, {"id": self.PILE, "billingModelCode": "0000", "result": True}),
            (
                0x34,
                self.B34,
                73,
                {
                    "tradeSeq": "55031412782305012018061914444680",
                    "id": self.PILE,
                    "gunId": "01",
                    "logicCard": "0000001000000573",
                    "physicalCard": "00000000D14B0A54",
                    "balance": 1000000,
                },
            ),
            (0x40, self.B40, 73, {"tradeSeq": "55031412782305012018061914444680", "result": 0}),
            (0x92, self.B92, 73, {"id": self.PILE, "control": 1}),
        ]
        for code, raw, seq, fields in cases:
            answer = yield call(proxy, "POST", f"/proxy/{code:02x}", raw=raw)
            self.assertEqual(answer.code, 200, answer.body)
            got = yield link.expect(code)
            self.assertEqual((got.seq, got.fields), (seq, fields), f"0x{code:02x}")
            self.assertEqual(answer.body, {"message": "done", "seq": seq, "frame": got.raw.hex()})


class Waiting(TestCase):
    """``?wait=``: the reply comes back decoded; 504 on timeout, 502 when the pile goes away."""

    timeout = 15

    @inlineCallbacks
    def setUp(self) -> Any:
        self.consumer, url = start_consumer(self)
        self.proxy = start_proxy(self, servers=url, auto_verification=True)
        self.link = yield login(self, self.proxy, PILE)

    def waiters(self) -> dict[str, Any]:
        return dict(self.proxy.piles.waiters.by_pile)

    @inlineCallbacks
    def test_every_command_gets_its_reply(self) -> None:
        for code in DOWNLINK:
            frame = CATALOGUE[code]
            if frame.reply is None:
                continue
            body = command_body(code)
            pending = call(self.proxy, "POST", f"/proxy/{code:02x}?wait=5", body)
            got = yield self.link.expect(code)
            checked = CODEC.check(code, body)
            reply = example(frame.reply, PILE, **{k: checked[k] for k in frame.match})
            self.link.send(frame.reply, reply, seq=got.seq)
            answer = yield pending
            self.assertEqual(answer.code, 200, answer.body)
            self.assertEqual(answer.body["reply"], expected_fields(frame.reply, reply), f"0x{code:02x}")
            self.assertEqual((answer.body["seq"], answer.body["frame"]), (got.seq, got.raw.hex()))
        self.assertEqual(self.waiters(), {})
        # Every reply was forwarded as well.
        yield self.consumer.count(2 + 14)
        replies = [p.path for p in self.consumer.posts[2:]]
        self.assertEqual(replies, [f"/{CATALOGUE[c].reply:02x}" for c in DOWNLINK if CATALOGUE[c].reply])

    @inlineCallbacks
    def test_timeout_is_504_and_says_the_frame_was_sent(self) -> None:
        started = reactor.seconds()
        answer = yield call(self.proxy, "POST", "/proxy/92?wait=0.2", {"id": PILE, "control": 1})
        self.assertGreaterEqual(reactor.seconds() - started, 0.2)
        got = yield self.link.expect(0x92)
        self.assertEqual(answer.code, 504)
        self.assertEqual(
            answer.body,
            {
                "message": f"no 0x91 reply from pile {PILE} within 0.2 s; the 0x92 frame was sent (seq 0)",
                "seq": 0,
                "frame": got.raw.hex(),
            },
        )
        self.assertEqual(self.waiters(), {})
        # A late reply is still forwarded.
        self.link.send(0x91, example(0x91, PILE))
        yield self.consumer.wait_for(lambda posts: posts[-1].path == "/91")

    @inlineCallbacks
    def test_disconnect_is_502_at_once(self) -> None:
        started = reactor.seconds()
        pending = call(self.proxy, "POST", "/proxy/36?wait=20", {"id": PILE, "gunId": "01"})
        got = yield self.link.expect(0x36)
        self.link.transport.loseConnection()
        answer = yield pending
        self.assertLess(reactor.seconds() - started, 2.0)
        self.assertEqual(answer.code, 502)
        self.assertEqual(
            answer.body,
            {
                "message": f"pile {PILE} went offline (closed) while waiting for its 0x35 reply; "
                "the 0x36 frame was sent (seq 0)",
                "seq": 0,
                "frame": got.raw.hex(),
            },
        )
        self.assertEqual(self.waiters(), {})

    @inlineCallbacks
    def test_replies_are_matched_by_trade_and_gun_not_by_order(self) -> None:
        trade_1 = PILE + "01" + "250102030405" + "0001"
        trade_2 = PILE + "02" + "250102030405" + "0002"
        first = call(self.proxy, "POST", "/proxy/34?wait=5", command_body(0x34, tradeSeq=trade_1, gunId="01"))
        second = call(
            self.proxy, "POST", "/proxy/34?wait=5", command_body(0x34, tradeSeq=trade_2, gunId="02")
        )
        yield self.link.expect(0x34)
        yield self.link.expect(0x34)
        # Not matching either: same gun, other trade; and the other pile's reply.
        self.link.send(0x33, example(0x33, PILE, tradeSeq=PILE + "01" + "250102030405" + "0009", gunId="01"))
        self.link.send(0x33, example(0x33, PILE, tradeSeq=trade_2, gunId="02", result=False, reason=2))
        self.link.send(0x33, example(0x33, PILE, tradeSeq=trade_1, gunId="01", result=True, reason=0))
        answer_1 = yield first
        answer_2 = yield second
        self.assertEqual(
            (answer_1.body["reply"]["tradeSeq"], answer_1.body["reply"]["result"]), (trade_1, True)
        )
        self.assertEqual((answer_2.body["reply"]["tradeSeq"], answer_2.body["reply"]["reason"]), (trade_2, 2))

    @inlineCallbacks
    def test_replies_from_other_piles_or_guns_do_not_count(self) -> None:
        other = yield login(self, self.proxy, OTHER)
        pending = call(self.proxy, "POST", "/proxy/36?wait=5", {"id": PILE, "gunId": "01"})
        yield self.link.expect(0x36)
        other.send(0x35, example(0x35, OTHER, gunId="01"))
        self.link.send(0x35, example(0x35, PILE, gunId="02"))
        yield barrier(self.link)
        self.assertFalse(pending.called)
        self.link.send(0x35, example(0x35, PILE, gunId="01", reason=0))
        answer = yield pending
        self.assertEqual(answer.body["reply"], {"id": PILE, "gunId": "01", "result": True, "reason": 0})

    @inlineCallbacks
    def test_unplugged_gun_two_replies_first_wins_both_forwarded(self) -> None:
        body = command_body(0x34, gunId="01")
        pending = call(self.proxy, "POST", "/proxy/34?wait=5", body)
        got = yield self.link.expect(0x34)
        trade = got.fields["tradeSeq"]
        self.link.send(0x33, example(0x33, PILE, tradeSeq=trade, gunId="01", result=False, reason=5))
        answer = yield pending
        self.assertEqual(answer.code, 200)
        self.assertEqual(
            answer.body["reply"], {"tradeSeq": trade, "id": PILE, "gunId": "01", "result": False, "reason": 5}
        )
        # The gun is plugged in later: the pile starts, and says so with a second 0x33.
        self.link.send(0x33, example(0x33, PILE, tradeSeq=trade, gunId="01", result=True, reason=0))
        yield self.consumer.wait_for(lambda posts: len([p for p in posts if p.path == "/33"]) == 2)
        forwarded = [(p.body["result"], p.body["reason"]) for p in self.consumer.of("33")]
        self.assertEqual(forwarded, [(False, 5), (True, 0)])
        self.assertEqual(self.waiters(), {})

    @inlineCallbacks
    def test_without_wait_it_is_fire_and_forget(self) -> None:
        answer = yield call(self.proxy, "POST", "/proxy/12", {"id": PILE, "gunId": "01"})
        self.assertEqual(answer.code, 200)
        self.assertNotIn("reply", answer.body)
        self.assertEqual(self.waiters(), {})
        yield self.link.expect(0x12)

    @inlineCallbacks
    def test_a_failed_send_cancels_the_wait(self) -> None:
        def broken(*args: Any) -> Any:
            raise RuntimeError("transport exploded")

        self.patch(self.proxy.piles, "command", broken)
        answer = yield call(self.proxy, "POST", "/proxy/92?wait=5", {"id": PILE, "control": 1})
        self.assertEqual((answer.code, answer.body), (500, {"message": "internal error (logged)"}))
        self.assertEqual(self.waiters(), {})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @inlineCallbacks
    def test_client_going_away_cancels_the_wait(self) -> None:
        url = f"http://127.0.0.1:{self.proxy.http_port}/proxy/92?wait=20"
        d = treq.post(url, json={"id": PILE, "control": 1}, pool=_POOL)
        yield self.link.expect(0x92)
        self.assertEqual(list(self.waiters()), [PILE])
        d.cancel()
        d.addErrback(lambda f: None)
        for _ in range(50):
            if not self.waiters():
                break
            yield settle(0.02)
        self.assertEqual(self.waiters(), {})
        metrics = self.proxy.metrics.render().decode()
        self.assertIn('ykc_rest_requests_total{code="499",route="proxy_92"} 1.0', metrics)


class Registry(TestCase):
    """GET /piles and GET /piles/<id>."""

    timeout = 15

    @inlineCallbacks
    def test_piles_and_their_guns(self) -> None:
        proxy = start_proxy(self, auto_verification=True)
        answer = yield call(proxy, "GET", "/piles")
        self.assertEqual((answer.code, answer.body), (200, []))
        before = int(reactor.seconds() * 1000)
        link = yield login(self, proxy, PILE)
        link.send(0x03, example(0x03, PILE, gun="01", gunStatus=1))
        link.send(0x13, example(0x13, PILE, gunId="02", status=3, plugged=1))
        link.send(0x03, example(0x03, PILE, gun="02", gunStatus=0))
        yield link.expect(0x04)
        yield link.expect(0x04)
        answer = yield call(proxy, "GET", f"/piles/{PILE}")
        self.assertEqual(answer.code, 200)
        pile = answer.body
        local = link.transport.getHost()
        self.assertEqual(pile["id"], PILE)
        self.assertEqual(pile["remote"], f"{local.host}:{local.port}")
        self.assertTrue(pile["loggedIn"])
        self.assertEqual(pile["guns"], example(0x01, PILE)["guns"])
        self.assertLessEqual(before - 1, pile["connectedAt"])
        self.assertLessEqual(pile["connectedAt"], pile["lastSeen"])
        self.assertLessEqual(pile["lastSeen"], int(reactor.seconds() * 1000) + 1)
        self.assertEqual(pile["gunState"]["01"], {"gunStatus": 1})
        self.assertEqual(
            pile["gunState"]["02"],
            {"status": 3, "plugged": 1, "tradeSeq": example(0x13, PILE)["tradeSeq"], "gunStatus": 0},
        )
        listing = yield call(proxy, "GET", "/piles")
        self.assertEqual(listing.body, [pile])
        missing = yield call(proxy, "GET", f"/piles/{OTHER}")
        self.assertEqual((missing.code, missing.body), (404, {"message": f"pile {OTHER} is not connected"}))
        link.transport.loseConnection()
        yield link.lost
        yield settle(0.05)
        gone = yield call(proxy, "GET", f"/piles/{PILE}")
        self.assertEqual(gone.code, 404)

    @inlineCallbacks
    def test_pending_login_is_not_listed(self) -> None:
        proxy = start_proxy(self)
        link = yield connect_pile(self, proxy)
        link.send(0x01, example(0x01, PILE))
        yield settle(0.05)
        answer = yield call(proxy, "GET", "/piles")
        self.assertEqual(answer.body, [])
        answer = yield call(proxy, "POST", "/proxy/92", {"id": PILE, "control": 1})
        self.assertEqual(answer.code, 404)


class Monitoring(TestCase):
    """/healthz, /metrics and the API token."""

    timeout = 15

    @inlineCallbacks
    def test_healthz(self) -> None:
        proxy = start_proxy(self)
        answer = yield call(proxy, "GET", "/healthz")
        self.assertEqual(answer.code, 200)
        self.assertTrue(answer.body["ok"])
        self.assertEqual(answer.headers["content-type"], "application/json")

    @inlineCallbacks
    def test_unhealthy_is_503(self) -> None:
        proxy = start_proxy(self)
        self.patch(proxy.api, "health", lambda: {"ok": False, "degraded": ["forwarder"]})
        answer = yield call(proxy, "GET", "/healthz")
        self.assertEqual((answer.code, answer.body), (503, {"ok": False, "degraded": ["forwarder"]}))
        metrics = proxy.metrics.render().decode()
        self.assertIn('ykc_rest_requests_total{code="503",route="healthz"} 1.0', metrics)

    @inlineCallbacks
    def test_metrics(self) -> None:
        consumer, url = start_consumer(self)
        refused: list[Any] = []

        def answer(post: Any) -> int:
            if post.path == "/09":
                refused.append(post)
                return 500
            return 200

        consumer.answer = answer
        proxy = start_proxy(self, servers=url, auto_verification=True)
        link = yield login(self, proxy, PILE)
        link.write(b"\x68\x0d" + b"\x00" * 15)  # a frame with a bad CRC
        link.send(0x09, example(0x09, PILE))
        yield until(lambda: refused and "ykc_forward_failed_total 1.0" in proxy.metrics.render().decode())
        yield call(proxy, "POST", "/proxy/92", {"id": PILE, "control": 3})
        answer_ = yield call(proxy, "GET", "/metrics")
        self.assertEqual(answer_.code, 200)
        self.assertTrue(answer_.headers["content-type"].startswith("text/plain; version=0.0.4"))
        text = answer_.body
        for line in (
            "ykc_piles_online 1.0",
            "ykc_connections 1.0",
            'ykc_frames_in_total{ft="01"} 1.0',
            'ykc_frames_in_total{ft="09"} 1.0',
            'ykc_frames_out_total{ft="02"} 1.0',
            'ykc_frame_errors_total{kind="crc"} 1.0',
            'ykc_forward_ok_total{ft="01"} 1.0',
            'ykc_forward_ok_total{ft="online"} 1.0',
            "ykc_forward_failed_total 1.0",
            "ykc_forward_latency_seconds_count 2.0",
            'ykc_rest_requests_total{code="400",route="proxy_92"} 1.0',
        ):
            self.assertIn(line, text)

    @inlineCallbacks
    def test_api_token(self) -> None:
        proxy = start_proxy(self, auto_verification=True, api_token="s3cret")
        link = yield login(self, proxy, PILE)
        for headers in ({}, {b"Authorization": [b"Bearer wrong"]}, {b"Authorization": [b"s3cret"]}):
            answer = yield call(proxy, "POST", "/proxy/92", {"id": PILE, "control": 1}, headers=headers)
            self.assertEqual(answer.code, 401)
            self.assertEqual(
                answer.body["message"], "missing or wrong API token (send 'Authorization: Bearer <token>')"
            )
            answer = yield call(proxy, "GET", "/piles", headers=headers)
            self.assertEqual(answer.code, 401)
        good = {b"Authorization": [b"Bearer s3cret"]}
        answer = yield call(proxy, "POST", "/proxy/92", {"id": PILE, "control": 1}, headers=good)
        self.assertEqual(answer.code, 200)
        yield link.expect(0x92)
        for path in ("/healthz", "/openapi.json"):
            answer = yield call(proxy, "GET", path)
            self.assertEqual(answer.code, 200, path)
        answer = yield call(proxy, "GET", "/metrics")
        self.assertEqual(answer.code, 401, "/metrics needs the token unless --metricsPublic")
