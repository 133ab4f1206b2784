"""The JSON encoder of forwarded messages: same JSON as the standard library, compact in memory."""

from __future__ import annotations

import json
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from ykcproxy.jsonenc import dumps, dumps_std
from ykcproxy.wire.crc import crc16, crc16_python

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


class Encoding(TestCase):
    @given(json_values)
    @settings(max_examples=200, deadline=None)
    def test_same_json_as_the_standard_library(self, value):
        self.assertEqual(json.loads(dumps(value)), json.loads(dumps_std(value)))
        self.assertEqual(json.loads(dumps(value)), value)

    def test_non_ascii_is_utf8(self):
        self.assertEqual(dumps({"v": "T\ufffd"}), '{"v":"T\ufffd"}'.encode())

    def test_queued_messages_are_compact(self):
        """A payload waiting in a queue costs about its length, not an encoder buffer."""
        message = {"header": {"raw": "68" * 70, "messageId": "x-1"}, "id": "32010200000001", "v": "y" * 300}
        size = len(dumps(message))
        tracemalloc.start()
        try:
            kept = [dumps(message) for _ in range(200)]
            used = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        self.assertEqual(len(kept), 200)
        self.assertLess(used / 200, 2 * size)


class Crc(TestCase):
    @given(st.binary(max_size=300))
    @settings(max_examples=300, deadline=None)
    def test_fast_crc_agrees_with_the_table(self, data):
        self.assertEqual(crc16(data), crc16_python(data))
