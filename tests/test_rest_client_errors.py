"""Client mistakes on StubTreq and a Clock: a 4xx naming the field and the rule, and nothing sent."""

from __future__ import annotations

import json
from typing import Any

from tests.rest_helpers import OTHER, PILE, StubTest, command_body
from tests.stub_api import StubApi


class Validation(StubTest):
    """Client mistakes get 4xx with a message naming the field and the rule; nothing is sent."""

    def setUp(self) -> None:
        self.stub = StubApi(max_body_bytes=4096)
        self.pile = self.stub.pile(PILE)
        self.addCleanup(self.nothing_reached_the_pile)

    def nothing_reached_the_pile(self) -> None:
        self.assertEqual(self.pile.frames(), [], "a bad request reached the pile")

    def bad(
        self, ft: str, body: Any, message: str, code: int = 400, raw: bytes | None = None, query: str = ""
    ) -> Any:
        answer = self.answer(self.stub, "POST", f"/proxy/{ft}{query}", body, raw=raw)
        self.assertEqual(answer.code, code, answer.body)
        self.assertEqual(answer.body["message"], message)
        return answer

    def test_malformed_json(self) -> None:
        self.bad("92", None, "malformed JSON: the body is empty (send a JSON object)", raw=b"")
        self.bad("92", None, "malformed JSON: Expecting value at line 1 column 1", raw=b"id=1")
        self.bad("92", None, "malformed JSON: the body is not UTF-8 text (byte 8)", raw=b'{"id": "\xff"}')
        self.bad(
            "92",
            None,
            "malformed JSON: trailing comma on line 1 before the closing ']' at line 1 column 24 "
            "(JSON allows no comma after the last member)",
            raw=b'{"id": "1", "x": [1, 2,]}',
        )
        self.bad("92", None, "malformed JSON: nested too deeply", raw=b"[" * 2000 + b"]" * 2000)
        self.bad("92", [PILE], "body: must be a JSON object, not an array")

    def test_missing_fields(self) -> None:
        answer = self.bad("92", {"id": PILE}, "control: is required")
        self.assertEqual(answer.body["errors"], [{"field": "control", "rule": "is required"}])
        self.bad("92", {"control": 1}, "id: is required: the 14-digit id of the pile to send the frame to")
        self.bad(
            "40",
            {"tradeSeq": "1" * 32, "result": 0},
            "id: is required: the 14-digit id of the pile to send the frame to",
        )
        self.bad("46", {"id": PILE}, "cards: is required")
        self.bad("44", {"id": PILE, "cards": [{"logicCard": "1"}]}, "cards[0].physicalCard: is required")

    def test_wrong_types(self) -> None:
        self.bad("92", {"id": PILE, "control": "1"}, "control: must be an integer, not a string")
        self.bad("92", {"id": PILE, "control": 1.0}, "control: must be an integer, not a number")
        self.bad("92", {"id": PILE, "control": True}, "control: must be an integer, not a boolean")
        self.bad("92", {"id": 32010200000001, "control": 1}, "id: must be a string, not an integer")
        self.bad("02", {"id": PILE, "result": 1}, "result: must be a boolean, not an integer")
        self.bad(
            "0a",
            command_body(0x0A, rateList="0" * 48),
            "rateList: must be an array of 48 integers, not a string",
        )
        self.bad("46", {"id": PILE, "cards": "D14B0A54"}, "cards: must be an array, not a string")
        self.bad("44", {"id": PILE, "cards": ["D14B0A54"]}, "cards[0]: must be an object, not a string")
        self.bad("92", {"id": PILE, "control": 1, "header": []}, "header: must be an object")
        self.bad(
            "92",
            {"id": PILE, "control": 1, "header": {"seq": "1"}},
            "header.seq: must be an integer from 0 to 65535, got '1'",
        )

    def test_values_out_of_range(self) -> None:
        self.bad("92", {"id": PILE[:13], "control": 1}, "id: must have exactly 14 digits, got 13")
        self.bad("92", {"id": PILE + "0", "control": 1}, "id: must have exactly 14 digits, got 15")
        self.bad("12", {"id": PILE, "gunId": "0A"}, "gunId: must be BCD: decimal digits only, got '0A'")
        self.bad(
            "0a",
            command_body(0x0A, rateList=[0] * 47),
            "rateList: must have exactly 48 values, got 47",
        )
        self.bad(
            "58",
            command_body(0x58, rateList=[1] * 20 + [4] + [1] * 27),
            "rateList[20]: must be between 0 and 3, got 4",
        )
        self.bad(
            "44",
            {"id": PILE, "cards": [{"logicCard": "1", "physicalCard": "1"}] * 16},
            "cards: must have 1 to 15 entries, got 16",
        )
        self.bad("46", {"id": PILE, "cards": ["1"] * 25}, "cards: must have 1 to 24 entries, got 25")
        self.bad("48", {"id": PILE, "cards": ["1"] * 27}, "cards: must have 1 to 26 entries, got 27")
        self.bad("48", {"id": PILE, "cards": []}, "cards: must have 1 to 26 entries, got 0")
        self.bad(
            "94", command_body(0x94, serverPort=65536), "serverPort: must be between 0 and 65535, got 65536"
        )
        self.bad(
            "94",
            command_body(0x94, serverAddress="ftp.example.com.cn"),
            "serverAddress: must be at most 16 characters, got 18",
        )
        self.bad("94", command_body(0x94, username="用户"), "username: must be ASCII text")
        self.bad("92", {"id": PILE, "control": 3}, "control: must be one of [1, 2], got 3")
        self.bad(
            "52", command_body(0x52, maxOutputPower=29), "maxOutputPower: must be between 30 and 100, got 29"
        )
        self.bad(
            "62",
            command_body(0x62, gunId="256"),
            "gunId: must be a gun number of decimal digits up to 255, got '256'",
        )
        self.bad(
            "34",
            command_body(0x34, physicalCard="D14B0A5G"),
            "physicalCard: must be hexadecimal digits, got 'D14B0A5G'",
        )
        self.bad(
            "34", command_body(0x34, logicCard="1" * 17), "logicCard: must have at most 16 digits, got 17"
        )
        self.bad("34", command_body(0x34, balance=-1), "balance: must be between 0 and 4294967295, got -1")
        self.bad(
            "34",
            command_body(0x34, balance=2**32),
            "balance: must be between 0 and 4294967295, got 4294967296",
        )
        self.bad(
            "92",
            {"id": PILE, "control": 1, "header": {"seq": 65536}},
            "header.seq: must be an integer from 0 to 65535, got 65536",
        )
        self.bad(
            "92",
            {"id": PILE, "control": 1, "header": {"encrypted": True}},
            "header.encrypted: must be false (no encryption keys can be configured)",
        )

    def test_every_bad_field_is_named(self) -> None:
        answer = self.bad(
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

    def test_wait_parameter(self) -> None:
        body = {"id": PILE, "control": 1}
        self.bad("92", body, "wait: must be a number of seconds, got 'soon'", query="?wait=soon")
        self.bad("92", body, "wait: must be more than 0 and at most 300 seconds, got 0", query="?wait=0")
        self.bad("92", body, "wait: must be more than 0 and at most 300 seconds, got 301", query="?wait=301")
        self.bad("92", body, "wait: must be more than 0 and at most 300 seconds, got nan", query="?wait=nan")
        self.bad(
            "02",
            {"id": PILE, "result": True},
            "wait: the pile answers no 0x02 with a reply frame, so there is none to wait for",
            query="?wait=1",
        )

    def test_unknown_pile_and_type(self) -> None:
        self.bad("92", {"id": OTHER, "control": 1}, f"pile {OTHER} is not connected", code=404)
        self.bad(
            "40", {"id": OTHER, "tradeSeq": "1" * 32, "result": 0}, f"pile {OTHER} is not connected", code=404
        )
        listed = "02, 04, 06, 0a, 12, 32, 34, 36, 40, 42, 44, 46, 48, 52, 56, 58, 62, 92, 94, a2, a4"
        for ft in ("13", "zz", "0A", "3b"):
            self.bad(
                ft,
                {"id": PILE},
                f"unknown frame type {ft!r}: POST /proxy/<ft> takes one of {listed}",
                code=404,
            )
        answer = self.answer(self.stub, "GET", "/proxy/92")
        self.assertEqual(answer.code, 405)
        self.assertEqual(answer.body["message"], "method GET is not allowed here; use POST")
        self.assertEqual(answer.headers["allow"], "POST")
        answer = self.answer(self.stub, "GET", "/nothing")
        self.assertEqual((answer.code, answer.body["message"]), (404, "no such path: /nothing"))

    def test_body_too_large(self) -> None:
        big = {"id": PILE, "control": 1, "padding": "x" * 5000}
        size = len(json.dumps(big))
        answer = self.bad(
            "92", big, f"request body of {size} bytes is over the limit of 4096 bytes", code=413
        )
        self.assertEqual(answer.headers["content-type"], "application/json")
        # Just at the limit is fine.
        body = {"id": PILE, "control": 1, "padding": ""}
        body["padding"] = "x" * (4096 - len(json.dumps(body)))
        answer = self.answer(self.stub, "POST", "/proxy/92", body)
        self.assertEqual(answer.code, 200, answer.body)
        self.one_frame(self.pile, 0x92)

    def test_metrics_count_client_errors(self) -> None:
        self.bad("92", {"id": PILE, "control": 3}, "control: must be one of [1, 2], got 3")
        self.bad("92", {"id": OTHER, "control": 1}, f"pile {OTHER} is not connected", code=404)
        metrics = self.answer(self.stub, "GET", "/metrics").body
        self.assertIn('ykc_rest_requests_total{code="400",route="proxy_92"} 1.0', metrics)
        self.assertIn('ykc_rest_requests_total{code="404",route="proxy_92"} 1.0', metrics)
