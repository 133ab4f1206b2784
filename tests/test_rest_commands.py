"""REST commands on StubTreq and a Clock: body in, the frame a pile reads out, with its seq."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from tests.rest_helpers import DOWNLINK, OTHER, PILE, StubTest, command_body, expected_fields
from tests.stub_api import StubApi
from ykcproxy.wire import frames


class EveryCommand(StubTest):
    """Each of the 21 platform→pile types: REST body in, the same fields out of the pile's transport."""

    def test_every_command_reaches_the_pile(self) -> None:
        stub = StubApi()
        pile = stub.pile(PILE)
        self.assertEqual(len(DOWNLINK), 21)
        next_seq = 0
        for code in DOWNLINK:
            ft = f"{code:02x}"
            body = command_body(code)
            answer, got = self.sent(stub, pile, code, body)
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
        self.assertEqual(pile.errors, [])
        metrics = self.answer(stub, "GET", "/metrics").body
        for code in DOWNLINK:
            self.assertIn(f'ykc_frames_out_total{{ft="{code:02x}"}}', metrics)
        self.assertIn('ykc_rest_requests_total{code="200",route="proxy_a4"} 1.0', metrics)

    def test_card_numbers_are_padded(self) -> None:
        stub = StubApi()
        pile = stub.pile(PILE)
        body = command_body(0x44, cards=[{"logicCard": "573", "physicalCard": "d14b0a54"}])
        _, got = self.sent(stub, pile, 0x44, body)
        self.assertEqual(
            got.fields["cards"], [{"logicCard": "0000000000000573", "physicalCard": "00000000D14B0A54"}]
        )

    def test_largest_lists_fit(self) -> None:
        stub = StubApi()
        pile = stub.pile(PILE)
        for code, count in ((0x44, 15), (0x46, 24), (0x48, 26)):
            if code == 0x44:
                cards: list[Any] = [
                    {"logicCard": str(i), "physicalCard": f"{i:X}"} for i in range(1, count + 1)
                ]
            else:
                cards = [f"{i:X}" for i in range(1, count + 1)]
            _, got = self.sent(stub, pile, code, {"id": PILE, "cards": cards})
            self.assertEqual(len(got.fields["cards"]), count)

    def test_time_sync_defaults_to_now(self) -> None:
        # The default of 0x56's time is the wall clock (time.time in ykcproxy.wire.frames): fixed here.
        self.patch(frames, "time", SimpleNamespace(time=lambda: 1_700_000_123.456))
        stub = StubApi()
        pile = stub.pile(PILE)
        _, got = self.sent(stub, pile, 0x56, {"id": PILE})
        self.assertEqual(got.fields["time"], 1_700_000_123_456)


class SeedExamples(StubTest):
    """The request bodies of the seed project's doc/restapi.md that are refused, byte for byte.

    (The accepted ones, 0x02, 0x06, 0x34, 0x40 and 0x92, go over loopback in test_rest.)
    """

    PILE = "12345620230378"
    B36 = b"""{
    "header":{
        "encrypted": false,
        "seq": 73
    },
    "id": "12345620230378",
    "gunId": "01",
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

    def test_36_trailing_comma_is_malformed_json(self) -> None:
        stub = StubApi()
        pile = stub.pile(self.PILE)
        answer = self.answer(stub, "POST", "/proxy/36", raw=self.B36)
        self.assertEqual(answer.code, 400)
        self.assertEqual(
            answer.body["message"],
            "malformed JSON: trailing comma on line 7 before the closing '}' at line 8 column 1 "
            "(JSON allows no comma after the last member)",
        )
        self.assertEqual(pile.frames(), [])

    def test_0a_58_without_id_and_with_2_digit_model(self) -> None:
        stub = StubApi()
        pile = stub.pile(self.PILE)
        for ft in ("0a", "58"):
            answer = self.answer(stub, "POST", f"/proxy/{ft}", raw=self.B58)
            self.assertEqual(answer.code, 400, ft)
            self.assertEqual(
                answer.body["message"],
                "2 fields are wrong: id: is required: the 14-digit id of the pile to send the frame to; "
                "billingModelCode: must have exactly 4 digits, got 2",
            )
            self.assertEqual([e["field"] for e in answer.body["errors"]], ["id", "billingModelCode"])
        self.assertEqual(pile.frames(), [])
        # With the two mistakes fixed, the same body works (accrualRatio may be left out).
        fixed = {**json.loads(self.B58), "id": self.PILE, "billingModelCode": "0001"}
        for code in (0x0A, 0x58):
            _, got = self.sent(stub, pile, code, fixed)
            self.assertEqual(got.seq, 73)
            self.assertEqual(got.fields["accrualRatio"], 0)
            self.assertEqual(got.fields["rateList"], fixed["rateList"])


class SequenceNumbers(StubTest):
    """Replies reuse the seq of the pile's request; commands take the session's next seq."""

    def test_replies_reuse_the_request_seq(self) -> None:
        stub = StubApi(auto_heartbeat_response=False)
        pile = stub.pile(PILE)
        trade_a = PILE + "01" + "250102030405" + "0001"
        trade_b = PILE + "01" + "250102030405" + "0002"
        pile.send(0x03, seq=0x0301)
        pile.send(0x05, seq=0x0501)
        pile.send(0x09, seq=0x0901)
        pile.send(0x31, seq=0x3101)
        pile.send(0xA1, seq=0xA101)
        pile.send(0x3B, seq=0x3B01, tradeSeq=trade_a)
        pile.send(0x3B, seq=0x3B02, tradeSeq=trade_b)
        pile.send(0x05, seq=0x0502)  # the latest request counts
        self.assertEqual(stub.piles.registry.get(PILE).last_request_seq.get(0x05), 0x0502)
        pile.frames()  # what the proxy answered by itself
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
            answer, got = self.sent(stub, pile, code, command_body(code, **override))
            self.assertEqual(answer.body.get("seq"), seq, (hex(code), answer.body))
            self.assertEqual(got.seq, seq, hex(code))

    def test_each_session_counts_from_zero(self) -> None:
        stub = StubApi()
        first = stub.pile(PILE)
        other = stub.pile(OTHER)
        for pile, pile_id, seqs in ((first, PILE, [0, 1, 2]), (other, OTHER, [0, 1])):
            for seq in seqs:
                answer, got = self.sent(stub, pile, 0x12, {"id": pile_id, "gunId": "01"})
                self.assertEqual(answer.body["seq"], seq)
                self.assertEqual(got.seq, seq)
