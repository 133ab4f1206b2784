"""The REST API on StubTreq and a Clock: routing, token, errors, commands and waits, no sockets."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from tests.rest_helpers import OTHER, PILE, StubTest
from tests.stub_api import StubApi
from ykcproxy.api.routes import Reply, Route
from ykcproxy.wire.examples import example


class Plumbing(StubTest):
    def test_token_on_every_route_but_the_public_ones(self) -> None:
        stub = StubApi(api_token="s3cret")
        for route in stub.api.routes:
            path = route.path.replace("<pile_id>", PILE).replace("<trade_seq>", "0" * 32)
            answer = self.answer(stub, route.method, path)
            if route.public:
                self.assertNotEqual(answer.code, 401, path)
            else:
                self.assertEqual(answer.code, 401, path)
                self.assertNotIn("s3cret", str(answer.body))
        good = {b"Authorization": [b"Bearer s3cret"]}
        self.assertEqual(self.answer(stub, "GET", "/piles", headers=good).code, 200)

    def test_unknown_path_method_and_frame_type(self) -> None:
        stub = StubApi()
        self.assertEqual(self.answer(stub, "GET", "/nowhere").code, 404)
        answer = self.answer(stub, "DELETE", "/piles")
        self.assertEqual(answer.code, 405)
        self.assertIn("GET", answer.headers["allow"])
        answer = self.answer(stub, "POST", "/proxy/zz", {})
        self.assertEqual(answer.code, 404)
        self.assertIn("unknown frame type", answer.body["message"])

    def test_handler_failure_is_a_logged_500(self) -> None:
        class Broken:
            def broken(self, request: Any) -> Any:
                raise RuntimeError("boom")

        route = Route("GET", "/broken", "broken", "broken", "fails", {200: Reply("never")})
        stub = StubApi(routes=[route], handlers=[Broken()])
        answer = self.answer(stub, "GET", "/broken")
        self.assertEqual(answer.code, 500)
        self.assertEqual(answer.body, {"message": "internal error (logged)"})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_replay_body_is_size_limited_and_checked_like_the_others(self) -> None:
        """Regression: the replay route read its whole body and parsed JSON on its own."""
        stub = StubApi(max_body_bytes=100)
        answer = self.answer(stub, "POST", "/outbox/replay", raw=b"[" + b"1," * 200 + b"1]")
        self.assertEqual(answer.code, 413)
        answer = self.answer(stub, "POST", "/outbox/replay", raw=b'{"keys": [1,]}')
        self.assertEqual(answer.code, 400)
        self.assertIn("trailing comma", answer.body["message"])

    def test_health_answers_503_when_degraded(self) -> None:
        stub = StubApi()
        stub.healthy = False
        self.assertEqual(self.answer(stub, "GET", "/healthz").code, 503)


class Commands(TestCase):
    def test_command_written_and_reply_waited_for_on_the_clock(self) -> None:
        stub = StubApi()
        pile = stub.pile(PILE)
        d = stub.call("POST", "/proxy/92?wait=20", example(0x92, PILE))
        stub.flush()
        self.assertNoResult(d)
        ((code, seq, fields),) = pile.received()
        self.assertEqual((code, fields["id"]), (0x92, PILE))
        pile.send(0x91, seq=seq, result=1)
        stub.flush()
        answer = self.successResultOf(d)
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.body["reply"]["result"], 1)

    def test_wait_times_out_on_the_clock(self) -> None:
        stub = StubApi()
        stub.pile(PILE)
        d = stub.call("POST", "/proxy/92?wait=20", example(0x92, PILE))
        stub.clock.advance(19.9)
        stub.flush()
        self.assertNoResult(d)
        stub.clock.advance(0.2)
        stub.flush()
        answer = self.successResultOf(d)
        self.assertEqual(answer.code, 504)
        self.assertIn("the 0x92 frame was sent", answer.body["message"])

    def test_piles_listed(self) -> None:
        stub = StubApi()
        stub.pile(PILE)
        d = stub.call("GET", "/piles")
        stub.flush()
        answer = self.successResultOf(d)
        self.assertEqual([p["id"] for p in answer.body], [PILE])
        d = stub.call("GET", "/piles/32010200000009")
        stub.flush()
        self.assertEqual(self.successResultOf(d).code, 404)


class Access(StubTest):
    def test_read_only_token(self) -> None:
        stub = StubApi(api_token="write-token", api_read_token="read-token")
        read = {b"Authorization": [b"Bearer read-token"]}
        self.assertEqual(self.answer(stub, "GET", "/piles", headers=read).code, 200)
        answer = self.answer(stub, "POST", "/proxy/92", example(0x92, PILE), headers=read)
        self.assertEqual(answer.code, 403)
        write = {b"Authorization": [b"Bearer write-token"]}
        self.assertEqual(self.answer(stub, "POST", "/proxy/92", example(0x92, PILE), headers=write).code, 404)

    def test_metrics_need_the_token_unless_public(self) -> None:
        self.assertEqual(self.answer(StubApi(api_token="t"), "GET", "/metrics").code, 401)
        self.assertEqual(
            self.answer(StubApi(api_token="t", metrics_public=True), "GET", "/metrics").code, 200
        )
        self.assertEqual(self.answer(StubApi(api_token="t"), "GET", "/healthz").code, 200)
        self.assertEqual(self.answer(StubApi(api_token="t"), "GET", "/openapi.json").code, 200)

    def test_cors_off_unless_an_origin_is_given(self) -> None:
        origin = {b"Origin": [b"https://ops.example"]}
        answer = self.answer(StubApi(), "GET", "/piles", headers=origin)
        self.assertNotIn("access-control-allow-origin", answer.headers)
        stub = StubApi(cors_origin="https://ops.example")
        answer = self.answer(stub, "GET", "/piles", headers=origin)
        self.assertEqual(answer.headers["access-control-allow-origin"], "https://ops.example")
        preflight = {**origin, b"Access-Control-Request-Method": [b"POST"]}
        answer = self.answer(stub, "OPTIONS", "/proxy/92", headers=preflight)
        self.assertEqual(answer.code, 204)
        self.assertIn("Authorization", answer.headers["access-control-allow-headers"])
        other = {b"Origin": [b"https://evil.example"]}
        answer = self.answer(stub, "GET", "/piles", headers=other)
        self.assertNotIn("access-control-allow-origin", answer.headers)


class PendingLogins(TestCase):
    def test_a_login_nobody_answers_is_listed(self) -> None:
        stub = StubApi(auto_verification=False)
        stub.pile(PILE, login=False).send(0x01)
        d = stub.call("GET", "/piles?state=pending")
        stub.flush()
        (pending,) = self.successResultOf(d).body
        self.assertEqual(pending["id"], PILE)
        self.assertTrue(pending["remote"].startswith("10.0.0.1:"))
        self.assertEqual(pending["since"], 1_700_000_000_000)
        d = stub.call("GET", "/piles")
        stub.flush()
        self.assertEqual(self.successResultOf(d).body, [])
        d = stub.call("GET", "/piles?state=asleep")
        stub.flush()
        self.assertEqual(self.successResultOf(d).code, 400)


class Trace(TestCase):
    def test_switched_on_and_off_at_run_time(self) -> None:
        from twisted.logger import globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        stub = StubApi()
        pile = stub.pile(PILE)
        d = stub.call("POST", f"/piles/{PILE}/trace", {"enabled": True})
        stub.flush()
        self.assertEqual(self.successResultOf(d).body, {"id": PILE, "trace": True})
        pile.send(0x03, seq=5)
        traced = [e for e in events if e.get("log_format", "").startswith("trace ")]
        self.assertEqual([(e["direction"], e["ft"]) for e in traced], [("up", "03"), ("down", "04")])
        self.assertEqual(traced[0]["seq"], 5)
        d = stub.call("POST", f"/piles/{PILE}/trace", {"enabled": False})
        stub.flush()
        pile.send(0x03, seq=6)
        self.assertEqual(len([e for e in events if e.get("log_format", "").startswith("trace ")]), 2)
        d = stub.call("POST", f"/piles/{PILE}/trace", {"enabled": "yes"})
        stub.flush()
        self.assertEqual(self.successResultOf(d).code, 400)


class Registry(StubTest):
    """GET /piles and GET /piles/<id>."""

    def test_piles_and_their_guns(self) -> None:
        stub = StubApi()
        answer = self.answer(stub, "GET", "/piles")
        self.assertEqual((answer.code, answer.body), (200, []))
        connected = int(stub.clock.seconds() * 1000)
        link = stub.pile(PILE)
        stub.clock.advance(5)
        link.send(0x03, gun="01", gunStatus=1)
        link.send(0x13, gunId="02", status=3, plugged=1)
        link.send(0x03, gun="02", gunStatus=0)
        self.assertEqual([f.code for f in link.frames()], [0x04, 0x04])
        answer = self.answer(stub, "GET", f"/piles/{PILE}")
        self.assertEqual(answer.code, 200)
        pile = answer.body
        peer = link.transport.getPeer()
        self.assertEqual(pile["id"], PILE)
        self.assertEqual(pile["remote"], f"{peer.host}:{peer.port}")
        self.assertTrue(pile["loggedIn"])
        self.assertEqual(pile["guns"], example(0x01, PILE)["guns"])
        self.assertEqual(pile["connectedAt"], connected)
        self.assertEqual(pile["lastSeen"], connected + 5000)
        self.assertEqual(pile["gunState"]["01"], {"gunStatus": 1})
        self.assertEqual(
            pile["gunState"]["02"],
            {"status": 3, "plugged": 1, "tradeSeq": example(0x13, PILE)["tradeSeq"], "gunStatus": 0},
        )
        listing = self.answer(stub, "GET", "/piles")
        self.assertEqual(listing.body, [pile])
        missing = self.answer(stub, "GET", f"/piles/{OTHER}")
        self.assertEqual((missing.code, missing.body), (404, {"message": f"pile {OTHER} is not connected"}))
        link.lose()
        gone = self.answer(stub, "GET", f"/piles/{PILE}")
        self.assertEqual(gone.code, 404)

    def test_pending_login_is_not_listed(self) -> None:
        stub = StubApi(auto_verification=False)
        stub.pile(PILE, login=False).send(0x01)
        self.assertEqual(self.answer(stub, "GET", "/piles").body, [])
        answer = self.answer(stub, "POST", "/proxy/92", {"id": PILE, "control": 1})
        self.assertEqual(answer.code, 404)


class Monitoring(StubTest):
    """/healthz and /metrics (the token over a real socket: test_rest)."""

    def test_healthz(self) -> None:
        answer = self.answer(StubApi(), "GET", "/healthz")
        self.assertEqual(answer.code, 200)
        self.assertTrue(answer.body["ok"])
        self.assertEqual(answer.headers["content-type"], "application/json")

    def test_unhealthy_is_503(self) -> None:
        stub = StubApi()
        self.patch(stub.api, "health", lambda: {"ok": False, "degraded": ["forwarder"]})
        answer = self.answer(stub, "GET", "/healthz")
        self.assertEqual((answer.code, answer.body), (503, {"ok": False, "degraded": ["forwarder"]}))
        metrics = stub.metrics.render().decode()
        self.assertIn('ykc_rest_requests_total{code="503",route="healthz"} 1.0', metrics)

    def test_metrics(self) -> None:
        stub = StubApi(forward=True)
        refused: list[Any] = []

        def answer(post: Any) -> int:
            if post.path == "/09":
                refused.append(post)
                return 500
            return 200

        stub.consumer.answer = answer
        link = stub.pile(PILE)
        link.write(b"\x68\x0d" + b"\x00" * 15)  # a frame with a bad CRC
        link.send(0x09)
        stub.flush()
        self.assertEqual(len(refused), 1)
        self.assertIn("ykc_forward_failed_total 1.0", stub.metrics.render().decode())
        self.answer(stub, "POST", "/proxy/92", {"id": PILE, "control": 3})
        answer_ = self.answer(stub, "GET", "/metrics")
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
