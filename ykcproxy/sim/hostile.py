"""Hostile traffic for soak tests: random bytes and mutated frames, as an attacker sends them."""

from __future__ import annotations

import random

from ykcproxy.sim.link import PileLink
from ykcproxy.wire.examples import example

#: Frame types whose valid examples the mutations start from.
_CODES = (0x01, 0x03, 0x05, 0x13, 0x19, 0x33, 0x35, 0x3B)


def hostile_frames(rng: random.Random, count: int, pile_id: str = "32010299999999") -> list[bytes]:
    """``count`` hostile inputs: random bytes, flipped bits, truncated frames, bad lengths, 0x68 floods."""
    link = PileLink()
    seeds = [link.frame(code, example(code, pile_id, salt=i)) for i, code in enumerate(_CODES)]
    out: list[bytes] = []
    for _ in range(count):
        kind = rng.randrange(5)
        frame = bytearray(rng.choice(seeds))
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(1, 200)))
        elif kind == 1:
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
            out.append(bytes(frame))
        elif kind == 2:
            out.append(bytes(frame[: rng.randrange(1, len(frame))]))
        elif kind == 3:
            frame[1] = rng.randrange(256)
            out.append(bytes(frame))
        else:
            out.append(b"\x68" * rng.randrange(1, 64) + rng.randbytes(rng.randrange(0, 32)))
    return out
