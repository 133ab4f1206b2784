"""The pile simulator: its timers under a fake clock, and its behaviour against the real proxy."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.support import reactor, rest, settle, start_consumer, start_proxy
from ykcproxy.sim.faults import Faults
from ykcproxy.sim.fleet import Fleet, FleetSettings
from ykcproxy.sim.link import PileLink
from ykcproxy.sim.pile import PileSettings, SimPile
from ykcproxy.sim.stats import Stats, percentile
from ykcproxy.wire.codec import Codec, encode_frame
from ykcproxy.wire.framer import Framer, RawFrame

PILE = "32010200000099"
CODEC = Codec()


class _Transport(StringTransport):
    """A StringTransport whose closing reaches the protocol, as a real one's does."""

    def loseConnection(self) -> None:
        self._lost()

    def abortConnection(self) -> None:
        self._lost()

    def _lost(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


class FakeLine:
    """A connector that links a pile to an in-memory transport; frames written are decoded."""

    def __init__(self) -> None:
        self.links: list[PileLink] = []
        self.transports: list[StringTransport] = []
        self.refuse = False
        self._framer = Framer()

    def __call__(self, link: PileLink) -> Deferred[Any]:
        if self.refuse:
            return fail(ConnectionRefusedError("refused"))
        transport = _Transport()
        transport.protocol = link
        link.makeConnection(transport)
        self.links.append(link)
        self.transports.append(transport)
        return succeed(link)

    def sent(self) -> list[RawFrame]:
        """Every frame the pile wrote on the current transport (and clears it)."""
        transport = self.transports[-1]
        data = transport.value()
        transport.clear()
        return [f for f in self._framer.feed(data) if isinstance(f, RawFrame)]

    def answer(self, code: int, fields: dict[str, Any], seq: int) -> None:
        """The platform writes a frame to the pile."""
        body = CODEC.encode_body(code, CODEC.check(code, fields))
        self.links[-1].dataReceived(encode_frame(code, seq, body))

    def drop(self) -> None:
        """The line goes dead."""
        self.links[-1].connectionLost(Failure(ConnectionLost()))


def logged_in_pile(**settings: Any) -> tuple[SimPile, FakeLine, Clock]:
    """A pile on a fake line under a fake clock, logged in and with its billing model verified."""
    clock, line = Clock(), FakeLine()
    clock.advance(1_763_950_000)  # pile clocks (CP56Time2a) start in 2000
    pile = SimPile(PILE, clock, line, PileSettings(**settings))
    pile.start()
    (login,) = line.sent()
    line.answer(0x02, {"id": PILE, "result": True}, login.seq)
    (verify,) = line.sent()
    assert verify.code == 0x05
    line.answer(0x06, {"id": PILE, "billingModelCode": "0000", "result": True}, verify.seq)
    assert pile.ready
    return pile, line, clock


class RecordRetries(TestCase):
    """0x3B: retried every 30 s up to 3 times until a 0x40, then once more after 5 minutes."""

    def charge_and_stop(self) -> tuple[SimPile, FakeLine, Clock]:
        pile, line, clock = logged_in_pile(heartbeat_interval=10_000, idle_interval=0)
        trade = pile.start_local_charge("01")
        self.assertIsNotNone(trade)
        pile.stop_charging(pile.guns[0])
        codes = [f.code for f in line.sent()]
        self.assertEqual(codes[-2:], [0x13, 0x3B])
        return pile, line, clock

    def test_schedule_without_confirmation(self) -> None:
        pile, line, clock = self.charge_and_stop()
        sent_at = []
        for second in range(1, 800):
            clock.advance(1)
            if any(f.code == 0x3B for f in line.sent()):
                sent_at.append(second)
        self.assertEqual(sent_at, [30, 60, 90, 390])
        self.assertEqual(pile.records, {})
        self.assertEqual(pile.stats.lost["3b"], 1)
        self.assertEqual(pile.stats.events["record_retries"], 4)

    def test_confirmation_stops_retries(self) -> None:
        pile, line, clock = self.charge_and_stop()
        clock.advance(30)
        (retry,) = [f for f in line.sent() if f.code == 0x3B]
        trade = CODEC.decode_body(0x3B, retry.body)["tradeSeq"]
        line.answer(0x40, {"tradeSeq": trade, "result": 0}, retry.seq)
        clock.advance(1000)
        self.assertEqual([f for f in line.sent() if f.code == 0x3B], [])
        self.assertEqual(pile.stats.events["records_confirmed"], 1)
        self.assertEqual(pile.stats.lost_total, 0)

    def test_heartbeat_every_interval_and_reconnect_after_three_misses(self) -> None:
        pile, line, clock = logged_in_pile(heartbeat_interval=10, idle_interval=0, reconnect_base=1.0)
        clock.advance(10)  # the first heartbeat is at a random phase within the interval
        beats = [f for f in line.sent() if f.code == 0x03]
        self.assertEqual(len(beats), 1)
        line.answer(0x04, {"id": PILE, "gun": "01", "response": 0}, beats[0].seq)
        for _ in range(4):
            clock.advance(10)
        self.assertFalse(line.links[-1].connected or pile.logged_in)
        self.assertEqual(pile.stats.errors["heartbeat_replies_missing"], 1)
        self.assertEqual(pile.stats.lost["03"], 3)
        clock.advance(1.0)  # first backoff step: 0.5..1 s
        self.assertEqual(len(line.links), 2)
        (login,) = line.sent()
        self.assertEqual((login.code, login.seq), (0x01, 0))

    def test_reconnect_backoff_doubles_and_caps(self) -> None:
        clock, line = Clock(), FakeLine()
        line.refuse = True
        pile = SimPile(PILE, clock, line, PileSettings(reconnect_base=1.0, reconnect_cap=8.0))
        delays = [pile.reconnect_delay() for _ in range(6)]
        for i, delay in enumerate(delays):
            base = min(8.0, 2.0**i)
            self.assertTrue(base / 2 <= delay <= base, (i, delay))
        pile.start()
        for _ in range(100):
            clock.advance(1)
        self.assertGreater(pile.stats.errors["connect_failed"], 12)
        line.refuse = False
        for _ in range(9):
            clock.advance(1)
        self.assertEqual(len(line.links), 1)


class Percentiles(TestCase):
    def test_nearest_rank(self) -> None:
        values = [float(i) for i in range(1, 101)]
        self.assertEqual(percentile(values, 0.5), 50.0)
        self.assertEqual(percentile(values, 0.99), 99.0)
        self.assertEqual(percentile(values, 1.0), 100.0)
        stats = Stats()
        for i in range(10):
            stats.latency("03", float(i), i / 1000)
        self.assertEqual(stats.latency_summary(since=5)["03"]["count"], 5)


class AgainstTheProxy(TestCase):
    """The simulator against the real proxy over loopback."""

    def fleet(self, proxy: Any, piles: int = 1, **kw: Any) -> Fleet:
        pile_settings = kw.pop("pile", PileSettings())
        fleet = Fleet(
            FleetSettings(port=proxy.tcp_port, piles=piles, id_base=32010200000001, pile=pile_settings, **kw),
            reactor,
        )
        self.addCleanup(fleet.stop, 0)
        return fleet

    @inlineCallbacks
    def test_charging_session(self) -> None:
        """0x34 → 0x33 → 0x13… → 0x36 → 0x35 → 0x3B → 0x40, through REST and a webhook consumer."""
        consumer, url = start_consumer(self)
        proxy = start_proxy(
            self,
            servers=url,
            auto_verification=True,
            auto_billing_model_verify=True,
            auto_transaction_record_confirm=True,
        )
        fleet = self.fleet(proxy, pile=PileSettings(charging_interval=0.1, heartbeat_interval=1))
        yield fleet.start()
        pile = fleet.piles[0]
        trade = pile.pile_id + "01" + "251124093000" + "0001"
        start = {
            "tradeSeq": trade,
            "id": pile.pile_id,
            "gunId": "01",
            "logicCard": "1",
            "physicalCard": "D14B0A54",
            "balance": 10000,
        }
        code, answer = yield rest(proxy, "POST", "/proxy/34?wait=5", start)
        self.assertEqual(code, 200, answer)
        self.assertEqual(answer["reply"]["result"], True)
        self.assertEqual(answer["reply"]["tradeSeq"], trade)
        yield consumer.wait_for(lambda posts: len([p for p in posts if p.path == "/13"]) >= 4)
        code, answer = yield rest(proxy, "POST", "/proxy/36?wait=5", {"id": pile.pile_id, "gunId": "01"})
        self.assertEqual((code, answer["reply"]["result"]), (200, True), answer)
        yield consumer.wait_for(lambda posts: any(p.path == "/3b" for p in posts))
        for _ in range(100):
            if not pile.records:
                break
            yield settle(0.02)
        self.assertEqual(pile.records, {})
        self.assertEqual(pile.stats.events["records_confirmed"], 1)
        (record,) = consumer.of("3b")
        self.assertEqual(record.body["tradeSeq"], trade)
        self.assertEqual(record.body["startType"], 1)
        realtime = [p.body for p in consumer.of("13")]
        self.assertIn(3, [r["status"] for r in realtime])
        self.assertEqual(realtime[-1]["status"], 2)
        paths = [p.path for p in consumer.posts]
        self.assertLess(paths.index("/33"), paths.index("/35"))
        self.assertLess(paths.index("/35"), paths.index("/3b"))

    @inlineCallbacks
    def test_answers_every_platform_command(self) -> None:
        proxy = start_proxy(self, auto_verification=True, auto_billing_model_verify=True)
        fleet = self.fleet(proxy, pile=PileSettings(update_delay=0.05, reboot_delay=0.1, reconnect_base=0.05))
        yield fleet.start()
        pid = fleet.piles[0].pile_id
        model = {
            "id": pid,
            "billingModelCode": "0100",
            "sharpUnitPrice": 1,
            "sharpServiceFee": 1,
            "peakUnitPrice": 1,
            "peakServiceFee": 1,
            "flatUnitPrice": 1,
            "flatServiceFee": 1,
            "valleyUnitPrice": 1,
            "valleyServiceFee": 1,
            "rateList": [2] * 48,
        }
        commands: list[tuple[str, dict[str, Any], str, Any]] = [
            ("12", {"id": pid, "gunId": "01"}, "status", 2),
            ("42", {"id": pid, "gunId": "01", "physicalCard": "AB", "balance": 5}, "result", 0),
            ("44", {"id": pid, "cards": [{"logicCard": "1", "physicalCard": "AB"}]}, "result", 1),
            ("48", {"id": pid, "cards": ["AB", "CD"]}, "cards", None),
            ("46", {"id": pid, "cards": ["AB"]}, "cards", None),
            ("52", {"id": pid, "allowWork": 0, "maxOutputPower": 80}, "result", 1),
            ("56", {"id": pid, "time": 1763950000000}, "time", 1763950000000),
            ("58", model, "result", 1),
            ("62", {"id": pid, "gunId": "01", "action": 85}, "result", 1),
            ("94", {"id": pid, "pileType": 1, "pilePower": 60, "serverAddress": "127.0.0.1", "serverPort": 21,
                    "username": "u", "password": "p", "filePath": "/fw.bin", "control": 1,
                    "downloadTimeout": 5}, "status", 0),
            ("a4", {"tradeSeq": pid + "01" + "251124093000" + "0002", "id": pid, "gunId": "01",
                    "logicCard": "1", "physicalCard": "AB", "balance": 1,
                    "parallelSeq": "251124093000"}, "result", True),
            ("92", {"id": pid, "control": 1}, "result", 1),
        ]  # fmt: skip
        for ft, body, key, value in commands:
            code, answer = yield rest(proxy, "POST", f"/proxy/{ft}?wait=5", body)
            self.assertEqual(code, 200, (ft, answer))
            if value is not None:
                self.assertEqual(answer["reply"][key], value, ft)
        # 0x92 control 1: the pile reboots and logs in again.
        for _ in range(200):
            if fleet.piles[0].logins >= 2:
                break
            yield settle(0.02)
        self.assertEqual(fleet.piles[0].logins, 2)
        self.assertEqual(fleet.stats.errors, {})

    @inlineCallbacks
    def test_reconnects_and_logs_in_again(self) -> None:
        proxy = start_proxy(self, auto_verification=True, auto_billing_model_verify=True)
        fleet = self.fleet(proxy, piles=3, pile=PileSettings(reconnect_base=0.05))
        yield fleet.start()
        for proto in list(proxy.piles.connections):
            proto.close("closed", abort=True)
        for _ in range(200):
            if all(p.logins == 2 and p.ready for p in fleet.piles):
                break
            yield settle(0.02)
        self.assertEqual([p.logins for p in fleet.piles], [2, 2, 2])
        self.assertEqual(len(proxy.piles.registry), 3)
        self.assertEqual(fleet.stats.errors["disconnected"], 3)
        took = yield fleet.storm(1.0, reconnect_delay=0.0)
        self.assertLess(took, 10)
        self.assertEqual([p.logins for p in fleet.piles], [3, 3, 3])

    @inlineCallbacks
    def test_load_smoke_no_lost_replies(self) -> None:
        """200 piles, half charging, fast heartbeats, with faults: every request gets its reply."""
        proxy = start_proxy(self, auto_verification=True, auto_billing_model_verify=True)
        fleet = self.fleet(
            proxy,
            piles=200,
            ramp_rate=1000,  # the proxy listens with a backlog of 50: no 200 SYNs at once
            charging_share=0.5,
            crc="mixed",
            pile=PileSettings(heartbeat_interval=0.5, charging_interval=0.5, reply_timeout=5),
            faults=Faults(split=0.2, bad_crc=0.05, garbage=0.05),
        )
        yield fleet.start()
        yield settle(2.0)
        yield fleet.stop(drain=5.0)
        stats = fleet.stats
        self.assertEqual(stats.events["logins"], 200)
        self.assertGreater(stats.sent["03"], 400)
        self.assertGreater(stats.sent["13"], 100)
        self.assertEqual(stats.received["04"], stats.sent["03"])
        self.assertEqual(stats.received["02"], 200)
        self.assertEqual(stats.lost_total, 0, stats.snapshot())
        self.assertEqual(dict(stats.outstanding), {})
        self.assertEqual(dict(stats.errors), {})
        self.assertGreater(stats.events["injected_bad_crc"], 0)


class Ending(TestCase):
    """How a simulator run ends: a clean close at its end, a summary when interrupted."""

    timeout = 60

    @inlineCallbacks
    def test_normal_end_closes_cleanly(self) -> None:
        """At the end of a run every pile goes offline at the server with reason ``closed``."""
        consumer, url = start_consumer(self)
        proxy = start_proxy(self, servers=url, auto_verification=True, auto_billing_model_verify=True)
        fleet = Fleet(FleetSettings(port=proxy.tcp_port, piles=3, id_base=32010200000001), reactor)
        yield fleet.start()
        yield fleet.stop(drain=0.5)
        yield consumer.wait_for(lambda posts: len([p for p in posts if p.path == "/offline"]) == 3)
        self.assertEqual([p.body["reason"] for p in consumer.of("offline")], ["closed"] * 3)

    @inlineCallbacks
    def interrupt(self, signal: str) -> Any:
        """Run ``ykcproxy-sim`` against the proxy, stop it with ``signal``; (stdout, summary, offline)."""
        import json
        import os
        import sys

        from twisted.internet.protocol import ProcessProtocol

        consumer, url = start_consumer(self)
        proxy = start_proxy(self, servers=url, auto_verification=True, auto_billing_model_verify=True)
        json_out = self.mktemp()

        class Sim(ProcessProtocol):
            def __init__(self) -> None:
                self.out = b""
                self.err = b""
                self.ended: Deferred[Any] = Deferred()

            def outReceived(self, data: bytes) -> None:
                self.out += data

            def errReceived(self, data: bytes) -> None:
                self.err += data

            def processEnded(self, reason: Failure) -> None:
                self.ended.callback(reason.value)

        sim = Sim()
        args = [sys.executable, "-m", "ykcproxy.sim.cli", "--port", str(proxy.tcp_port), "--piles", "3"]
        args += ["--ramp", "0", "--warmup", "0", "--duration", "120", "--json-out", json_out]
        transport = reactor.spawnProcess(sim, sys.executable, args, env=os.environ.copy())
        for _ in range(1000):
            if len(proxy.piles.registry) == 3 or sim.ended.called:
                break
            yield settle(0.02)
        self.assertEqual(len(proxy.piles.registry), 3, sim.err.decode())
        transport.signalProcess(signal)
        ended = yield sim.ended
        self.assertEqual(getattr(ended, "exitCode", None), 0, sim.err.decode())
        with open(json_out) as f:
            summary = json.load(f)
        yield consumer.wait_for(lambda posts: len([p for p in posts if p.path == "/offline"]) == 3)
        return sim.out.decode(), summary, [p.body["reason"] for p in consumer.of("offline")]

    @inlineCallbacks
    def test_sigterm_prints_and_writes_the_summary(self) -> None:
        out, summary, offline = yield self.interrupt("TERM")
        self.assertIn("ykcproxy-sim: 3 piles", out)
        self.assertIn("frames sent:", out)
        self.assertTrue(summary["run"]["interrupted"])
        self.assertEqual(summary["run"]["loggedInOnce"], 3)
        self.assertEqual(summary["received"]["02"], 3)
        self.assertEqual(offline, ["closed"] * 3)

    @inlineCallbacks
    def test_ctrl_c_prints_and_writes_the_summary(self) -> None:
        out, summary, offline = yield self.interrupt("INT")
        self.assertIn("ykcproxy-sim: 3 piles", out)
        self.assertTrue(summary["run"]["interrupted"])
        self.assertEqual(offline, ["closed"] * 3)
