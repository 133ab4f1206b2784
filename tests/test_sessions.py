"""The session tracker on task.Clock: each rule of spec §13.3, the states, the timers, the queries."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from ykcproxy.sessions import (
    KINDS,
    QueryError,
    SessionNotFound,
    SessionTracker,
    get_session,
    list_sessions,
)
from ykcproxy.sessions.tracker import NO_TRADE
from ykcproxy.wire.examples import example

PILE = "32010200000001"
OTHER = "32010200000002"
T0 = 1_750_000_000.0
MESSAGE_KEYS = {"tradeSeq", "id", "gunId", "state", "startedAt", "endedAt", "energy", "amount", "anomalies"}
MODEL = {
    **example(0x58, pile_id=PILE),
    "billingModelCode": "0100",
    "sharpUnitPrice": 100000,
    "sharpServiceFee": 50000,
    "peakUnitPrice": 90000,
    "peakServiceFee": 40000,
    "flatUnitPrice": 70000,
    "flatServiceFee": 30000,
    "valleyUnitPrice": 40000,
    "valleyServiceFee": 20000,
    "rateList": [3] * 16 + [2] * 16 + [1] * 16,  # no sharp half-hour
}


def trade(n: int, pile: str = PILE, gun: str = "01") -> str:
    """A tradeSeq as piles make them: pile id, gun, yyMMddHHmmss, counter."""
    return f"{pile}{gun}250102030405{n:04d}"


class Harness:
    """A tracker on a Clock, with one method per frame a test sends."""

    def __init__(self, **options: Any) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.messages: list[tuple[dict[str, Any], str]] = []
        self.tracker = SessionTracker(
            self.clock, lambda body, mid: self.messages.append((body, mid)), **options
        )

    def up(self, ft: int, pile: str = PILE, **fields: Any) -> None:
        self.tracker.observe(pile, "up", ft, {**example(ft, pile_id=pile), **fields})

    def down(self, ft: int, pile: str = PILE, **fields: Any) -> None:
        self.tracker.observe(pile, "down", ft, {**example(ft, pile_id=pile), **fields})

    # the frames of an order
    def remote_start(self, ts: str, **kw: Any) -> None:
        self.down(0x34, tradeSeq=ts, gunId=ts[14:16], **kw)

    def start_reply(self, ts: str, result: bool = True, reason: int = 0, **kw: Any) -> None:
        self.up(0x33, tradeSeq=ts, gunId=ts[14:16], result=result, reason=reason, **kw)

    def realtime(self, ts: str, status: int = 3, plugged: int = 1, energy: int = 1000, **kw: Any) -> None:
        fields = {"tradeSeq": ts, "gunId": kw.pop("gunId", ts[14:16]), "status": status, "plugged": plugged}
        self.up(0x13, chargingDegrees=energy, chargedAmount=energy * 2, **fields, **kw)

    def stop(self, gun: str = "01") -> None:
        self.down(0x36, gunId=gun)

    def stop_reply(self, result: bool = True, reason: int = 0, gun: str = "01") -> None:
        self.up(0x35, gunId=gun, result=result, reason=reason)

    def record(self, ts: str, **kw: Any) -> None:
        fields = {
            "tradeSeq": ts,
            "gunId": ts[14:16],
            "totalElectricCharge": 5000,
            "consumptionAmount": 9000,
            **{f"{p}UnitPrice": 0 for p in ("sharp", "peak", "flat", "valley")},
            **{f"{p}ElectricCharge": 0 for p in ("sharp", "peak", "flat", "valley")},
        }
        fields.update(kw)
        self.up(0x3B, **fields)

    def confirm(self, ts: str, result: int = 0) -> None:
        self.down(0x40, tradeSeq=ts, result=result)

    def charge(self, ts: str) -> None:
        """A remote start that reaches ``charging``."""
        self.remote_start(ts)
        self.start_reply(ts)
        self.realtime(ts)

    # looking
    def states(self, ts: str | None = None) -> list[str]:
        return [body["state"] for body, _ in self.messages if ts is None or body["tradeSeq"] == ts]

    def kinds(self, ts: str) -> list[str]:
        order = self.tracker.get(ts)
        assert order is not None
        return [a.kind for a in order.anomalies]

    def state(self, ts: str) -> str:
        order = self.tracker.get(ts)
        assert order is not None
        return order.state

    def last(self) -> dict[str, Any]:
        return self.messages[-1][0]


class NormalSessionTests(TestCase):
    """Orders that keep every rule: one message per state change, and nothing else."""

    def test_remote_session_end_to_end(self) -> None:
        h = Harness()
        ts = trade(1)
        h.remote_start(ts)
        self.assertEqual(h.states(), ["starting"])
        h.clock.advance(2)
        h.start_reply(ts)
        self.assertEqual(h.states(), ["starting"], "a successful 0x33 alone is not charging yet")
        h.realtime(ts, energy=10)
        h.clock.advance(15)
        h.realtime(ts, energy=20)
        self.assertEqual(h.states(), ["starting", "charging"], "energy updates send no message")
        self.assertEqual(h.tracker.get(ts).energy, 20)  # type: ignore[union-attr]
        h.clock.advance(600)
        h.stop()
        h.clock.advance(1)
        h.stop_reply()
        h.realtime(ts, status=2)
        h.clock.advance(5)
        h.record(ts)
        h.confirm(ts)
        self.assertEqual(h.states(), ["starting", "charging", "stopping", "ended", "settled"])
        self.assertEqual([mid for _, mid in h.messages], [f"{ts}-{n}" for n in range(1, 6)])
        for body, _ in h.messages:
            self.assertEqual(set(body), MESSAGE_KEYS)
        final = h.last()
        self.assertEqual(final["id"], PILE)
        self.assertEqual(final["gunId"], "01")
        self.assertEqual(final["startedAt"], int(T0 * 1000))
        self.assertEqual(final["endedAt"], int((T0 + 618) * 1000))
        self.assertEqual((final["energy"], final["amount"]), (5000, 9000), "the record's totals")
        self.assertEqual(final["anomalies"], [])
        self.assertEqual(h.clock.getDelayedCalls(), [], "no timer left behind")

    def test_pile_started_session(self) -> None:
        h = Harness()
        ts = trade(2)
        h.up(0x31, gunId="01")
        h.down(0x32, tradeSeq=ts, gunId="01", result=1, reason=0)
        h.clock.advance(10)
        h.realtime(ts)
        h.clock.advance(100)
        h.up(0x19, tradeSeq=ts, gunId="01")
        h.realtime(ts, status=2)
        h.record(ts)
        h.confirm(ts)
        self.assertEqual(h.states(), ["starting", "charging", "ended", "settled"])
        self.assertEqual(h.kinds(ts), [])

    def test_parallel_frames_count_as_their_plain_kin(self) -> None:
        h = Harness()
        ts = trade(3)
        h.down(0xA4, tradeSeq=ts, gunId="01")
        h.up(0xA3, tradeSeq=ts, gunId="01", result=True, reason=0)
        h.realtime(ts)
        self.assertEqual(h.states(), ["starting", "charging"])

    def test_realtime_before_the_start_reply(self) -> None:
        h = Harness()
        ts = trade(4)
        h.remote_start(ts)
        h.realtime(ts)
        self.assertEqual(h.state(ts), "starting")
        h.start_reply(ts)
        self.assertEqual(h.states(), ["starting", "charging"])

    def test_refused_pile_request_is_a_failed_order(self) -> None:
        h = Harness()
        ts = trade(5)
        h.down(0x32, tradeSeq=ts, gunId="01", result=0, reason=3)
        self.assertEqual(h.states(), ["failed"])
        self.assertEqual(h.last()["endedAt"], int(T0 * 1000))
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_failed_start_is_not_an_anomaly(self) -> None:
        h = Harness()
        ts = trade(6)
        h.remote_start(ts)
        h.start_reply(ts, result=False, reason=2)
        self.assertEqual(h.states(), ["starting", "failed"])
        self.assertEqual(h.kinds(ts), [])
        self.assertIn("reason 2", h.tracker.get(ts).failure)  # type: ignore[union-attr, arg-type]
        self.assertEqual(h.clock.getDelayedCalls(), [], "the start timer is cancelled")

    def test_not_plugged_then_plugged(self) -> None:
        """§8.4: a 0x33 failure "not plugged" may be followed by a success within 60 s."""
        h = Harness()
        ts = trade(7)
        h.remote_start(ts)
        h.start_reply(ts, result=False, reason=5)
        h.clock.advance(40)
        self.assertEqual(h.state(ts), "starting")
        h.start_reply(ts)
        h.realtime(ts)
        self.assertEqual(h.states(), ["starting", "charging"])
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_not_plugged_within_the_window(self) -> None:
        h = Harness()
        ts = trade(8)
        h.remote_start(ts)
        h.start_reply(ts, result=False, reason=5)
        h.clock.advance(59.9)
        self.assertEqual(h.state(ts), "starting")
        h.clock.advance(0.2)
        self.assertEqual(h.states(), ["starting", "failed"])
        self.assertEqual(h.kinds(ts), [], "a gun nobody plugged is no broken rule")
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_not_plugged_after_the_window_is_final(self) -> None:
        h = Harness()
        ts = trade(9)
        h.remote_start(ts)
        h.clock.advance(61)
        h.start_reply(ts, result=False, reason=5)
        self.assertEqual(h.state(ts), "failed")

    def test_stop_before_charging(self) -> None:
        h = Harness()
        ts = trade(10)
        h.remote_start(ts)
        h.stop()
        self.assertEqual(h.state(ts), "stopping")
        h.stop_reply()
        self.assertEqual(h.states(), ["starting", "stopping", "failed"])
        self.assertEqual(h.kinds(ts), [])
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_stop_before_charging_without_answer(self) -> None:
        h = Harness(stop_grace=5)
        ts = trade(11)
        h.remote_start(ts)
        h.stop()
        h.clock.advance(6)
        self.assertEqual(h.states(), ["starting", "stopping", "failed"])

    def test_record_retries_send_nothing_more(self) -> None:
        h = Harness()
        ts = trade(12)
        h.charge(ts)
        h.up(0x19, tradeSeq=ts, gunId="01")
        h.record(ts)
        count = len(h.messages)
        h.clock.advance(30)
        h.record(ts, totalElectricCharge=1)
        self.assertEqual(len(h.messages), count)
        self.assertEqual(h.tracker.get(ts).energy, 5000)  # type: ignore[union-attr]

    def test_other_frames_are_ignored(self) -> None:
        h = Harness()
        for ft in (0x01, 0x03, 0x05, 0x15, 0x17, 0x23, 0x25):
            h.up(ft)
        h.down(0x04)
        self.assertEqual(h.messages, [])
        self.assertEqual(list(h.tracker.sessions()), [])

    def test_direction_is_checked(self) -> None:
        h = Harness()
        with self.assertRaises(ValueError):
            h.tracker.observe(PILE, "sideways", 0x13, example(0x13))  # type: ignore[arg-type]

    def test_a_bad_frame_is_logged_not_raised(self) -> None:
        h = Harness()
        h.tracker.observe(PILE, "up", 0x13, {"gunId": "01"})
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_idle_realtime_without_order_is_ignored(self) -> None:
        h = Harness()
        h.realtime(NO_TRADE, status=2, gunId="01")
        self.assertEqual(list(h.tracker.sessions()), [])

    def test_a_failing_consumer_does_not_stop_the_tracker(self) -> None:
        h = Harness()

        def boom(body: dict[str, Any], mid: str) -> None:
            raise RuntimeError("consumer down")

        h.tracker.emit = boom
        ts = trade(13)
        h.charge(ts)
        self.assertEqual(h.state(ts), "charging")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)


class Rule1StartTimeoutTests(TestCase):
    def test_no_answer(self) -> None:
        h = Harness()
        ts = trade(20)
        h.remote_start(ts)
        h.clock.advance(89.9)
        self.assertEqual(h.state(ts), "starting")
        h.clock.advance(0.2)
        self.assertEqual(h.states(), ["starting", "failed"])
        (anomaly,) = h.tracker.get(ts).anomalies  # type: ignore[union-attr]
        self.assertEqual((anomaly.rule, anomaly.kind), (1, "start-timeout"))
        self.assertIn("any 0x33", anomaly.detail)
        self.assertEqual(anomaly.at, int((T0 + 90.1) * 1000))
        self.assertEqual(h.last()["anomalies"][0]["rule"], 1)

    def test_answered_but_no_charging_data(self) -> None:
        h = Harness()
        ts = trade(21)
        h.remote_start(ts)
        h.start_reply(ts)
        h.realtime(ts, status=2)
        h.clock.advance(91)
        self.assertEqual(h.kinds(ts), ["start-timeout"])
        self.assertIn("0x13 with status 0x03", h.tracker.get(ts).anomalies[0].detail)  # type: ignore[union-attr]

    def test_pile_start_without_charging_data(self) -> None:
        h = Harness()
        ts = trade(22)
        h.down(0x32, tradeSeq=ts, gunId="01", result=1, reason=0)
        h.clock.advance(91)
        self.assertEqual(h.state(ts), "failed")
        self.assertEqual(h.kinds(ts), ["start-timeout"])

    def test_timeout_is_an_option(self) -> None:
        h = Harness(start_timeout=5)
        ts = trade(23)
        h.remote_start(ts)
        h.clock.advance(5)
        self.assertEqual(h.kinds(ts), ["start-timeout"])

    def test_not_plugged_past_a_short_start_timeout_is_no_anomaly(self) -> None:
        h = Harness(start_timeout=5)
        ts = trade(24)
        h.remote_start(ts)
        h.start_reply(ts, result=False, reason=5)
        h.clock.advance(5)
        self.assertEqual(h.state(ts), "failed")
        self.assertEqual(h.kinds(ts), [])


class Rule2ChargedAfterFailedStartTests(TestCase):
    def test_after_a_failed_start(self) -> None:
        h = Harness()
        ts = trade(30)
        h.remote_start(ts)
        h.start_reply(ts, result=False, reason=3)
        h.realtime(ts)
        h.clock.advance(15)
        h.realtime(ts)
        self.assertEqual(h.kinds(ts), ["charged-after-failed-start"], "reported once")
        self.assertEqual(h.tracker.get(ts).anomalies[0].rule, 2)  # type: ignore[union-attr]
        self.assertEqual(h.states(), ["starting", "failed", "failed"])

    def test_after_a_start_timeout(self) -> None:
        h = Harness()
        ts = trade(31)
        h.remote_start(ts)
        h.clock.advance(90)
        h.start_reply(ts)
        h.realtime(ts)
        self.assertEqual(h.kinds(ts), ["start-timeout", "charged-after-failed-start"])

    def test_after_a_refused_request(self) -> None:
        h = Harness()
        ts = trade(32)
        h.down(0x32, tradeSeq=ts, gunId="01", result=0, reason=1)
        h.realtime(ts)
        self.assertEqual(h.kinds(ts), ["charged-after-failed-start"])


class Rule3DidNotStopTests(TestCase):
    def test_charging_within_the_grace_is_fine(self) -> None:
        h = Harness()
        ts = trade(40)
        h.charge(ts)
        h.stop()
        h.clock.advance(29)
        h.realtime(ts)
        self.assertEqual(h.kinds(ts), [])

    def test_charging_after_the_grace(self) -> None:
        h = Harness()
        ts = trade(41)
        h.charge(ts)
        h.stop()
        h.clock.advance(31)
        h.realtime(ts)
        h.clock.advance(15)
        h.realtime(ts)
        self.assertEqual(h.kinds(ts), ["did-not-stop"])
        self.assertEqual(h.tracker.get(ts).anomalies[0].rule, 3)  # type: ignore[union-attr]
        self.assertEqual(h.state(ts), "stopping")

    def test_grace_is_an_option(self) -> None:
        h = Harness(stop_grace=3)
        ts = trade(42)
        h.charge(ts)
        h.stop()
        h.clock.advance(4)
        h.realtime(ts)
        self.assertEqual(h.kinds(ts), ["did-not-stop"])

    def test_stop_refused(self) -> None:
        h = Harness()
        ts = trade(43)
        h.charge(ts)
        h.stop()
        h.stop_reply(result=False, reason=3)
        self.assertEqual(h.kinds(ts), ["did-not-stop"])
        self.assertIn("reason 3", h.last()["anomalies"][0]["detail"])

    def test_charging_after_the_stop_ended_the_order(self) -> None:
        h = Harness(record_timeout=100)
        ts = trade(44)
        h.charge(ts)
        h.stop()
        h.stop_reply()
        h.clock.advance(40)
        h.realtime(ts)
        self.assertEqual(h.kinds(ts), ["did-not-stop"])


class Rule4IdleWhileChargingTests(TestCase):
    def test_two_idle_frames(self) -> None:
        h = Harness()
        ts = trade(50)
        h.charge(ts)
        h.realtime(ts, status=2)
        self.assertEqual(h.state(ts), "ended", "the first idle frame ends charging")
        h.clock.advance(5)
        h.realtime(ts, status=2)
        self.assertEqual(h.states(), ["starting", "charging", "ended", "abnormal"])
        self.assertEqual(h.kinds(ts), ["idle-while-charging"])
        self.assertEqual(h.tracker.get(ts).anomalies[0].rule, 4)  # type: ignore[union-attr]

    def test_one_idle_frame_amid_charging(self) -> None:
        h = Harness()
        ts = trade(55)
        h.charge(ts)
        h.realtime(ts, status=2)
        h.clock.advance(15)
        h.realtime(ts)
        self.assertEqual(h.states(), ["starting", "charging", "ended", "charging"])
        self.assertIsNone(h.last()["endedAt"])
        h.clock.advance(60)
        self.assertEqual(h.kinds(ts), [], "charging went on: no record was due")
        h.realtime(ts, status=2)
        self.assertEqual(h.states()[-2:], ["ended", "abnormal"])
        self.assertEqual(h.kinds(ts), ["idle-while-charging"])

    def test_idle_frames_without_trade_seq_count(self) -> None:
        h = Harness()
        ts = trade(51)
        h.charge(ts)
        h.realtime(NO_TRADE, status=2, gunId="01")
        h.realtime(NO_TRADE, status=2, gunId="01")
        self.assertEqual(h.kinds(ts), ["idle-while-charging"])

    def test_abnormal_stays_with_its_record(self) -> None:
        h = Harness()
        ts = trade(52)
        h.charge(ts)
        h.realtime(ts, status=2)
        h.realtime(ts, status=2)
        h.record(ts)
        h.confirm(ts)
        self.assertEqual(h.state(ts), "abnormal")
        self.assertTrue(h.tracker.get(ts).confirmed)  # type: ignore[union-attr]

    def test_idle_after_an_explicit_end_is_fine(self) -> None:
        for end in ("19", "35", "3b"):
            h = Harness()
            ts = trade(53)
            h.charge(ts)
            if end == "19":
                h.up(0x19, tradeSeq=ts, gunId="01")
            elif end == "35":
                h.stop()
                h.stop_reply()
            else:
                h.record(ts)
            h.realtime(ts, status=2)
            h.realtime(ts, status=2)
            self.assertEqual(h.kinds(ts), [], end)

    def test_fault_is_not_idle(self) -> None:
        h = Harness()
        ts = trade(54)
        h.charge(ts)
        h.realtime(ts, status=1)
        h.realtime(ts, status=1)
        self.assertEqual(h.state(ts), "ended")
        self.assertEqual(h.kinds(ts), [])


class Rule5UnpluggedWithoutRecordTests(TestCase):
    def test_unplugged_and_no_record(self) -> None:
        h = Harness()
        ts = trade(60)
        h.charge(ts)
        h.realtime(ts, plugged=0)
        h.clock.advance(29.9)
        self.assertEqual(h.kinds(ts), [])
        h.clock.advance(0.2)
        self.assertIn("unplugged-without-record", h.kinds(ts))
        self.assertEqual(KINDS["unplugged-without-record"], 5)

    def test_unplugged_with_record_in_time(self) -> None:
        h = Harness()
        ts = trade(61)
        h.charge(ts)
        h.realtime(ts, status=2, plugged=0)
        h.clock.advance(3)
        h.record(ts)
        h.clock.advance(60)
        self.assertEqual(h.kinds(ts), [])
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_unplugged_when_not_charging_is_fine(self) -> None:
        h = Harness()
        ts = trade(62)
        h.remote_start(ts)
        h.realtime(ts, status=2, plugged=0)
        h.start_reply(ts, result=False, reason=5)
        h.clock.advance(100)
        self.assertNotIn("unplugged-without-record", h.kinds(ts))

    def test_record_timeout_is_an_option(self) -> None:
        h = Harness(record_timeout=2)
        ts = trade(63)
        h.charge(ts)
        h.realtime(ts, plugged=0)
        h.clock.advance(2)
        self.assertEqual(h.kinds(ts), ["unplugged-without-record"])


class Rule6TradeSeqMismatchTests(TestCase):
    def test_realtime_with_another_trade_seq(self) -> None:
        h = Harness()
        ts, wrong = trade(70), trade(71)
        h.charge(ts)
        h.realtime(wrong, energy=3000)
        h.clock.advance(15)
        h.realtime(wrong, energy=4000)
        self.assertEqual(h.kinds(ts), ["trade-seq-mismatch"], "once per wrong tradeSeq")
        order = h.tracker.get(ts)
        assert order is not None
        self.assertEqual(order.anomalies[0].rule, 6)
        self.assertIn(wrong, order.anomalies[0].detail)
        self.assertEqual(order.energy, 4000, "the gun's open order is the reference")
        self.assertIsNone(h.tracker.get(wrong))

    def test_start_reply_with_another_trade_seq(self) -> None:
        h = Harness()
        ts, wrong = trade(72), trade(73)
        h.remote_start(ts)
        h.start_reply(wrong)
        h.realtime(ts)
        self.assertEqual(h.state(ts), "charging")
        self.assertEqual(h.kinds(ts), ["trade-seq-mismatch"])

    def test_record_with_another_trade_seq(self) -> None:
        h = Harness()
        ts, wrong = trade(74), trade(75)
        h.charge(ts)
        h.up(0x19, tradeSeq=ts, gunId="01")
        h.record(wrong)
        order = h.tracker.get(ts)
        assert order is not None
        self.assertEqual(h.kinds(ts), ["trade-seq-mismatch"])
        self.assertIsNotNone(order.record)
        h.clock.advance(60)
        self.assertEqual(h.kinds(ts), ["trade-seq-mismatch"], "the record arrived: no rule 7")


class Rule7RecordMissingTests(TestCase):
    def test_no_record_then_a_late_one(self) -> None:
        h = Harness()
        ts = trade(80)
        h.charge(ts)
        h.up(0x19, tradeSeq=ts, gunId="01")
        h.clock.advance(29.9)
        self.assertEqual(h.kinds(ts), [])
        h.clock.advance(0.2)
        self.assertEqual(h.kinds(ts), ["record-missing"])
        self.assertEqual(h.tracker.get(ts).anomalies[0].rule, 7)  # type: ignore[union-attr]
        self.assertEqual(h.state(ts), "ended")
        h.clock.advance(300)
        h.record(ts)
        h.confirm(ts)
        self.assertEqual(h.state(ts), "settled")
        self.assertEqual(h.kinds(ts), ["record-missing"], "the anomaly stays")

    def test_refused_record_does_not_settle(self) -> None:
        h = Harness()
        ts = trade(81)
        h.charge(ts)
        h.record(ts)
        h.confirm(ts, result=1)
        self.assertEqual(h.state(ts), "ended")
        self.assertIs(h.tracker.get(ts).confirmed, False)  # type: ignore[union-attr]


class Rule8TariffMismatchTests(TestCase):
    def agreed(self, h: Harness) -> None:
        h.down(0x58, **MODEL)
        h.up(0x57, result=1)

    def good_record(self, ts: str) -> dict[str, Any]:
        return {
            "peakUnitPrice": 130000,
            "peakElectricCharge": 100,
            "flatUnitPrice": 100000,
            "flatElectricCharge": 200,
            "valleyUnitPrice": 60000,
            "valleyElectricCharge": 300,
        }

    def test_matching_record(self) -> None:
        h = Harness()
        self.agreed(h)
        ts = trade(90)
        h.charge(ts)
        h.record(ts, **self.good_record(ts))
        self.assertEqual(h.kinds(ts), [])
        self.assertIn("ok", h.tracker.get(ts).tariff_check)  # type: ignore[union-attr, arg-type]

    def test_wrong_unit_price(self) -> None:
        h = Harness()
        self.agreed(h)
        ts = trade(91)
        h.charge(ts)
        h.record(ts, **{**self.good_record(ts), "flatUnitPrice": 70000})
        self.assertEqual(h.kinds(ts), ["tariff-mismatch"])
        anomaly = h.tracker.get(ts).anomalies[0]  # type: ignore[union-attr]
        self.assertEqual(anomaly.rule, 8)
        self.assertIn("flat unit price 70000", anomaly.detail)
        self.assertIn("0100", anomaly.detail)

    def test_energy_in_an_unused_period(self) -> None:
        h = Harness()
        self.agreed(h)
        ts = trade(92)
        h.charge(ts)
        h.record(ts, **{**self.good_record(ts), "sharpUnitPrice": 150000, "sharpElectricCharge": 50})
        self.assertEqual(h.kinds(ts), ["tariff-mismatch"])
        self.assertIn("sharp carries energy 50", h.last()["anomalies"][0]["detail"])

    def test_model_of_0a(self) -> None:
        h = Harness()
        h.down(0x0A, **MODEL)
        ts = trade(93)
        h.charge(ts)
        h.record(ts, **{**self.good_record(ts), "peakUnitPrice": 1})
        self.assertEqual(h.kinds(ts), ["tariff-mismatch"])

    def test_unacknowledged_model_is_not_used(self) -> None:
        for ack in (None, 0):
            h = Harness()
            h.down(0x58, **MODEL)
            if ack is not None:
                h.up(0x57, result=ack)
            ts = trade(94)
            h.charge(ts)
            h.record(ts, peakUnitPrice=1, peakElectricCharge=5)
            self.assertEqual(h.kinds(ts), [])
            detail = get_session(h.tracker, ts)
            self.assertIn("skipped", detail["tariffCheck"])

    def test_model_sent_before_going_offline_is_dropped(self) -> None:
        h = Harness()
        h.down(0x58, **MODEL)
        h.tracker.pile_offline(PILE)
        h.up(0x57, result=1)
        self.assertIsNone(h.tracker.billing_model(PILE))

    def test_models_are_per_pile(self) -> None:
        h = Harness()
        self.agreed(h)
        ts = trade(95, pile=OTHER)
        h.remote_start(ts, pile=OTHER)
        h.start_reply(ts, pile=OTHER)
        h.realtime(ts, pile=OTHER)
        h.record(ts, pile=OTHER, peakUnitPrice=1, peakElectricCharge=5)
        self.assertEqual(h.kinds(ts), [])


class UnseenStartTests(TestCase):
    def test_record_of_an_unknown_order(self) -> None:
        h = Harness()
        ts = trade(100)
        h.record(ts, startAt=1_700_000_000_000, endAt=1_700_000_600_000)
        self.assertEqual(h.states(), ["ended"])
        body = h.last()
        self.assertEqual((body["startedAt"], body["endedAt"]), (1_700_000_000_000, 1_700_000_600_000))
        self.assertEqual([(a["rule"], a["kind"]) for a in body["anomalies"]], [(6, "unseen-start")])
        h.confirm(ts)
        self.assertEqual(h.state(ts), "settled")

    def test_charging_data_of_an_unknown_order(self) -> None:
        h = Harness()
        ts = trade(101)
        h.realtime(ts, energy=70)
        self.assertEqual(h.states(), ["charging"])
        self.assertEqual(h.kinds(ts), ["unseen-start"])
        self.assertEqual(h.last()["energy"], 70)
        h.up(0x19, tradeSeq=ts, gunId="01")
        h.record(ts)
        h.confirm(ts)
        self.assertEqual(h.states(), ["charging", "ended", "settled"])

    def test_start_reply_of_an_unknown_order(self) -> None:
        h = Harness()
        ts = trade(102)
        h.start_reply(ts)
        h.realtime(ts)
        self.assertEqual(h.states(), ["starting", "charging"])
        self.assertEqual(h.kinds(ts), ["unseen-start"])

    def test_record_of_an_unknown_order_beside_a_starting_one(self) -> None:
        h = Harness()
        ts, old = trade(103), trade(104)
        h.remote_start(ts)
        h.record(old)
        self.assertEqual(h.kinds(old), ["unseen-start"])
        self.assertEqual(h.kinds(ts), [])
        h.start_reply(ts)
        h.realtime(ts)
        self.assertEqual(h.state(ts), "charging")


class TimerAndMemoryTests(TestCase):
    def test_stop_cancels_every_timer(self) -> None:
        h = Harness()
        h.remote_start(trade(110))
        h.charge(trade(111, gun="02"))
        h.realtime(trade(111, gun="02"), plugged=0)
        self.assertEqual(len(h.clock.getDelayedCalls()), 2)
        h.tracker.stop()
        self.assertEqual(h.clock.getDelayedCalls(), [])
        h.clock.advance(1000)
        self.assertEqual(h.state(trade(110)), "starting")

    def test_count_bound(self) -> None:
        h = Harness(keep=3)
        for n in range(5):
            ts = trade(120 + n)
            h.charge(ts)
            h.record(ts)
            h.confirm(ts)
            h.clock.advance(1)
        kept = sorted(order.trade_seq for order in h.tracker.sessions())
        self.assertEqual(kept, [trade(122), trade(123), trade(124)])
        self.assertIsNone(h.tracker.get(trade(120)))

    def test_time_bound(self) -> None:
        h = Harness(keep_for=3600)
        ts = trade(130)
        h.charge(ts)
        h.record(ts)
        h.confirm(ts)
        open_ts = trade(131, gun="02")
        h.charge(open_ts)
        h.clock.advance(3599)
        self.assertIsNotNone(h.tracker.get(ts))
        h.clock.advance(2)
        self.assertIsNone(h.tracker.get(ts))
        self.assertIsNotNone(h.tracker.get(open_ts), "an open order is never dropped")

    def test_an_order_is_retired_only_when_its_timers_end(self) -> None:
        h = Harness(keep=0)
        ts, nxt = trade(140), trade(141)
        h.charge(ts)
        h.up(0x19, tradeSeq=ts, gunId="01")
        h.remote_start(nxt)  # replaces it on the gun while its record timer runs
        self.assertIsNotNone(h.tracker.get(ts))
        h.clock.advance(30)
        kinds = [a["kind"] for a in h.messages[-1][0]["anomalies"]]
        self.assertEqual(kinds, ["record-missing"], "the timer fired...")
        self.assertIsNone(h.tracker.get(ts), "...and then it was retired")
        self.assertIsNotNone(h.tracker.get(nxt))

    def test_timeline_is_bounded(self) -> None:
        h = Harness(timeline_limit=20)
        ts = trade(150)
        h.charge(ts)
        for n in range(100):
            h.realtime(ts, plugged=n % 2)
            h.realtime(ts, status=3, plugged=1)
        order = h.tracker.get(ts)
        assert order is not None
        self.assertEqual(len(order.timeline), 20)
        self.assertEqual(order.timeline[1].info["ft"], "34", "the start is kept")

    def test_offline_is_noted(self) -> None:
        h = Harness()
        ts = trade(160)
        h.charge(ts)
        h.tracker.pile_offline(PILE)
        self.assertEqual(get_session(h.tracker, ts)["timeline"][-1]["what"], "offline")
        self.assertEqual(h.state(ts), "charging")

    def test_counts(self) -> None:
        h = Harness()
        h.charge(trade(170))
        h.remote_start(trade(171, gun="02"))
        h.clock.advance(90)
        self.assertEqual(h.tracker.counts_by_state(), {"charging": 1, "failed": 1})
        self.assertEqual(h.tracker.anomaly_counts, {1: 1})


class QueryTests(TestCase):
    def setUp(self) -> None:
        h = self.h = Harness()
        h.charge(trade(1))  # charging, pile 1 gun 1
        h.clock.advance(10)
        h.remote_start(trade(2, gun="02"))  # fails with rule 1
        h.clock.advance(100)
        started = int(h.clock.seconds() * 1000)
        h.record(trade(3, pile=OTHER), pile=OTHER, startAt=started)  # unseen, ended
        h.clock.advance(10)

    def seqs(self, **args: Any) -> list[str]:
        return [s["tradeSeq"] for s in list_sessions(self.h.tracker, args)["sessions"]]

    def test_newest_first(self) -> None:
        self.assertEqual(self.seqs(), [trade(3, pile=OTHER), trade(2, gun="02"), trade(1)])

    def test_filters(self) -> None:
        self.assertEqual(self.seqs(pile=PILE), [trade(2, gun="02"), trade(1)])
        self.assertEqual(self.seqs(pile=PILE, gun="1"), [trade(1)])
        self.assertEqual(self.seqs(gun="02"), [trade(2, gun="02")])
        self.assertEqual(self.seqs(state="charging"), [trade(1)])
        self.assertEqual(self.seqs(since=int((T0 + 10) * 1000)), [trade(3, pile=OTHER), trade(2, gun="02")])
        self.assertEqual(self.seqs(anomaly="any"), [trade(3, pile=OTHER), trade(2, gun="02")])
        self.assertEqual(self.seqs(anomaly="1"), [trade(2, gun="02")])
        self.assertEqual(self.seqs(anomaly="unseen-start"), [trade(3, pile=OTHER)])
        self.assertEqual(self.seqs(anomaly="8"), [])
        self.assertEqual(self.seqs(pile="", gun=""), self.seqs(), "empty means not given")
        self.assertEqual(self.seqs(colour="red"), self.seqs(), "unknown arguments are ignored")

    def test_klein_style_arguments(self) -> None:
        args = {b"state": [b"failed"], b"limit": [b"5"]}
        self.assertEqual(
            [s["tradeSeq"] for s in list_sessions(self.h.tracker, args)["sessions"]], [trade(2, gun="02")]
        )

    def test_paging(self) -> None:
        page = list_sessions(self.h.tracker, {"limit": "2"})
        self.assertEqual(len(page["sessions"]), 2)
        self.assertIsNotNone(page["next"])
        rest = list_sessions(self.h.tracker, {"limit": "2", "before": page["next"]})
        self.assertEqual([s["tradeSeq"] for s in rest["sessions"]], [trade(1)])
        self.assertIsNone(rest["next"])
        self.assertEqual(set(page["sessions"][0]), MESSAGE_KEYS)

    def test_bad_arguments_name_the_argument(self) -> None:
        cases = {
            "pile": "123",
            "gun": "001",
            "state": "running",
            "since": "-5",
            "anomaly": "9",
            "limit": "0",
            "before": "soon",
        }
        for argument, value in cases.items():
            with self.assertRaises(QueryError) as caught:
                list_sessions(self.h.tracker, {argument: value})
            self.assertEqual(caught.exception.argument, argument)
            self.assertIn(argument, str(caught.exception))
            self.assertIsInstance(caught.exception, ValueError)
        for value in ("1001", "many", "0", "rule-1"):
            with self.assertRaises(QueryError):
                list_sessions(self.h.tracker, {"limit" if value[0].isdigit() else "anomaly": value})

    def test_one_session(self) -> None:
        detail = get_session(self.h.tracker, trade(1).lower())
        self.assertEqual(detail["state"], "charging")
        self.assertEqual([e["ft"] for e in detail["timeline"] if e["what"] == "frame"], ["34", "33", "13"])
        self.assertEqual(
            [e["state"] for e in detail["timeline"] if e["what"] == "state"], ["starting", "charging"]
        )
        failed = get_session(self.h.tracker, trade(2, gun="02"))
        self.assertIn("start-timeout", [e.get("kind") for e in failed["timeline"]])

    def test_one_session_errors(self) -> None:
        with self.assertRaises(SessionNotFound):
            get_session(self.h.tracker, trade(999))
        with self.assertRaises(QueryError) as caught:
            get_session(self.h.tracker, "12")
        self.assertEqual(caught.exception.argument, "tradeSeq")
