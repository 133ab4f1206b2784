"""Each misbehaving simulated pile is caught by the session tracker as breaking its rule."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from ykcproxy.sessions import SessionTracker
from ykcproxy.sim.pile import SimPile
from ykcproxy.wire.examples import example

PILE = "32010200000001"
TRADE = f"{PILE}01250102030405{1:04d}"
KIND = {
    1: "start-timeout",
    2: "charged-after-failed-start",
    3: "did-not-stop",
    4: "idle-while-charging",
    5: "unplugged-without-record",
    6: "trade-seq-mismatch",
    7: "record-missing",
    8: "tariff-mismatch",
}


def run(rule: int) -> list[str]:
    """Start a charge on a pile breaking ``rule``, stop it after a while; the anomaly kinds seen."""
    clock = Clock()
    clock.advance(1_750_000_000)
    tracker = SessionTracker(clock, lambda body, key: None)
    pile = SimPile(PILE, clock, None, misbehave=rule)
    pile.logged_in = True

    def send(code: int, fields: Any, seq: int | None = None) -> int:
        tracker.observe(PILE, "up", code, dict(fields))
        return 0

    pile.send = send  # type: ignore[method-assign]

    def down(code: int, **fields: Any) -> None:
        frame = {**example(code, PILE), **fields}
        tracker.observe(PILE, "down", code, frame)
        SimPile._HANDLERS[code](pile, frame, 1)

    # A billing model for rule 8: the 0x58 the pile acknowledges (its rates: the sim's unit price, flat).
    model = {**example(0x58, PILE), "rateList": [2] * 48}
    for period in ("sharp", "peak", "flat", "valley"):
        model.update({f"{period}UnitPrice": 100000, f"{period}ServiceFee": 30000})
    down(0x58, **model)
    down(0x34, tradeSeq=TRADE, gunId="01")
    for _ in range(8):
        clock.advance(15)
    down(0x36, gunId="01")
    for _ in range(12):
        clock.advance(15)
    order = tracker.get(TRADE)
    assert order is not None
    return [a.kind for a in order.anomalies]


class MisbehavingPiles(TestCase):
    def test_a_well_behaved_pile_breaks_no_rule(self) -> None:
        self.assertEqual(run(0), [])

    def test_each_misbehaving_pile_breaks_its_rule(self) -> None:
        for rule, kind in KIND.items():
            self.assertIn(kind, run(rule), f"rule {rule}")
