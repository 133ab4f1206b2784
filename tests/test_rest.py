"""The REST control API end to end: REST call → the proxy → bytes a raw-socket pile reads.

Every test runs the real proxy on loopback; the pile is a :class:`PileLink`
speaking frames over a real TCP connection.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support import call, connect_pile, login, reactor, settle, start_consumer, start_proxy, until
from ykcproxy.wire.codec import Codec
from ykcproxy.wire.examples import example
from ykcproxy.wire.frames import CATALOGUE, Direction

PILE = "32010200000001"
OTHER = "32010200000002"
CODEC = Codec()
DOWNLINK = sorted(code for code, f in CATALOGUE.items() if f.direction is Direction.DOWN)
_POOL = HTTPConnectionPool(reactor, persistent=False)


def expected_fields(code: int, body: dict[str, Any]) -> dict[str, Any]:
    """What a pile decodes from the frame the proxy must write for ``body``."""
    return CODEC.decode_body(code, CODEC.encode_body(code, CODEC.check(code, body)))


def command_body(code: int, pile_id: str = PILE, **override: Any) -> dict[str, Any]:
    """A valid REST body for ``code`` (0x40 gets the pile id it needs)."""
    body = {"id": pile_id, **example(code, pile_id)}
    body.update(override)
    return body


@inlineCallbacks
def barrier(link: Any, pile_id: str = PILE) -> Any:
    """Wait until the proxy has handled everything the pile sent so far (a heartbeat round trip)."""
    link.send(0x03, example(0x03, pile_id))
    yield link.expect(0x04)


class EveryCommand(TestCase):
    """Each of the 21 platform→pile types: REST body in, the same fields out of the pile's socket."""

    timeout = 15

    @inlineCallbacks
    def test_every_command_reaches_the_pile(self) -> None:
        proxy = start_proxy(self, auto_verification=True)
        link = yield login(self, proxy, PILE)
        self.assertEqual(len(DOWNLINK), 21)
        next_seq = 0
        for code in DOWNLINK:
            ft = f"{code:02x}"
            body = command_body(code)
            answer = yield call(proxy, "POST", f"/proxy/{ft}", body)
            self.assertEqual(answer.code, 200, f"0x{ft}: {answer.body}")
            got = yield link.expect(code)
            expected = expected_fields(code, body)
            self.assertEqual(sorted(got.fields), sorted(expected), f"0x{ft}")
            for key, value in expected.items():
                self.assertEqual(got.fields[key], value, f"0x{ft} field {key}")
            self.assertEqual(answer.body["message"], "done")
            self.assertEqual(answer.body["frame"], got.raw.hex(), f"0x{ft}")
            self.assertEqual(answer.body["seq"], got.seq, f"0x{ft}")
            self.assertNotIn("reply", answer.body)
            if code == 0x02:
                self.assertEqual(got.seq, 0)  # the seq of the login (the pile's first frame)
            else:  # commands, and replies with no request to answer: the session's next seq
                self.assertEqual(got.seq, next_seq, f"0x{ft}")
                next_seq += 1
        self.assertEqual(link.errors, [])
        metrics = (yield call(proxy, "GET", "/metrics")).body
        for code in DOWNLINK:
            self.assertIn(f'ykc_frames_out_total{{ft="{code:02x}"}}', metrics)
        self.assertIn('ykc_rest_requests_total{code="200",route="proxy_a4"} 1.0', metrics)

    @inlineCallbacks
    def test_card_numbers_are_padded(self) -> None:
        proxy = start_proxy(self, auto_verification=True)
        link = yield login(self, proxy, PILE)
        body = command_body(0x44, cards=[{"logicCard": "573", "physicalCard": "d14b0a54"}])
        answer = yield call(proxy, "POST", "/proxy/44", body)
        self.assertEqual(answer.code, 200, answer.body)
        got = yield link.expect(0x44)
        self.assertEqual(
            got.fields["cards"], [{"logicCard": "0000000000000573", "physicalCard": "00000000D14B0A54"}]
        )

    @inlineCallbacks
    def test_largest_lists_fit(self) -> None:
        proxy = start_proxy(self, auto_verification=True)
        link = yield login(self, proxy, PILE)
        for code, count in ((0x44, 15), (0x46, 24), (0x48, 26)):
            if code == 0x44:
                cards: list[Any] = [
                    {"logicCard": str(i), "physicalCard": f"{i:X}"} for i in range(1, count + 1)
                ]
            else:
                cards = [f"{i:X}" for i in range(1, count + 1)]
            answer = yield call(proxy, "POST", f"/proxy/{code:02x}", {"id": PILE, "cards": cards})
            self.assertEqual(answer.code, 200, answer.body)
            got = yield link.expect(code)
            self.assertEqual(len(got.fields["cards"]), count)

    @inlineCallbacks
    def test_time_sync_defaults_to_now(self) -> None:
        proxy = start_proxy(self, auto_verification=True)
        link = yield login(self, proxy, PILE)
        before = int(reactor.seconds() * 1000)
        answer = yield call(proxy, "POST", "/proxy/56", {"id": PILE})
        self.assertEqual(answer.code, 200, answer.body)
        got = yield link.expect(0x56)
        self.assertLessEqual(before - 1000, got.fields["time"])
        self.assertLessEqual(got.fields["time"], int(reactor.seconds() * 1000) + 1000)


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
    B36 = b"""{
    "header":{
        "encrypted": false,
        "seq": 73
    },
    "id": "12345620230378",
    "gunId": "01",
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
    B58 = b"""{
    "header":{
        "encrypted": false,
        "seq": 73
    },
    "billingModelCode": "01",
    "sharpUnitPrice": 100000,
    "sharpServiceFee": 100000,
    "peakUnitPrice": 100000,
    "peakServiceFee": 100000,
    "flatUnitPrice": 100000,
    "flatServiceFee": 100000,
    "valleyUnitPrice": 100000,
    "valleyServiceFee": 100000,
    "rateList": [0, 0, 3, 2, 3, 0, 0, 0, 3, 0, 0, 1, 0, 3, 1, 1, 0, 3, 2, 3, 1, 2, 3, 1, 3, 2, 1, 0, 0, 0, 1, 0, 1, 2, 2, 0, 2, 0, 0, 0, 0, 1, 3, 2, 2, 2, 2, 2]
}"""  # noqa: E501 (verbatim)
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

    @inlineCallbacks
    def test_36_trailing_comma_is_malformed_json(self) -> None:
        proxy = start_proxy(self, auto_verification=True)
        link = yield login(self, proxy, self.PILE)
        answer = yield call(proxy, "POST", "/proxy/36", raw=self.B36)
        self.assertEqual(answer.code, 400)
        self.assertEqual(
            answer.body["message"],
            "malformed JSON: trailing comma on line 7 before the closing '}' at line 8 column 1 "
            "(JSON allows no comma after the last member)",
        )
        yield barrier(link, self.PILE)
        self.assertEqual([r.code for r in link.received], [0x02, 0x04])

    @inlineCallbacks
    def test_0a_58_without_id_and_with_2_digit_model(self) -> None:
        proxy = start_proxy(self, auto_verification=True)
        link = yield login(self, proxy, self.PILE)
        for ft in ("0a", "58"):
            answer = yield call(proxy, "POST", f"/proxy/{ft}", raw=self.B58)
            self.assertEqual(answer.code, 400, ft)
            self.assertEqual(
                answer.body["message"],
                "2 fields are wrong: id: is required: the 14-digit id of the pile to send the frame to; "
                "billingModelCode: must have exactly 4 digits, got 2",
            )
            self.assertEqual([e["field"] for e in answer.body["errors"]], ["id", "billingModelCode"])
        # With the two mistakes fixed, the same body works (accrualRatio may be left out).
        fixed = {**json.loads(self.B58), "id": self.PILE, "billingModelCode": "0001"}
        for code in (0x0A, 0x58):
            answer = yield call(proxy, "POST", f"/proxy/{code:02x}", fixed)
            self.assertEqual(answer.code, 200, answer.body)
            got = yield link.expect(code)
            self.assertEqual(got.seq, 73)
            self.assertEqual(got.fields["accrualRatio"], 0)
            self.assertEqual(got.fields["rateList"], fixed["rateList"])
        self.assertEqual([r.code for r in link.received], [0x02, 0x0A, 0x58])


class Validation(TestCase):
    """Client mistakes get 4xx with a message naming the field and the rule; nothing is sent."""

    timeout = 15

    @inlineCallbacks
    def setUp(self) -> Any:
        self.proxy = start_proxy(self, auto_verification=True, max_body_bytes=4096)
        self.link = yield login(self, self.proxy, PILE)
        self.addCleanup(self.nothing_reached_the_pile)  # runs before the proxy stops

    @inlineCallbacks
    def nothing_reached_the_pile(self) -> Any:
        yield barrier(self.link)
        self.assertEqual([r.code for r in self.link.received], [0x02, 0x04], "a bad request reached the pile")

    @inlineCallbacks
    def bad(
        self, ft: str, body: Any, message: str, code: int = 400, raw: bytes | None = None, query: str = ""
    ) -> Any:
        answer = yield call(self.proxy, "POST", f"/proxy/{ft}{query}", body, raw=raw)
        self.assertEqual(answer.code, code, answer.body)
        self.assertEqual(answer.body["message"], message)
        return answer

    @inlineCallbacks
    def test_malformed_json(self) -> None:
        yield self.bad("92", None, "malformed JSON: the body is empty (send a JSON object)", raw=b"")
        yield self.bad("92", None, "malformed JSON: Expecting value at line 1 column 1", raw=b"id=1")
        yield self.bad(
            "92", None, "malformed JSON: the body is not UTF-8 text (byte 8)", raw=b'{"id": "\xff"}'
        )
        yield self.bad(
            "92",
            None,
            "malformed JSON: trailing comma on line 1 before the closing ']' at line 1 column 24 "
            "(JSON allows no comma after the last member)",
            raw=b'{"id": "1", "x": [1, 2,]}',
        )
        yield self.bad("92", None, "malformed JSON: nested too deeply", raw=b"[" * 2000 + b"]" * 2000)
        yield self.bad("92", [PILE], "body: must be a JSON object, not an array")

    @inlineCallbacks
    def test_missing_fields(self) -> None:
        answer = yield self.bad("92", {"id": PILE}, "control: is required")
        self.assertEqual(answer.body["errors"], [{"field": "control", "rule": "is required"}])
        yield self.bad(
            "92", {"control": 1}, "id: is required: the 14-digit id of the pile to send the frame to"
        )
        yield self.bad(
            "40",
            {"tradeSeq": "1" * 32, "result": 0},
            "id: is required: the 14-digit id of the pile to send the frame to",
        )
        yield self.bad("46", {"id": PILE}, "cards: is required")
        yield self.bad(
            "44", {"id": PILE, "cards": [{"logicCard": "1"}]}, "cards[0].physicalCard: is required"
        )

    @inlineCallbacks
    def test_wrong_types(self) -> None:
        yield self.bad("92", {"id": PILE, "control": "1"}, "control: must be an integer, not a string")
        yield self.bad("92", {"id": PILE, "control": 1.0}, "control: must be an integer, not a number")
        yield self.bad("92", {"id": PILE, "control": True}, "control: must be an integer, not a boolean")
        yield self.bad("92", {"id": 32010200000001, "control": 1}, "id: must be a string, not an integer")
        yield self.bad("02", {"id": PILE, "result": 1}, "result: must be a boolean, not an integer")
        yield self.bad(
            "0a",
            command_body(0x0A, rateList="0" * 48),
            "rateList: must be an array of 48 integers, not a string",
        )
        yield self.bad("46", {"id": PILE, "cards": "D14B0A54"}, "cards: must be an array, not a string")
        yield self.bad("44", {"id": PILE, "cards": ["D14B0A54"]}, "cards[0]: must be an object, not a string")
        yield self.bad("92", {"id": PILE, "control": 1, "header": []}, "header: must be an object")
        yield self.bad(
            "92",
            {"id": PILE, "control": 1, "header": {"seq": "1"}},
            "header.seq: must be an integer from 0 to 65535, got '1'",
        )

    @inlineCallbacks
    def test_values_out_of_range(self) -> None:
        yield self.bad("92", {"id": PILE[:13], "control": 1}, "id: must have exactly 14 digits, got 13")
        yield self.bad("92", {"id": PILE + "0", "control": 1}, "id: must have exactly 14 digits, got 15")
        yield self.bad("12", {"id": PILE, "gunId": "0A"}, "gunId: must be BCD: decimal digits only, got '0A'")
        yield self.bad(
            "0a",
            command_body(0x0A, rateList=[0] * 47),
            "rateList: must have exactly 48 values, got 47",
        )
        yield self.bad(
            "58",
            command_body(0x58, rateList=[1] * 20 + [4] + [1] * 27),
            "rateList[20]: must be between 0 and 3, got 4",
        )
        yield self.bad(
            "44",
            {"id": PILE, "cards": [{"logicCard": "1", "physicalCard": "1"}] * 16},
            "cards: must have 1 to 15 entries, got 16",
        )
        yield self.bad("46", {"id": PILE, "cards": ["1"] * 25}, "cards: must have 1 to 24 entries, got 25")
        yield self.bad("48", {"id": PILE, "cards": ["1"] * 27}, "cards: must have 1 to 26 entries, got 27")
        yield self.bad("48", {"id": PILE, "cards": []}, "cards: must have 1 to 26 entries, got 0")
        yield self.bad(
            "94", command_body(0x94, serverPort=65536), "serverPort: must be between 0 and 65535, got 65536"
        )
        yield self.bad(
            "94",
            command_body(0x94, serverAddress="ftp.example.com.cn"),
            "serverAddress: must be at most 16 characters, got 18",
        )
        yield self.bad("94", command_body(0x94, username="用户"), "username: must be ASCII text")
        yield self.bad("92", {"id": PILE, "control": 3}, "control: must be one of [1, 2], got 3")
        yield self.bad(
            "52", command_body(0x52, maxOutputPower=29), "maxOutputPower: must be between 30 and 100, got 29"
        )
        yield self.bad(
            "62",
            command_body(0x62, gunId="256"),
            "gunId: must be a gun number of decimal digits up to 255, got '256'",
        )
        yield self.bad(
            "34",
            command_body(0x34, physicalCard="D14B0A5G"),
            "physicalCard: must be hexadecimal digits, got 'D14B0A5G'",
        )
        yield self.bad(
            "34", command_body(0x34, logicCard="1" * 17), "logicCard: must have at most 16 digits, got 17"
        )
        yield self.bad(
            "34", command_body(0x34, balance=-1), "balance: must be between 0 and 4294967295, got -1"
        )
        yield self.bad(
            "34",
            command_body(0x34, balance=2**32),
            "balance: must be between 0 and 4294967295, got 4294967296",
        )
        yield self.bad(
            "92",
            {"id": PILE, "control": 1, "header": {"seq": 65536}},
            "header.seq: must be an integer from 0 to 65535, got 65536",
        )
        yield self.bad(
            "92",
            {"id": PILE, "control": 1, "header": {"encrypted": True}},
            "header.encrypted: must be false (no encryption keys can be configured)",
        )

    @inlineCallbacks
    def test_every_bad_field_is_named(self) -> None:
        answer = yield self.bad(
            "34",
            {
                "id": "1",
                "tradeSeq": 5,
                "gunId": "01",
                "logicCard": "1",
                "physicalCard": "1",
                "header": {"seq": -1},
            },
            "4 fields are wrong: header.seq: must be an integer from 0 to 65535, got -1; "
            "tradeSeq: must be a string, not an integer; id: must have exactly 14 digits, got 1; "
            "balance: is required",
        )
        self.assertEqual(
            [e["field"] for e in answer.body["errors"]], ["header.seq", "tradeSeq", "id", "balance"]
        )

    @inlineCallbacks
    def test_wait_parameter(self) -> None:
        body = {"id": PILE, "control": 1}
        yield self.bad("92", body, "wait: must be a number of seconds, got 'soon'", query="?wait=soon")
        yield self.bad(
            "92", body, "wait: must be more than 0 and at most 300 seconds, got 0", query="?wait=0"
        )
        yield self.bad(
            "92", body, "wait: must be more than 0 and at most 300 seconds, got 301", query="?wait=301"
        )
        yield self.bad(
            "92", body, "wait: must be more than 0 and at most 300 seconds, got nan", query="?wait=nan"
        )
        yield self.bad(
            "02",
            {"id": PILE, "result": True},
            "wait: the pile answers no 0x02 with a reply frame, so there is none to wait for",
            query="?wait=1",
        )

    @inlineCallbacks
    def test_unknown_pile_and_type(self) -> None:
        yield self.bad("92", {"id": OTHER, "control": 1}, f"pile {OTHER} is not connected", code=404)
        yield self.bad(
            "40", {"id": OTHER, "tradeSeq": "1" * 32, "result": 0}, f"pile {OTHER} is not connected", code=404
        )
        listed = "02, 04, 06, 0a, 12, 32, 34, 36, 40, 42, 44, 46, 48, 52, 56, 58, 62, 92, 94, a2, a4"
        for ft in ("13", "zz", "0A", "3b"):
            yield self.bad(
                ft,
                {"id": PILE},
                f"unknown frame type {ft!r}: POST /proxy/<ft> takes one of {listed}",
                code=404,
            )
        answer = yield call(self.proxy, "GET", "/proxy/92")
        self.assertEqual(answer.code, 405)
        self.assertEqual(answer.body["message"], "method GET is not allowed here; use POST")
        self.assertEqual(answer.headers["allow"], "POST")
        answer = yield call(self.proxy, "GET", "/nothing")
        self.assertEqual((answer.code, answer.body["message"]), (404, "no such path: /nothing"))

    @inlineCallbacks
    def test_body_too_large(self) -> None:
        big = {"id": PILE, "control": 1, "padding": "x" * 5000}
        size = len(json.dumps(big))
        answer = yield self.bad(
            "92", big, f"request body of {size} bytes is over the limit of 4096 bytes", code=413
        )
        self.assertEqual(answer.headers["content-type"], "application/json")
        # Just at the limit is fine.
        body = {"id": PILE, "control": 1, "padding": ""}
        body["padding"] = "x" * (4096 - len(json.dumps(body)))
        answer = yield call(self.proxy, "POST", "/proxy/92", body)
        self.assertEqual(answer.code, 200, answer.body)
        yield self.link.expect(0x92)
        self.link.received.pop()

    @inlineCallbacks
    def test_metrics_count_client_errors(self) -> None:
        yield self.bad("92", {"id": PILE, "control": 3}, "control: must be one of [1, 2], got 3")
        yield self.bad("92", {"id": OTHER, "control": 1}, f"pile {OTHER} is not connected", code=404)
        metrics = (yield call(self.proxy, "GET", "/metrics")).body
        self.assertIn('ykc_rest_requests_total{code="400",route="proxy_92"} 1.0', metrics)
        self.assertIn('ykc_rest_requests_total{code="404",route="proxy_92"} 1.0', metrics)


class SequenceNumbers(TestCase):
    """Replies reuse the seq of the pile's request; commands take the session's next seq."""

    timeout = 15

    @inlineCallbacks
    def test_replies_reuse_the_request_seq(self) -> None:
        proxy = start_proxy(self, auto_verification=True, auto_heartbeat_response=False)
        link = yield login(self, proxy, PILE)
        trade_a = PILE + "01" + "250102030405" + "0001"
        trade_b = PILE + "01" + "250102030405" + "0002"
        link.send(0x03, example(0x03, PILE), seq=0x0301)
        link.send(0x05, example(0x05, PILE), seq=0x0501)
        link.send(0x09, example(0x09, PILE), seq=0x0901)
        link.send(0x31, example(0x31, PILE), seq=0x3101)
        link.send(0xA1, example(0xA1, PILE), seq=0xA101)
        link.send(0x3B, example(0x3B, PILE, tradeSeq=trade_a), seq=0x3B01)
        link.send(0x3B, example(0x3B, PILE, tradeSeq=trade_b), seq=0x3B02)
        link.send(0x05, example(0x05, PILE), seq=0x0502)  # the latest request counts
        session = proxy.piles.registry.get(PILE)
        yield until(lambda: session.last_request_seq.get(0x05) == 0x0502)
        expect = [
            (0x04, {}, 0x0301),
            (0x06, {}, 0x0502),
            (0x0A, {}, 0x0901),
            (0x32, {}, 0x3101),
            (0xA2, {}, 0xA101),
            (0x40, {"tradeSeq": trade_a}, 0x3B01),
            (0x40, {"tradeSeq": trade_b}, 0x3B02),
            (0x40, {"tradeSeq": PILE + "01" + "250102030405" + "0003"}, 0),  # no such record: next seq
            (0x06, {"header": {"seq": 999}}, 999),
            (0x92, {}, 1),
            (0x92, {"header": {"encrypted": False, "seq": 0xFFFF}}, 0xFFFF),
            (0x92, {}, 2),
        ]
        for code, override, seq in expect:
            answer = yield call(proxy, "POST", f"/proxy/{code:02x}", command_body(code, **override))
            self.assertEqual((answer.code, answer.body.get("seq")), (200, seq), (hex(code), answer.body))
            got = yield link.expect(code)
            self.assertEqual(got.seq, seq, hex(code))

    @inlineCallbacks
    def test_each_session_counts_from_zero(self) -> None:
        proxy = start_proxy(self, auto_verification=True)
        first = yield login(self, proxy, PILE)
        other = yield login(self, proxy, OTHER)
        for link, pile_id, seqs in ((first, PILE, [0, 1, 2]), (other, OTHER, [0, 1])):
            for seq in seqs:
                answer = yield call(proxy, "POST", "/proxy/12", {"id": pile_id, "gunId": "01"})
                self.assertEqual(answer.body["seq"], seq)
                got = yield link.expect(0x12)
                self.assertEqual(got.seq, seq)


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
