"""Each misbehaving simulated pile is caught by the session tracker as breaking its rule."""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.daemon import ChildOutput
from tests.support import reactor, rest, start_proxy, until
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


class MisbehavingSimAgainstTheProxy(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_misbehave_4_shows_in_get_sessions(self) -> None:
        proxy = start_proxy(self, auto_verification=True, auto_billing_model_verify=True)
        sim = ChildOutput()
        args = [sys.executable, "-m", "ykcproxy.sim.cli", "--port", str(proxy.tcp_port), "--piles", "1"]
        args += ["--ramp", "0", "--warmup", "0", "--duration", "120", "--misbehave", "4", "--charging", "0"]
        transport = reactor.spawnProcess(sim, sys.executable, args, env=os.environ.copy())
        self.addCleanup(
            lambda: sim.ended if sim.ended.called else (transport.signalProcess("KILL"), sim.ended)[1]
        )
        yield until(lambda: len(proxy.piles.registry) == 1 or sim.ended.called, timeout=15)
        pile = PILE  # the simulator's first pile id
        trade = f"{pile}01250102030405{1:04d}"

        def state() -> str | None:
            order = proxy.sessions.get(trade)
            return order.state if order is not None else None

        code, answer = yield rest(
            proxy, "POST", "/proxy/34", {**example(0x34, pile), "tradeSeq": trade, "gunId": "01"}
        )
        self.assertEqual(code, 200, answer)
        yield until(lambda: state() == "charging")
        for _ in range(2):  # each read is answered with a 0x13 that says idle
            code, answer = yield rest(proxy, "POST", "/proxy/12", {**example(0x12, pile), "gunId": "01"})
            self.assertEqual(code, 200, answer)
        yield until(lambda: state() == "abnormal")
        code, listed = yield rest(proxy, "GET", "/sessions?anomaly=4")
        self.assertEqual([s["tradeSeq"] for s in listed["sessions"]], [trade])
        self.assertEqual([a["kind"] for a in listed["sessions"][0]["anomalies"]], ["idle-while-charging"])
