"""The REST control API end to end: REST call → the proxy → bytes a raw-socket pile reads.

A few tests that prove the real wiring: each runs the real proxy on loopback,
the pile is a :class:`PileLink` speaking frames over a real TCP connection, and
the webhook consumer is a real HTTP server.  The rest of the REST behaviour is
tested on StubTreq and a Clock (tests/test_rest_memory.py, test_rest_commands.py,
test_rest_client_errors.py and test_rest_waits.py).
"""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.rest_helpers import PILE, command_body
from tests.support import call, connect_pile, login, reactor, settle, start_consumer, start_proxy
from ykcproxy.wire.examples import example

_POOL = HTTPConnectionPool(reactor, persistent=False)


@inlineCallbacks
def barrier(link: Any, pile_id: str = PILE) -> Any:
    """Wait until the proxy has handled everything the pile sent so far (a heartbeat round trip)."""
    link.send(0x03, example(0x03, pile_id))
    yield link.expect(0x04)


class SeedExamples(TestCase):
    """The accepted request bodies of the seed project's doc/restapi.md, byte for byte, over real HTTP.

    (The refused ones, 0x36, 0x0a and 0x58, are in test_rest_commands.)
    """

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
    """``?wait=`` answered by a raw-socket pile, its replies forwarded to a real webhook;
    a real client closing its connection (the rest of ``?wait=``: test_rest_waits)."""

    timeout = 15

    @inlineCallbacks
    def setUp(self) -> Any:
        self.consumer, url = start_consumer(self)
        self.proxy = start_proxy(self, servers=url, auto_verification=True)
        self.link = yield login(self, self.proxy, PILE)

    def waiters(self) -> dict[str, Any]:
        return dict(self.proxy.piles.waiters.by_pile)

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


class Monitoring(TestCase):
    """The API token over a real socket (/healthz and /metrics: test_rest_memory)."""

    timeout = 15

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
