"""A proxy process killed with SIGKILL mid-order: the order is still there after the restart."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from typing import Any

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import start_consumer, until
from tests.test_crash import connect, spawn_proxy
from ykcproxy.wire.examples import example

PILE = "44010200000009"
TRADE = f"{PILE}01250102030405{7:04d}"


def stored(path: str) -> tuple[str, int] | None:
    """The (state, energy) of the order in the session file, if written yet."""
    if not os.path.exists(path):
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT state, document FROM sessions WHERE trade_seq = ?", (TRADE,)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    return (row[0], json.loads(row[1])["detail"]["energy"]) if row else None


@inlineCallbacks
def get(port: int, path: str, body: Any = None) -> Any:
    url = f"http://127.0.0.1:{port}{path}"
    if body is None:
        response = yield treq.get(url, persistent=False)
    else:
        response = yield treq.post(url, json=body, persistent=False)
    content = yield response.content()
    return response.code, json.loads(content)


class KilledMidOrder(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_order_survives_sigkill_and_settles(self) -> None:
        _, url = start_consumer(self)
        data_dir = os.path.abspath(self.mktemp())
        first = spawn_proxy(self, url, data_dir)
        pile_port, rest_port = yield first.ready
        link = yield connect(pile_port, PILE)
        code, answer = yield get(
            rest_port, "/proxy/34", {**example(0x34, PILE), "tradeSeq": TRADE, "gunId": "01"}
        )
        self.assertEqual(code, 200, answer)
        yield link.expect(0x34)
        link.send(
            0x33, {**example(0x33, PILE), "tradeSeq": TRADE, "gunId": "01", "result": True, "reason": 0}
        )
        charging = {**example(0x13, PILE), "tradeSeq": TRADE, "gunId": "01", "status": 3, "plugged": 1}
        for energy in (1000, 2000, 3000):
            link.send(0x13, {**charging, "chargingDegrees": energy})
        path = os.path.join(data_dir, "sessions.sqlite3")
        yield until(lambda: stored(path) == ("charging", 3000), timeout=10)
        first.transport.signalProcess(signal.SIGKILL)
        yield first.ended
        second = spawn_proxy(self, url, data_dir)
        pile_port, rest_port = yield second.ready
        code, order = yield get(rest_port, f"/sessions/{TRADE}")
        self.assertEqual(code, 200, order)
        self.assertEqual((order["state"], order["energy"]), ("charging", 3000))
        link = yield connect(pile_port, PILE)
        record = {
            **example(0x3B, PILE),
            "tradeSeq": TRADE,
            "gunId": "01",
            **{f"{p}UnitPrice": 0 for p in ("sharp", "peak", "flat", "valley")},
            **{f"{p}ElectricCharge": 0 for p in ("sharp", "peak", "flat", "valley")},
        }
        link.send(0x3B, record)
        yield link.expect(0x40)
        yield until(lambda: stored(path) is not None and stored(path)[0] == "settled", timeout=10)
        code, order = yield get(rest_port, f"/sessions/{TRADE}")
        self.assertEqual(order["state"], "settled")
        self.assertNotIn("unseen-start", [a["kind"] for a in order["anomalies"]])
        link.transport.loseConnection()
        yield link.lost
