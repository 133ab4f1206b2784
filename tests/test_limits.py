"""Pile port limits, pending logins and the allow-list, on StringTransport and task.Clock."""

from __future__ import annotations

import os
import random

from twisted.internet.address import IPv4Address
from twisted.logger import capturedLogs
from twisted.trial.unittest import TestCase

from tests.test_pile_unit import CODEC, OTHER, PILE, Rig
from ykcproxy.pile.allowlist import AllowList, AllowListError, parse_allow_list
from ykcproxy.pile.limits import ErrorBudget, FrameRate
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.wire.codec import encode_frame
from ykcproxy.wire.examples import example


def metric(rig: Rig, name: str, label: str, value: str) -> float:
    """The value of one labelled sample of the rig's metrics (0 when absent)."""
    prefix = f'{name}{{{label}="{value}"}} '
    for line in rig.factory.metrics.render().decode().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def limit(rig: Rig, name: str) -> float:
    return metric(rig, "ykc_pile_limit_actions_total", "limit", name)


def corrupted(seq: int = 1) -> bytes:
    """A heartbeat of PILE with one bit flipped: one crc error."""
    body = CODEC.encode_body(0x03, CODEC.check(0x03, example(0x03, PILE)))
    frame = bytearray(encode_frame(0x03, seq, body))
    frame[6] ^= 0x10
    return bytes(frame)


def logged_in(rig: Rig, pile: str = PILE, port: int = 5000):
    proto, transport = rig.connect(port)
    rig.send(proto, 0x01, example(0x01, pile))
    transport.clear()
    return proto, transport


class ConnectionLimits(TestCase):
    def build(self, rig: Rig, host: str, port: int):
        return rig.factory.buildProtocol(IPv4Address("TCP", host, port))

    def test_total(self):
        rig = Rig(max_connections=2)
        rig.connect(5000)
        rig.connect(5001)
        self.assertIsNone(self.build(rig, "10.0.0.9", 1))
        self.assertEqual(limit(rig, "max-connections"), 1)
        rig.factory.close_all()
        for proto in list(rig.factory.connections):
            proto.connectionLost()
        self.assertIsNotNone(self.build(rig, "10.0.0.9", 1))

    def test_per_address_off_by_default(self):
        rig = Rig()
        for port in range(5000, 5010):
            rig.connect(port)  # all from 10.0.0.1
        self.assertEqual(len(rig.factory.connections), 10)

    def test_per_address(self):
        rig = Rig(max_connections_per_address=2)
        first, _ = rig.connect(5000)
        rig.connect(5001)
        with capturedLogs() as events:
            self.assertIsNone(self.build(rig, "10.0.0.1", 5002))
        self.assertEqual(len([e for e in events if "refused a pile connection" in e["log_format"]]), 1)
        self.assertIsNotNone(self.build(rig, "10.0.0.2", 5002))
        self.assertEqual(limit(rig, "max-connections-per-address"), 1)
        first.connectionLost()
        self.assertIsNotNone(self.build(rig, "10.0.0.1", 5003))


class LoginTimeout(TestCase):
    def test_valid_frames_without_login_are_closed(self):
        rig = Rig()
        proto, transport = rig.connect()
        for _ in range(6):  # heartbeats keep the silence timer quiet, not the login timer
            rig.clock.advance(5)
            rig.send(proto, 0x03, example(0x03, PILE))
        self.assertTrue(transport.disconnecting or transport.disconnected)
        self.assertEqual(rig.replies(transport), [], "only a login is served before one is accepted")
        proto.connectionLost()
        self.assertEqual(proto.close_reason, "login-timeout")
        self.assertEqual(limit(rig, "login-timeout"), 1)
        self.assertEqual(metric(rig, "ykc_pile_connections_closed_total", "reason", "login-timeout"), 1)
        self.assertEqual(metric(rig, "ykc_frame_errors_total", "kind", "not_logged_in"), 6)
        self.assertEqual(rig.clock.getDelayedCalls(), [])

    def test_pending_login_times_out(self):
        rig = Rig(login_timeout=10)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))  # nobody answers it
        rig.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        rig.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        proto.connectionLost()
        self.assertEqual(rig.publisher.kinds(), ["01"], "no online, no offline")

    def test_accepted_login_stops_it(self):
        rig = Rig(auto_verification=True)
        proto, transport = logged_in(rig)
        for _ in range(10):
            rig.clock.advance(9)
            rig.send(proto, 0x03, example(0x03, PILE))
        self.assertFalse(transport.disconnecting)

    def test_off(self):
        rig = Rig(login_timeout=0)
        proto, transport = rig.connect()
        proto.suspend_silence(True)
        rig.clock.advance(1000)
        self.assertFalse(transport.disconnecting)


