"""The framer: splits, merges, garbage, false starts, bad CRCs, both CRC byte orders."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from ykcproxy.wire.codec import FixedFrame, encode_frame
from ykcproxy.wire.crc import CrcOrder, SeqCrc, crc16, crc16_python
from ykcproxy.wire.framer import Framer, FramingError, RawFrame

#: The spec's 0x02 sample, whose CRC is right (low byte first).
SAMPLE_02 = bytes.fromhex("680c000000025503141278230500da4c")

frames_st = st.lists(
    st.tuples(
        st.integers(0, 255),  # type
        st.integers(0, 0xFFFF),  # seq
        st.binary(max_size=251),  # body: length byte 4..255
        st.sampled_from(list(CrcOrder)),
    ),
    min_size=1,
    max_size=8,
)


def frames_of(items: list) -> list[RawFrame]:
    return [i for i in items if isinstance(i, RawFrame)]


class FramerTests(TestCase):
    def test_spec_sample(self):
        (frame,) = Framer().feed(SAMPLE_02)
        assert isinstance(frame, RawFrame)
        self.assertEqual((frame.code, frame.seq, frame.encrypted), (0x02, 0, False))
        self.assertEqual(frame.body.hex(), "5503141278230500")
        self.assertIs(frame.crc_order, CrcOrder.LOW_FIRST)
        self.assertEqual(frame.length, 12)

    def test_crc_check_value(self):
        # CRC-16/MODBUS check value of "123456789".
        self.assertEqual(crc16(b"123456789"), 0x4B37)

    def test_high_first_accepted_and_noted(self):
        data = SAMPLE_02[:-2] + SAMPLE_02[-2:][::-1]
        (frame,) = Framer().feed(data)
        assert isinstance(frame, RawFrame)
        self.assertIs(frame.crc_order, CrcOrder.HIGH_FIRST)

    def test_strict_order_rejects_the_other(self):
        data = SAMPLE_02[:-2] + SAMPLE_02[-2:][::-1]
        items = Framer((CrcOrder.LOW_FIRST,)).feed(data)
        self.assertEqual(frames_of(items), [])
        self.assertEqual(items[0].kind, "crc")

    def test_partial_waits(self):
        framer = Framer()
        self.assertEqual(framer.feed(SAMPLE_02[:5]), [])
        self.assertEqual(framer.pending, 5)
        self.assertEqual(len(framer.feed(SAMPLE_02[5:])), 1)
        self.assertEqual(framer.pending, 0)

    def test_length_too_small(self):
        items = Framer().feed(b"\x68\x03" + SAMPLE_02)
        self.assertIsInstance(items[0], FramingError)
        self.assertEqual(items[0].kind, "length")
        self.assertEqual(len(frames_of(items)), 1)

    def test_start_byte_inside_body(self):
        frame = encode_frame(0x13, 0x6868, b"\x68\x68\x04\x68" * 10)
        items = Framer().feed(b"\x68\x10junk" + frame + frame)
        got = frames_of(items)
        self.assertEqual([f.raw for f in got], [frame, frame])

    def test_bad_crc_then_good_frame(self):
        bad = bytearray(SAMPLE_02)
        bad[5] ^= 1
        items = Framer().feed(bytes(bad) + SAMPLE_02)
        self.assertEqual([i.kind for i in items if isinstance(i, FramingError)][:1], ["crc"])
        self.assertEqual([f.raw for f in frames_of(items)], [SAMPLE_02])

    def test_corrupted_frame_is_one_error(self):
        """Its bytes, reported in the crc error, are not reported again as garbage."""
        bad = bytearray(SAMPLE_02)
        bad[5] ^= 1
        items = Framer().feed(bytes(bad) + SAMPLE_02)
        errors = [i for i in items if isinstance(i, FramingError)]
        self.assertEqual([(e.kind, e.data) for e in errors], [("crc", bytes(bad))])
        self.assertEqual([f.raw for f in frames_of(items)], [SAMPLE_02])

    def test_candidates_inside_a_bad_frame_fold_into_it(self):
        """False starts and bad length bytes inside the bad frame are not reported either."""
        inner = b"\x68\x02\x00\x68\x05\x01\x02\x03\x04\x05\x06\x07\x08\x68"
        bad = encode_frame(0x13, 1, inner + b"\x00" * 10)
        bad = bad[:-1] + bytes([bad[-1] ^ 0xFF])
        items = Framer().feed(bad + SAMPLE_02)
        self.assertEqual([i.kind for i in items if isinstance(i, FramingError)], ["crc"])
        self.assertEqual([f.raw for f in frames_of(items)], [SAMPLE_02])

    def test_valid_frame_inside_a_bad_frame_is_delivered(self):
        """A false start whose length covers a real frame: one crc error, and the frame."""
        false_start = b"\x68\x20"
        tail = b"\x00" * (0x20 + 4 - len(false_start) - len(SAMPLE_02))
        items = Framer().feed(false_start + SAMPLE_02 + tail + SAMPLE_02)
        errors = [i for i in items if isinstance(i, FramingError)]
        self.assertEqual([e.kind for e in errors], ["crc"])
        self.assertEqual(len(errors[0].data), 0x20 + 4)
        self.assertEqual([f.raw for f in frames_of(items)], [SAMPLE_02, SAMPLE_02])

    def test_garbage_past_a_bad_frame_is_still_reported(self):
        bad = bytearray(SAMPLE_02)
        bad[5] ^= 1
        framer = Framer()
        items = framer.feed(bytes(bad[:10]))
        items += framer.feed(bytes(bad[10:]) + b"\x01\x02")
        items += framer.feed(SAMPLE_02)
        errors = [(i.kind, i.data) for i in items if isinstance(i, FramingError)]
        self.assertEqual(errors, [("crc", bytes(bad)), ("garbage", b"\x01\x02")])
        self.assertEqual([f.raw for f in frames_of(items)], [SAMPLE_02])

    def test_coverage_survives_feeds_and_stalls(self):
        """Bytes covered by a crc error are not reported again after a split or a stall."""
        bad = bytearray(SAMPLE_02)
        bad[5] ^= 1
        # A false start inside the bad frame claims more bytes than arrive: a stall.
        bad[8] = 0x68
        bad[9] = 0xF0
        framer = Framer()
        items = framer.feed(bytes(bad))
        while framer.pending:
            items += framer.resync()
        self.assertEqual([i.kind for i in items if isinstance(i, FramingError)], ["crc"])
        items = framer.feed(SAMPLE_02)
        self.assertEqual([f.raw for f in frames_of(items)], [SAMPLE_02])

    @given(st.binary(max_size=400))
    @settings(max_examples=300, deadline=None)
    def test_no_byte_reported_twice(self, noise):
        """However bytes fail, no byte is in two errors (a length error's 2 bytes aside)."""
        stream = noise + SAMPLE_02 * 30
        framer = Framer()
        items = framer.feed(stream)
        while framer.pending:
            items += framer.resync()
        reported = sum(len(i.data) for i in items if isinstance(i, FramingError) and i.kind != "length")
        self.assertLessEqual(reported, len(stream))
        self.assertEqual([f.raw for f in frames_of(items)][-24:], [SAMPLE_02] * 24)

    @given(frames_st, st.data())
    @settings(max_examples=200, deadline=None)
    def test_random_splits(self, specs, data):
        wire = [encode_frame(code, seq, body, order) for code, seq, body, order in specs]
        stream = b"".join(wire)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
        framer = Framer()
        got: list = []
        last = 0
        for cut in cuts + [len(stream)]:
            got += framer.feed(stream[last:cut])
            last = cut
        self.assertEqual([f.raw for f in frames_of(got)], wire)
        self.assertEqual([i for i in got if isinstance(i, FramingError)], [])
        # A CRC whose two bytes are equal reads the same in both orders.
        orders = [f.crc_order for f in frames_of(got) if f.raw[-1] != f.raw[-2]]
        self.assertEqual(orders, [s[3] for s, w in zip(specs, wire) if w[-1] != w[-2]])

    @given(frames_st, st.lists(st.binary(max_size=40), min_size=1, max_size=9))
    @settings(max_examples=200, deadline=None)
    def test_random_garbage_between_frames(self, specs, garbage):
        """Garbage without a start byte between frames never costs a frame."""
        wire = [encode_frame(code, seq, body, order) for code, seq, body, order in specs]
        junk = [g.replace(b"\x68", b"\x00") for g in garbage]
        stream = b""
        for i, frame in enumerate(wire):
            stream += junk[i % len(junk)] + frame
        got = Framer().feed(stream)
        self.assertEqual([f.raw for f in frames_of(got)], wire)

    @given(frames_st, st.binary(min_size=1, max_size=300))
    @settings(max_examples=200, deadline=None)
    def test_arbitrary_garbage_never_crashes(self, specs, garbage):
        """Garbage with false starts may delay frames, but frames after it are found."""
        wire = [encode_frame(code, seq, body, order) for code, seq, body, order in specs]
        # Enough trailing frames that any false start's claimed length is used up.
        tail = wire + [SAMPLE_02] * 24
        got = Framer().feed(garbage + b"".join(tail))
        raws = [f.raw for f in frames_of(got)]
        self.assertEqual(raws[-24:], [SAMPLE_02] * 24)


class FixedFrameTests(TestCase):
    """A frame of a fixed body: its CRC from tables (CRC-16 is linear), the bytes of encode_frame."""

    def test_seq_crc_of_every_seq(self) -> None:
        for tail in (b"", b"\x00\x04", bytes(range(11)), bytes(range(200, 256))):
            seq_crc = SeqCrc.of_tail(tail)
            for seq in range(0x10000):
                self.assertEqual(seq_crc.crc(seq), crc16(seq.to_bytes(2, "little") + tail))

    def test_python_crc_from_a_register(self) -> None:
        """The register ``crc16_python`` may start from carries the CRC of what came before."""
        self.assertEqual(crc16_python(b"456789", crc16_python(b"123")), 0x4B37)

    @given(st.integers(0, 255), st.binary(max_size=251), st.integers(0, 0xFFFF), st.sampled_from(CrcOrder))
    @settings(max_examples=300, deadline=None)
    def test_same_bytes_as_encode_frame(self, code: int, body: bytes, seq: int, order: CrcOrder) -> None:
        fixed = FixedFrame(code, body)
        self.assertEqual(fixed.encode(seq, order), encode_frame(code, seq, body, order))
        self.assertEqual(frames_of(Framer().feed(fixed.encode(seq, order)))[0].body, body)

    def test_too_long(self) -> None:
        with self.assertRaises(ValueError):
            FixedFrame(0x04, bytes(252))
