"""A short bounded run of the pile-side fuzz target (the long run is ``fuzz/fuzz_pile.py``)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from fuzz.pile_target import SEEDS, Target

TARGET = Target()


def mutated() -> st.SearchStrategy[bytes]:
    seed = st.sampled_from(SEEDS)
    flips = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=6)

    def mutate(args: tuple[bytes, list[tuple[int, int]], bytes]) -> bytes:
        frame, changes, tail = args
        data = bytearray(frame)
        for where, value in changes:
            if data:
                data[where % len(data)] = value
        return bytes(data) + tail

    return st.tuples(seed, flips, st.binary(max_size=40)).map(mutate)


class ShortFuzz(TestCase):
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.one_of(st.binary(max_size=300), mutated()), chunk=st.integers(0, 7))
    def test_no_exception_escapes(self, data: bytes, chunk: int) -> None:
        TARGET.feed(data, chunk)