class PendingLogins(TestCase):
    def test_listed_until_answered(self):
        rig = Rig()
        proto, _ = rig.connect(5000)
        rig.clock.advance(2)
        rig.send(proto, 0x01, example(0x01, PILE))
        registry = rig.factory.registry
        since = int(rig.clock.seconds() * 1000)
        self.assertEqual(registry.pending_logins(), [{"id": PILE, "remote": "10.0.0.1:5000", "since": since}])
        self.assertIn("ykc_pending_logins 1.0", rig.factory.metrics.render().decode())
        rig.factory.answer_login(registry.find(PILE), True)
        self.assertEqual(registry.pending_logins(), [])

    def test_gone_when_the_link_closes(self):
        rig = Rig()
        proto, _ = rig.connect(5000)
        rig.send(proto, 0x01, example(0x01, PILE))
        proto.connectionLost()
        self.assertEqual(rig.factory.registry.pending_logins(), [])


class FrameRateLimit(TestCase):
    def test_bucket(self):
        bucket = FrameRate(2.0, 0.0)
        self.assertEqual([bucket.allow(0.0, 1) for _ in range(3)], [True, True, False])
        self.assertTrue(bucket.allow(0.5, 1))
        self.assertFalse(bucket.allow(0.5, 1))
        self.assertEqual([bucket.allow(10.0, 2) for _ in range(5)], [True] * 4 + [False])

    def test_over_rate_dropped_and_counted(self):
        rig = Rig(auto_verification=True, max_frame_rate=5, error_budget=0)
        proto, transport = logged_in(rig)
        rig.clock.advance(1)
        for seq in range(20):
            rig.send(proto, 0x03, example(0x03, PILE), seq=seq)
        self.assertEqual(len(rig.replies(transport)), 5)
        self.assertEqual(limit(rig, "frame-rate"), 15)
        rig.clock.advance(1)
        rig.send(proto, 0x03, example(0x03, PILE))
        self.assertEqual(len(rig.replies(transport)), 1)
        self.assertFalse(transport.disconnecting)

    def test_scaled_by_piles_on_the_link(self):
        rig = Rig(auto_verification=True, max_frame_rate=5, error_budget=0)
        proto, transport = logged_in(rig)
        rig.send(proto, 0x01, example(0x01, OTHER))
        rig.clock.advance(1)
        transport.clear()
        for seq in range(20):
            rig.send(proto, 0x03, example(0x03, PILE if seq % 2 else OTHER), seq=seq)
        self.assertEqual(len(rig.replies(transport)), 10)


class ErrorBudgetLimit(TestCase):
    def test_leaky_bucket(self):
        budget = ErrorBudget(3, 0.0)
        self.assertEqual([budget.spend(0.0) for _ in range(4)], [False, False, False, True])
        slow = ErrorBudget(3, 0.0)
        self.assertFalse(any(slow.spend(t * 20.0) for t in range(30)))  # 3 a minute, forever

    def test_too_many_bad_frames_close_with_abuse(self):
        rig = Rig(auto_verification=True, error_budget=3)
        proto, transport = logged_in(rig)
        with capturedLogs() as events:
            proto.dataReceived(corrupted() * 3)
            self.assertFalse(transport.disconnecting)
            proto.dataReceived(corrupted() + corrupted())
        self.assertTrue(transport.disconnected, "aborted")
        self.assertEqual(metric(rig, "ykc_frame_errors_total", "kind", "crc"), 4, "counted until closed")
        self.assertEqual(len([e for e in events if "bad frames in a minute" in e["log_format"]]), 1)
        proto.connectionLost()
        self.assertEqual(rig.publisher.bodies("offline")[0]["reason"], "abuse")
        self.assertEqual(limit(rig, "error-budget"), 1)

    def test_budget_refills(self):
        rig = Rig(auto_verification=True, error_budget=3)
        proto, transport = logged_in(rig)
        for _ in range(10):
            proto.dataReceived(corrupted() * 3)
            for _ in range(3):
                rig.clock.advance(20)
                rig.send(proto, 0x03, example(0x03, PILE))
        self.assertFalse(transport.disconnecting)


class OutputBuffer(TestCase):
    def test_slow_reader_closed(self):
        rig = Rig(auto_verification=True, max_output_buffer=65536 + 100)
        proto, transport = logged_in(rig)
        transport.producer.pauseProducing()  # what a full write buffer makes the transport do
        for seq in range(5):
            rig.send(proto, 0x03, example(0x03, PILE), seq=seq)
        self.assertFalse(transport.disconnecting)
        for seq in range(10):
            rig.send(proto, 0x03, example(0x03, PILE), seq=seq)
        self.assertTrue(transport.disconnected)
        self.assertIsNone(transport.producer, "unregistered, so that closing does not wait for it")
        proto.connectionLost()
        self.assertEqual(rig.publisher.bodies("offline")[0]["reason"], "slow-reader")
        self.assertEqual(limit(rig, "output-buffer"), 1)

    def test_a_buffer_that_drains_is_fine(self):
        rig = Rig(auto_verification=True, max_output_buffer=65536 + 100)
        proto, transport = logged_in(rig)
        for _ in range(20):
            transport.producer.pauseProducing()
            for seq in range(5):
                rig.send(proto, 0x03, example(0x03, PILE), seq=seq)
            transport.producer.resumeProducing()
        self.assertFalse(transport.disconnecting)


