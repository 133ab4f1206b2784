"""Charging sessions end to end: a raw-socket pile, REST commands, webhook ``session`` messages."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import login, rest, start_consumer, start_proxy
from ykcproxy.wire.examples import example

PILE = "32010200000001"
TRADE = f"{PILE}01250102030405{1:04d}"


def record(**override: Any) -> dict[str, Any]:
    fields = {
        **example(0x3B, PILE),
        "tradeSeq": TRADE,
        "gunId": "01",
        "totalElectricCharge": 5000,
        "consumptionAmount": 9000,
        **{f"{p}UnitPrice": 0 for p in ("sharp", "peak", "flat", "valley")},
        **{f"{p}ElectricCharge": 0 for p in ("sharp", "peak", "flat", "valley")},
    }
    fields.update(override)
    return fields


class WholeOrder(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_remote_start_to_settled(self) -> None:
        consumer, url = start_consumer(self)
        proxy = start_proxy(
            self, servers=(url,), auto_verification=True, auto_transaction_record_confirm=True
        )
        link = yield login(self, proxy, PILE)
        start = {**example(0x34, PILE), "tradeSeq": TRADE, "gunId": "01"}
        code, answer = yield rest(proxy, "POST", "/proxy/34", start)
        self.assertEqual(code, 200, answer)
        yield link.expect(0x34)
        link.send(
            0x33, {**example(0x33, PILE), "tradeSeq": TRADE, "gunId": "01", "result": True, "reason": 0}
        )
        charging = {**example(0x13, PILE), "tradeSeq": TRADE, "gunId": "01", "status": 3, "plugged": 1}
        link.send(0x13, charging)
        code, answer = yield rest(proxy, "POST", "/proxy/36", {**example(0x36, PILE), "gunId": "01"})
        self.assertEqual(code, 200, answer)
        yield link.expect(0x36)
        link.send(0x35, {**example(0x35, PILE), "gunId": "01", "result": True, "reason": 0})
        link.send(0x13, {**charging, "status": 2})
        link.send(0x3B, record())
        confirm = yield link.expect(0x40)
        self.assertEqual(confirm.fields["tradeSeq"], TRADE)
        yield consumer.wait_for(lambda posts: any(p.body["state"] == "settled" for p in consumer.sessions))
        states = [p.body["state"] for p in consumer.sessions]
        self.assertEqual(states, ["starting", "charging", "stopping", "ended", "settled"])
        last = consumer.sessions[-1].body
        self.assertEqual(last["header"]["frameId"], "session")
        self.assertEqual((last["tradeSeq"], last["id"], last["anomalies"]), (TRADE, PILE, []))
        ids = {p.body["header"]["messageId"] for p in consumer.sessions}
        self.assertEqual(len(ids), 5)

        code, page = yield rest(proxy, "GET", f"/sessions?pile={PILE}&state=settled")
        self.assertEqual(code, 200)
        self.assertEqual([s["tradeSeq"] for s in page["sessions"]], [TRADE])
        code, one = yield rest(proxy, "GET", f"/sessions/{TRADE}")
        self.assertEqual((code, one["state"]), (200, "settled"))
        code, error = yield rest(proxy, "GET", "/sessions?anomaly=nine")
        self.assertEqual(code, 400)
        self.assertIn("anomaly", error["message"])
        code, _ = yield rest(proxy, "GET", f"/sessions/{'9' * 32}")
        self.assertEqual(code, 404)

    @inlineCallbacks
    def test_a_start_the_pile_never_answers_is_reported(self) -> None:
        consumer, url = start_consumer(self)
        proxy = start_proxy(self, servers=(url,), auto_verification=True, session_start_timeout=0.2)
        link = yield login(self, proxy, PILE)
        start = {**example(0x34, PILE), "tradeSeq": TRADE, "gunId": "01"}
        yield rest(proxy, "POST", "/proxy/34", start)
        yield link.expect(0x34)
        yield consumer.wait_for(lambda posts: any(p.body["state"] == "failed" for p in consumer.sessions))
        failed = consumer.sessions[-1].body
        self.assertEqual([(a["rule"], a["kind"]) for a in failed["anomalies"]], [(1, "start-timeout")])
        code, page = yield rest(proxy, "GET", "/sessions?anomaly=1")
        self.assertEqual([s["tradeSeq"] for s in page["sessions"]], [TRADE])
        text = proxy.metrics.render().decode()
        self.assertIn('ykc_sessions{state="failed"} 1.0', text)
        self.assertIn('ykc_session_anomalies_total{rule="1"} 1.0', text)
