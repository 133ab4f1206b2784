"""The checks of REST bodies, without the network: every mistake is a 400, never a crash."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from ykcproxy.api.validation import ApiError, Command, check_command, parse_json
from ykcproxy.wire.codec import Codec, encode_frame
from ykcproxy.wire.examples import example
from ykcproxy.wire.frames import CATALOGUE, Direction

PILE = "32010200000001"
CODEC = Codec()
DOWNLINK = [f for _, f in sorted(CATALOGUE.items()) if f.direction is Direction.DOWN]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["01", "0001", PILE, "D14B0A54", "1" * 32, "", "0A"]),
    lambda children: (
        st.lists(children, max_size=30) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)


def valid_body(code: int) -> dict[str, Any]:
    return {"id": PILE, **example(code, PILE)}


def outcome(frame: Any, body: Any) -> Command | ApiError:
    """check_command's result; a passing body must encode into a frame that fits."""
    try:
        cmd = check_command(CODEC, frame, body)
    except ApiError as e:
        return e
    body_bytes = CODEC.encode_body(frame.code, cmd.fields)
    encode_frame(frame.code, cmd.header.get("seq", 0), body_bytes)
    return cmd


class ParseJson(TestCase):
    def rejects(self, content: bytes) -> str:
        with self.assertRaises(ApiError) as caught:
            parse_json(content)
        self.assertEqual(caught.exception.code, 400)
        message = caught.exception.body["message"]
        self.assertTrue(message.startswith("malformed JSON: "), message)
        return message

    def test_trailing_commas(self) -> None:
        self.assertIn(
            "trailing comma on line 1 before the closing '}' at line 2 column 1", self.rejects(b'{"a": 1,\n}')
        )
        self.assertIn("closing ']' at line 1 column 7", self.rejects(b"[1, 2,]"))
        self.assertIn("closing '}' at line 1 column 15", self.rejects(b'{"a": [1, 2], }'))

    def test_other_mistakes(self) -> None:
        self.assertEqual(self.rejects(b""), "malformed JSON: the body is empty (send a JSON object)")
        self.assertEqual(self.rejects(b" \r\n"), "malformed JSON: the body is empty (send a JSON object)")
        self.assertEqual(
            self.rejects(b'{"a": 1'), "malformed JSON: Expecting ',' delimiter at line 1 column 8"
        )
        self.assertEqual(
            self.rejects(b"{'a': 1}"),
            "malformed JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        )
        self.assertEqual(self.rejects(b'{"a": 1} x'), "malformed JSON: Extra data at line 1 column 10")
        self.assertEqual(self.rejects(b"\xfe\xff"), "malformed JSON: the body is not UTF-8 text (byte 0)")
        self.assertEqual(self.rejects(b"[" * 5000), "malformed JSON: nested too deeply")
        self.assertIn("digits", self.rejects(b'{"balance": ' + b"9" * 5000 + b"}"))

    def test_accepted(self) -> None:
        self.assertEqual(parse_json(b'\xef\xbb\xbf{"a": 1}'.decode("utf-8-sig").encode()), {"a": 1})
        self.assertEqual(parse_json('{"name": "桩"}'.encode()), {"name": "桩"})


class CheckCommand(TestCase):
    def test_every_example_passes(self) -> None:
        for frame in DOWNLINK:
            cmd = outcome(frame, valid_body(frame.code))
            self.assertIsInstance(cmd, Command, frame.ft)
            assert isinstance(cmd, Command)
            self.assertEqual(cmd.pile_id, PILE)
            self.assertEqual(cmd.header, {})

    def test_unknown_fields_are_ignored(self) -> None:
        cmd = check_command(CODEC, CATALOGUE[0x92], {"id": PILE, "control": 1, "Id": "x", "extra": [1]})
        self.assertEqual(cmd.fields, {"id": PILE, "control": 1})

    def test_header(self) -> None:
        frame = CATALOGUE[0x92]
        for header, expected in (
            ({"seq": 0}, {"seq": 0}),
            ({"seq": 65535, "encrypted": False}, {"seq": 65535}),
            ({"encrypted": False}, {}),
            ({"seq": None}, {}),
            (None, {}),
        ):
            cmd = check_command(CODEC, frame, {"id": PILE, "control": 1, "header": header})
            self.assertEqual(cmd.header, expected)

    def test_0x40_names_its_pile_apart_from_the_frame(self) -> None:
        cmd = check_command(CODEC, CATALOGUE[0x40], {"id": PILE, "tradeSeq": "1" * 32, "result": 1})
        self.assertEqual((cmd.pile_id, cmd.fields), (PILE, {"tradeSeq": "1" * 32, "result": 1}))
        with self.assertRaises(ApiError) as caught:
            check_command(CODEC, CATALOGUE[0x40], {"id": None, "tradeSeq": "1" * 32, "result": 2})
        self.assertEqual(
            caught.exception.body["errors"],
            [
                {"field": "id", "rule": "is required: the 14-digit id of the pile to send the frame to"},
                {"field": "result", "rule": "must be one of [0, 1], got 2"},
            ],
        )

    def test_not_an_object(self) -> None:
        for body, kind in (
            ([], "an array"),
            ("x", "a string"),
            (None, "null"),
            (1, "a number"),
            (True, "a boolean"),
        ):
            with self.assertRaises(ApiError) as caught:
                check_command(CODEC, CATALOGUE[0x92], body)
            self.assertEqual(caught.exception.body["message"], f"body: must be a JSON object, not {kind}")


class NeverACrash(TestCase):
    """Whatever JSON a client sends, the answer is a 400 or a frame that encodes."""

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(DOWNLINK), json_values)
    def test_any_json(self, frame: Any, body: Any) -> None:
        result = outcome(frame, body)
        if isinstance(result, ApiError):
            self.assertEqual(result.code, 400)
            json.dumps(result.body)

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(DOWNLINK), st.data())
    def test_one_field_changed(self, frame: Any, data: Any) -> None:
        body = valid_body(frame.code)
        key = data.draw(st.sampled_from(sorted(body) + ["header"]))
        body[key] = data.draw(json_values)
        result = outcome(frame, body)
        if isinstance(result, ApiError):
            self.assertEqual(result.code, 400)
            self.assertTrue(
                all(e["field"].split("[")[0].split(".")[0] == key for e in result.body["errors"]), result.body
            )
