"""What the REST tests share: piles, bodies, expected frames, and a TestCase calling a StubApi."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from tests.stub_api import MemoryPile, StubApi
from tests.support import Http
from ykcproxy.sim.link import Received
from ykcproxy.wire.codec import Codec
from ykcproxy.wire.examples import example
from ykcproxy.wire.frames import CATALOGUE, Direction

PILE = "32010200000001"
OTHER = "32010200000002"
CODEC = Codec()
DOWNLINK = sorted(code for code, f in CATALOGUE.items() if f.direction is Direction.DOWN)


def expected_fields(code: int, body: dict[str, Any]) -> dict[str, Any]:
    """What a pile decodes from the frame the proxy must write for ``body``."""
    return CODEC.decode_body(code, CODEC.encode_body(code, CODEC.check(code, body)))


def command_body(code: int, pile_id: str = PILE, **override: Any) -> dict[str, Any]:
    """A valid REST body for ``code`` (0x40 gets the pile id it needs)."""
    body = {"id": pile_id, **example(code, pile_id)}
    body.update(override)
    return body


class StubTest(TestCase):
    """A TestCase calling the REST API of a :class:`~tests.stub_api.StubApi`."""

    def answer(self, stub: StubApi, *args: Any, **kwargs: Any) -> Http:
        """The answer of a call that needs no clock time (``stub.call``'s arguments)."""
        d = stub.call(*args, **kwargs)
        stub.flush()
        return self.successResultOf(d)

    def waiting(self, stub: StubApi, *args: Any, **kwargs: Any) -> Any:
        """Start a call that is not answered yet (a ``?wait=``); its Deferred."""
        d = stub.call(*args, **kwargs)
        stub.flush()
        self.assertNoResult(d)
        return d

    def answered(self, stub: StubApi, d: Any) -> Http:
        """The answer of the call ``d`` once the pending work ran."""
        stub.flush()
        return self.successResultOf(d)

    def one_frame(self, pile: MemoryPile, code: int) -> Received:
        """The one frame written to ``pile`` since the last look; it must be a ``code``."""
        frames = pile.frames()
        self.assertEqual([f.code for f in frames], [code])
        return frames[0]

    def sent(self, stub: StubApi, pile: MemoryPile, code: int, body: Any = None, **kwargs: Any) -> Any:
        """POST /proxy/<code> (200 expected); (answer, the frame the pile got)."""
        answer = self.answer(stub, "POST", f"/proxy/{code:02x}", body, **kwargs)
        self.assertEqual(answer.code, 200, f"0x{code:02x}: {answer.body}")
        return answer, self.one_frame(pile, code)