class BadInputLogging(TestCase):
    def test_first_few_then_summaries(self):
        rig = Rig(auto_verification=True, error_budget=0)
        proto, _ = logged_in(rig)
        with capturedLogs() as events:
            for i in range(50):
                proto.dataReceived(corrupted(i))
            rig.clock.advance(10)
            proto.dataReceived(b"\x00" * 4)  # garbage
            proto.connectionLost()
        dropped = [e for e in events if e["log_format"].startswith("dropped")]
        summaries = [e for e in events if "not logged one by one" in e["log_format"]]
        self.assertEqual(len(dropped), 5)
        self.assertTrue(all("hex" in e for e in dropped))
        self.assertEqual([s["counts"] for s in summaries], [{"crc": 45}, {"garbage": 1}])
        self.assertEqual(metric(rig, "ykc_frame_errors_total", "kind", "crc"), 50)
        self.assertEqual(rig.clock.getDelayedCalls(), [])

    def test_hostile_link_does_not_cost_an_honest_pile(self):
        rig = Rig(auto_verification=True)
        honest, honest_transport = logged_in(rig, port=5000)
        hostile, hostile_transport = rig.connect(6000)
        noise = random.Random(7)
        with capturedLogs() as events:
            for second in range(20):
                hostile.dataReceived(bytes(noise.getrandbits(8) for _ in range(2000)))
                rig.send(honest, 0x03, example(0x03, PILE), seq=second)
                rig.clock.advance(1)
        self.assertEqual(len(rig.replies(honest_transport)), 20)
        self.assertFalse(honest_transport.disconnecting)
        self.assertTrue(hostile_transport.disconnected)
        self.assertLess(len(events), 30)


class AllowListFile(TestCase):
    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_parse(self):
        ids = parse_allow_list(f"# piles of site A\n{PILE}\n\n  {OTHER}  # the new one\n")
        self.assertEqual(ids, {PILE, OTHER})
        with self.assertRaises(AllowListError):
            parse_allow_list("123\n")

    def test_missing_file_at_start_is_an_error(self):
        with self.assertRaises(AllowListError):
            AllowList.load(os.path.join(self.mktemp(), "none"))

    def test_refused_login_answered_failed_and_closed(self):
        rig = Rig(auto_verification=True, allow_list=self.write(f"{PILE}\n"))
        with capturedLogs() as events:
            for port in (5000, 5001):
                proto, transport = rig.connect(port)
                rig.send(proto, 0x01, example(0x01, OTHER), seq=9)
                (reply,) = rig.replies(transport)
                self.assertEqual((reply.code, reply.seq), (0x02, 9))
                self.assertFalse(CODEC.decode_body(0x02, reply.body)["result"])
                self.assertTrue(transport.disconnecting)
                proto.connectionLost()
        self.assertEqual(len([e for e in events if "allow-list" in e["log_format"]]), 1, "logged once")
        self.assertEqual(limit(rig, "allow-list"), 2)
        self.assertNotIn("01", rig.publisher.kinds())
        self.assertIsNone(rig.factory.registry.get(OTHER))
        proto, transport = rig.connect(5002)
        rig.send(proto, 0x01, example(0x01, PILE))
        self.assertIsNotNone(rig.factory.registry.get(PILE))

    def test_reload_keeps_everyone_allowed(self):
        path = self.write(f"{PILE}\n")
        rig = Rig(auto_verification=True, allow_list=path)
        _, pile_transport = logged_in(rig, PILE)
        with open(path, "w") as f:
            f.write("not a pile id\n")
        self.assertFalse(rig.factory.reload_allow_list(), "a bad edit keeps the list")
        self.assertIn(PILE, rig.factory.allow_list)
        with open(path, "w") as f:
            f.write(f"{OTHER}\n")
        self.assertTrue(rig.factory.reload_allow_list())
        self.assertFalse(pile_transport.disconnecting, "reloading drops nobody")
        logged_in(rig, OTHER, port=5001)
        self.assertIsNotNone(rig.factory.registry.get(OTHER))

    def test_no_list_allows_all(self):
        rig = Rig(auto_verification=True)
        self.assertIsNone(rig.factory.allow_list)
        self.assertFalse(rig.factory.reload_allow_list())
        logged_in(rig, OTHER)
        self.assertIsNotNone(rig.factory.registry.get(OTHER))

    def test_given_list_object(self):
        rig = Rig(auto_verification=True)
        factory = PileServerFactory(
            rig.config, rig.clock, rig.delivery, allow_list=AllowList("-", frozenset({OTHER}))
        )
        self.assertIn(OTHER, factory.allow_list)
