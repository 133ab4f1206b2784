"""The pile Protocol and its policy on StringTransport and task.Clock (no network)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from ykcproxy.config import CrcMode
from ykcproxy.forward.base import IPublisher, Message
from ykcproxy.forward.delivery import Delivery
from ykcproxy.options import default_config
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.wire.codec import Codec, encode_frame
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.examples import example
from ykcproxy.wire.framer import Framer, RawFrame

PILE = "32010200000001"
OTHER = "32010200000002"
CODEC = Codec()


@implementer(IPublisher)
class Recorder:
    """A publisher whose deliveries the test completes by hand (``hold``) or at once."""

    name = "recorder"

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.messages: list[Message] = []
        self.pending: list[Deferred[None]] = []

    def publish(self, message: Message) -> Deferred[None]:
        self.messages.append(message)
        if self.hold:
            d: Deferred[None] = Deferred()
            self.pending.append(d)
            return d
        return succeed(None)

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def health(self) -> dict[str, Any]:
        return {"ok": True}

    def kinds(self) -> list[str]:
        return [m.ft for m in self.messages]

    def bodies(self, ft: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.messages if m.ft == ft]


class Rig:
    """A factory with a clock and a recording publisher; connections on StringTransports."""

    def __init__(self, hold: bool = False, **settings: Any) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.publisher = Recorder(hold)
        self.config = default_config(**settings)
        self.delivery = Delivery(self.publisher, self.clock)
        self.factory = PileServerFactory(self.config, self.clock, self.delivery)

    def connect(self, port: int = 5000) -> tuple[Any, StringTransport]:
        proto = self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", port))
        proto.makeConnection(transport)
        return proto, transport

    @staticmethod
    def send(
        proto: Any, code: int, fields: dict[str, Any], seq: int = 0, order: CrcOrder = CrcOrder.LOW_FIRST
    ) -> None:
        body = CODEC.encode_body(code, CODEC.check(code, fields))
        proto.dataReceived(encode_frame(code, seq, body, order))

    @staticmethod
    def replies(transport: StringTransport) -> list[RawFrame]:
        data = transport.value()
        transport.clear()
        return [f for f in Framer().feed(data) if isinstance(f, RawFrame)]


class SilenceTimeout(TestCase):
    def test_three_missed_heartbeats_disconnect(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.clock.advance(25)
        rig.send(proto, 0x03, example(0x03, PILE))
        rig.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        rig.clock.advance(1.5)
        self.assertTrue(transport.disconnecting or transport.disconnected)
        proto.connectionLost()
        self.assertEqual(rig.publisher.bodies("offline")[0]["reason"], "timeout")
        self.assertEqual(len(rig.factory.registry), 0)
        self.assertEqual(rig.clock.getDelayedCalls(), [])

    def test_configurable(self):
        rig = Rig(heartbeat_interval=2, heartbeat_misses=2)
        proto, transport = rig.connect()
        rig.clock.advance(3.9)
        self.assertFalse(transport.disconnecting)
        rig.clock.advance(0.2)
        self.assertTrue(transport.disconnecting or transport.disconnected)

    def test_suspended_while_not_read(self):
        rig = Rig()
        proto, transport = rig.connect()
        proto.suspend_silence(True)
        rig.clock.advance(500)
        self.assertFalse(transport.disconnecting)
        proto.suspend_silence(False)
        rig.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        rig.clock.advance(2)
        self.assertTrue(transport.disconnecting or transport.disconnected)


class SilentPileOnSharedLink(TestCase):
    """A concentrator link: each of its piles times out on its own silence."""

    def test_silent_pile_goes_offline_while_the_link_stays(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.send(proto, 0x01, example(0x01, OTHER))
        for _ in range(4):  # only PILE heartbeats: 40 s
            rig.clock.advance(10)
            rig.send(proto, 0x03, example(0x03, PILE))
        self.assertFalse(transport.disconnecting)
        self.assertIsNotNone(rig.factory.registry.get(PILE))
        self.assertIsNone(rig.factory.registry.get(OTHER))
        self.assertNotIn(OTHER, proto.sessions)
        (offline,) = rig.publisher.bodies("offline")
        self.assertEqual((offline["id"], offline["reason"]), (OTHER, "timeout"))

    def test_expires_on_time(self):
        rig = Rig(auto_verification=True, heartbeat_interval=10, heartbeat_misses=3)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.clock.advance(5)
        rig.send(proto, 0x01, example(0x01, OTHER))  # OTHER last heard at t=5
        for _ in range(29):  # PILE talks every second
            rig.clock.advance(1)
            rig.send(proto, 0x03, example(0x03, PILE))
        self.assertIsNotNone(rig.factory.registry.get(OTHER))  # t=34: heard 29 s ago
        rig.clock.advance(0.9)
        self.assertIsNotNone(rig.factory.registry.get(OTHER))
        rig.clock.advance(0.1)  # t=35: 30 s, as a lone pile's link would be closed
        self.assertIsNone(rig.factory.registry.get(OTHER))
        self.assertIsNotNone(rig.factory.registry.get(PILE))
        self.assertFalse(transport.disconnecting)

    def test_not_while_reading_is_paused(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.send(proto, 0x01, example(0x01, OTHER))
        proto.pause(True)
        rig.clock.advance(100)
        proto.pause(False)
        for _ in range(2):  # 20 s after reading resumed: within OTHER's 30 s
            rig.clock.advance(10)
            rig.send(proto, 0x03, example(0x03, PILE))
        self.assertIsNotNone(rig.factory.registry.get(OTHER))
        self.assertEqual(rig.publisher.bodies("offline"), [])

    def test_a_lone_pile_is_the_link(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        self.assertIsNotNone(rig.factory.registry.get(PILE))


class CrcOrderFollowing(TestCase):
    def test_answers_in_the_piles_order(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE), seq=0x0102, order=CrcOrder.HIGH_FIRST)
        (reply,) = rig.replies(transport)
        self.assertEqual(reply.code, 0x02)
        self.assertEqual(reply.seq, 0x0102)
        self.assertIs(reply.crc_order, CrcOrder.HIGH_FIRST)
        rig.send(proto, 0x03, example(0x03, PILE), seq=7, order=CrcOrder.LOW_FIRST)
        (reply,) = rig.replies(transport)
        self.assertEqual((reply.code, reply.seq), (0x04, 7))
        self.assertIs(reply.crc_order, CrcOrder.LOW_FIRST)

    def test_forced_order(self):
        rig = Rig(auto_verification=True, crc_mode=CrcMode.HIGH_FIRST)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE), order=CrcOrder.LOW_FIRST)
        self.assertEqual(rig.replies(transport), [])
        rig.send(proto, 0x01, example(0x01, PILE), order=CrcOrder.HIGH_FIRST)
        (reply,) = rig.replies(transport)
        self.assertIs(reply.crc_order, CrcOrder.HIGH_FIRST)


class Answers(TestCase):
    def test_heartbeat_answers_per_gun_in_the_piles_order(self):
        """Each gun's cached 0x04: the frame encode_frame writes, seen by observers of 0x04, counted."""
        rig = Rig(auto_verification=True)
        seen: list[tuple[str, int, dict[str, Any], bytes]] = []

        class Watcher:
            up_types = frozenset()
            down_types = frozenset({0x04})

            def observe(
                self, pile_id: str, direction: str, ft: int, fields: dict[str, Any], raw: bytes
            ) -> None:
                seen.append((direction, ft, dict(fields), raw))

        rig.factory = PileServerFactory(rig.config, rig.clock, rig.delivery, observers=[Watcher()])
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.replies(transport)
        for seq, gun, order in (
            (7, "01", CrcOrder.HIGH_FIRST),
            (8, "02", CrcOrder.HIGH_FIRST),
            (0xFFFF, "01", CrcOrder.LOW_FIRST),
        ):
            rig.send(proto, 0x03, {**example(0x03, PILE), "gun": gun}, seq=seq, order=order)
            (reply,) = rig.replies(transport)
            fields = {"id": PILE, "gun": gun, "response": 0}
            expected = encode_frame(0x04, seq, CODEC.encode_body(0x04, fields), order)
            self.assertEqual(reply.raw, expected)
            self.assertEqual(seen[-1], ("down", 0x04, fields, expected))
        self.assertEqual(len(seen), 3)
        self.assertEqual(rig.factory.metrics.frames_out[0x04], 3)
        self.assertIn(b'ykc_frames_out_total{ft="04"} 3.0', rig.factory.metrics.render())

    def test_heartbeat_answer_off(self):
        rig = Rig(auto_verification=True, auto_heartbeat_response=False)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.replies(transport)
        rig.send(proto, 0x03, example(0x03, PILE))
        self.assertEqual(rig.replies(transport), [])
        self.assertIn("03", rig.publisher.kinds())

    def test_transaction_confirmed_only_after_delivery(self):
        rig = Rig(hold=True, auto_verification=True, auto_transaction_record_confirm=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.replies(transport)
        rig.publisher.pending.pop(0).callback(None)  # 01
        rig.publisher.pending.pop(0).callback(None)  # online
        rig.send(proto, 0x3B, example(0x3B, PILE), seq=0x33)
        self.assertEqual(rig.publisher.kinds(), ["01", "online", "3b"])
        self.assertEqual(rig.replies(transport), [])
        rig.publisher.pending.pop(0).callback(None)
        (confirm,) = rig.replies(transport)
        self.assertEqual((confirm.code, confirm.seq), (0x40, 0x33))
        self.assertEqual(CODEC.decode_body(0x40, confirm.body)["tradeSeq"], example(0x3B, PILE)["tradeSeq"])

    def test_resent_record_keeps_message_id(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.send(proto, 0x3B, example(0x3B, PILE), seq=1)
        rig.send(proto, 0x3B, example(0x3B, PILE), seq=2)
        ids = [m.message_id for m in rig.publisher.messages if m.ft == "3b"]
        self.assertEqual(len(ids), 2)
        self.assertEqual(ids[0], ids[1])
        others = [m.message_id for m in rig.publisher.messages if m.ft != "3b"]
        self.assertEqual(len(set(others)), len(others))

    def test_record_carries_its_trade_seq(self):
        """The outbox files a 0x3B by ``Message.trade_seq``, not by parsing its message id."""
        rig = Rig(auto_verification=True)
        proto, _ = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.send(proto, 0x3B, example(0x3B, PILE), seq=1)
        rig.send(proto, 0x03, example(0x03, PILE))
        trade = example(0x3B, PILE)["tradeSeq"]
        self.assertEqual({m.ft: m.trade_seq for m in rig.publisher.messages}["3b"], trade)
        self.assertEqual([m.trade_seq for m in rig.publisher.messages if m.ft != "3b"], [None] * 3)

    def test_time_sync_after_login_and_daily(self):
        rig = Rig(auto_verification=True, auto_time_sync=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        codes = [f.code for f in rig.replies(transport)]
        self.assertEqual(codes, [0x02, 0x56])
        proto.suspend_silence(True)  # keep the link up for a day without heartbeats
        rig.clock.advance(86400)
        (sync,) = rig.replies(transport)
        self.assertEqual(sync.code, 0x56)
        self.assertEqual(CODEC.decode_body(0x56, sync.body)["time"], int(rig.clock.seconds()) * 1000)


class DispatchTable(TestCase):
    def test_a_new_behaviour_is_one_table_entry(self):
        rig = Rig(auto_verification=True)
        seen: list[str] = []

        def card(policy: Any, session: Any, frame: RawFrame, fields: dict[str, Any]) -> bool:
            seen.append(fields["physicalCard"])
            return False  # handled here: not forwarded

        rig.factory._handlers[0x41] = card
        proto, _ = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.send(proto, 0x41, example(0x41, PILE))
        self.assertEqual(seen, [example(0x41, PILE)["physicalCard"]])
        self.assertNotIn("41", rig.publisher.kinds())


class Sessions(TestCase):
    def test_concentrator_carries_two_piles(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.send(proto, 0x01, example(0x01, OTHER))
        self.assertEqual(sorted(s.pile_id for s in rig.factory.registry), [PILE, OTHER])
        self.assertIs(rig.factory.registry.get(PILE).connection, rig.factory.registry.get(OTHER).connection)
        proto.connectionLost()
        self.assertEqual(len(rig.publisher.bodies("offline")), 2)

    def test_frames_before_login_dropped(self):
        rig = Rig()
        proto, transport = rig.connect()
        rig.send(proto, 0x03, example(0x03, PILE))
        self.assertEqual(rig.publisher.messages, [])
        self.assertEqual(rig.replies(transport), [])
        self.assertIn('kind="not_logged_in"', rig.factory.metrics.render().decode())

    def test_seq_counter_per_session(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.send(proto, 0x01, example(0x01, OTHER))
        a, b = rig.factory.registry.get(PILE), rig.factory.registry.get(OTHER)
        self.assertEqual([a.next_seq(), a.next_seq(), b.next_seq()], [0, 1, 0])

    def test_shutdown_reason(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        rig.factory.close_all()
        self.assertEqual(rig.publisher.bodies("offline")[0]["reason"], "shutdown")
        self.assertTrue(transport.disconnecting)

    def test_moved_to_another_instance_forwards_no_offline(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        self.assertTrue(rig.factory.registry.move_away(PILE))
        self.assertIsNone(rig.factory.registry.get(PILE))
        self.assertTrue(transport.disconnecting)
        proto.connectionLost()
        self.assertEqual(rig.publisher.bodies("offline"), [])
        self.assertEqual(len(rig.publisher.bodies("online")), 1)
        self.assertFalse(rig.factory.registry.move_away(PILE))

    def test_encrypted_frame_forwarded_undecoded(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        proto.dataReceived(encode_frame(0x13, 5, b"\x01\x02\x03", encrypted=True))
        (body,) = rig.publisher.bodies("13")
        self.assertEqual(body["body"], "010203")
        self.assertTrue(body["header"]["encrypted"])
        self.assertEqual(body["id"], PILE)


class StalledFalseStart(TestCase):
    def test_false_start_with_large_length_is_given_up(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        login = CODEC.encode_body(0x01, CODEC.check(0x01, example(0x01, PILE)))
        proto.dataReceived(b"\x68\xff" + encode_frame(0x01, 3, login))
        self.assertEqual(rig.replies(transport), [])  # waiting for 259 bytes that never come
        rig.clock.advance(3)
        (reply,) = rig.replies(transport)
        self.assertEqual((reply.code, reply.seq), (0x02, 3))
        self.assertIn('kind="stall"', rig.factory.metrics.render().decode())
        self.assertEqual(proto._framer.pending, 0)


class ConfirmAfterReplacement(TestCase):
    def test_no_0x40_on_a_link_that_did_not_send_the_record(self):
        rig = Rig(hold=True, auto_verification=True, auto_transaction_record_confirm=True)
        old, old_transport = rig.connect(5000)
        rig.send(old, 0x01, example(0x01, PILE))
        rig.send(old, 0x3B, example(0x3B, PILE), seq=0x21)
        new, new_transport = rig.connect(5001)
        rig.send(new, 0x01, example(0x01, PILE))  # replaces the old link
        rig.replies(new_transport)
        while rig.publisher.pending:  # 01, online, 3b, offline, 01, online
            rig.publisher.pending.pop(0).callback(None)
        self.assertEqual([f.code for f in rig.replies(new_transport)], [])
        rig.send(new, 0x3B, example(0x3B, PILE), seq=0x05)  # the pile sends it again
        while rig.publisher.pending:
            rig.publisher.pending.pop(0).callback(None)
        (confirm,) = rig.replies(new_transport)
        self.assertEqual((confirm.code, confirm.seq), (0x40, 0x05))
