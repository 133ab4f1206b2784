"""Edge cases found in review: crash windows, backpressure, odd CRCs, bad options, stale refusals."""

from __future__ import annotations

import sqlite3

import attrs
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial.unittest import TestCase

from tests.support import reactor
from tests.test_pile_unit import CODEC, PILE, Recorder, Rig
from ykcproxy.forward.base import Message
from ykcproxy.forward.delivery import Delivery
from ykcproxy.forward.http import HttpPublisher
from ykcproxy.forward.outbox import SqliteOutbox
from ykcproxy.options import default_config
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.service import Options
from ykcproxy.wire.codec import encode_frame
from ykcproxy.wire.crc import CrcOrder, crc16
from ykcproxy.wire.examples import example

TRADE = "1" * 32


def _on_disk(path: str) -> tuple[int, int]:
    """(rows in outbox, rows in dead) as committed on disk: what a crash right now leaves."""
    db = sqlite3.connect(path)
    try:
        outbox = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        dead = db.execute("SELECT count(*) FROM dead").fetchone()[0]
        return outbox, dead
    finally:
        db.close()


class ReplayWindow(TestCase):
    """Replaying a dead letter re-inserts it before its row in `dead` is deleted."""

    @inlineCallbacks
    def test_replayed_dead_letter_stays_durable(self):
        outbox = SqliteOutbox(self.mktemp(), reactor)
        self.addCleanup(outbox.close)
        record = Message("3b", PILE, f"{PILE}-3b-{TRADE}", b"{}")
        key, committed = outbox.append(record, True)
        yield committed
        outbox.dead_letter(key, 9, "500")
        yield outbox.dead_letters()  # barrier: the move is committed
        self.assertEqual(_on_disk(outbox.path), (0, 1))
        # What POST /outbox/replay does: take, requeue (Delivery.submit appends), then delete.
        taken = yield outbox.take_dead(None, lambda m: outbox.append(m, False, replay=True))
        self.assertEqual(taken, [record])
        # A SIGKILL at any instant: the record (money) is in one table or both, never in neither.
        self.assertNotEqual(_on_disk(outbox.path), (0, 0))
        yield outbox.dead_letters()  # barrier
        self.assertEqual(_on_disk(outbox.path), (1, 0))


class StallWhilePaused(TestCase):
    """A partial frame waits through a backpressure pause: the stall timer is off while paused."""

    def test_partial_frame_survives_backpressure(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        body = CODEC.encode_body(0x3B, CODEC.check(0x3B, example(0x3B, PILE)))
        frame = encode_frame(0x3B, 0x21, body)
        proto.dataReceived(frame[:40])  # the rest is in the socket, not read yet
        rig.factory.pause_reading(True)  # outbox over its limit
        rig.clock.advance(10)  # the backlog takes a while to drain
        rig.factory.pause_reading(False)
        proto.dataReceived(frame[40:])
        self.assertIn("3b", rig.publisher.kinds())  # "nothing is dropped, a 0x3B least of all"
        self.assertNotIn('kind="stall"', rig.factory.metrics.render().decode())


class RaisingPublisher(Recorder):
    """publish() raises synchronously once (as treq does for an unparsable URL)."""

    def __init__(self) -> None:
        super().__init__()
        self.raise_next = True

    def publish(self, message: Message) -> Deferred[None]:
        if self.raise_next:
            self.raise_next = False
            raise ValueError("expected integer for port")
        return super().publish(message)


class SynchronousPublishError(TestCase):
    """A publish() that raises is a failed attempt: the pile is retried, its link goes on."""

    def test_pile_not_wedged(self):
        clock = Clock()
        publisher = RaisingPublisher()
        delivery = Delivery(publisher, clock)
        first = Message("03", PILE, "m1", b"{}")
        try:
            delivery.submit(first)
        except ValueError:
            pass  # (on the code as reviewed the error escapes into the caller: frame_received)
        delivery.submit(Message("03", PILE, "m2", b"{}"))
        clock.advance(120)
        self.assertEqual([m.message_id for m in publisher.messages], ["m1", "m2"])
        self.assertEqual((delivery.depth, delivery._in_flight), (0, 0))

    def test_bad_http_endpoint_does_not_break_logins(self):
        """With --servers localhost:80a every pile's login frame raises out of dataReceived."""
        clock = Clock()
        clock.advance(1_700_000_000)
        publisher = HttpPublisher(["localhost:80a"], reactor)
        delivery = Delivery(publisher, clock)
        factory = PileServerFactory(default_config(auto_verification=True, servers=("x",)), clock, delivery)
        rig = Rig.__new__(Rig)
        rig.clock, rig.factory = clock, factory
        proto, transport = Rig.connect(rig)
        try:
            Rig.send(proto, 0x01, example(0x01, PILE))
        except Exception as e:  # noqa: BLE001
            self.fail(f"login frame raised out of dataReceived: {e!r}")
        (reply,) = Rig.replies(transport)
        self.assertEqual(reply.code, 0x02)
        for call in clock.getDelayedCalls():
            call.cancel()


class OptionValidation(TestCase):
    """Invalid option values must be usage errors before anything binds."""

    def test_unparsable_http_endpoint(self):
        self.assertRaises(usage.UsageError, Options().parseOptions, ["--servers", "localhost:80a"])

    def test_same_port_for_both_listeners(self):
        self.assertRaises(
            usage.UsageError, Options().parseOptions, ["--tcpPort", "27600", "--httpPort", "27600"]
        )


def _symmetric_heartbeat() -> tuple[int, bytes]:
    """A seq whose heartbeat frame has a CRC with equal bytes (valid in both orders),
    while the 0x04 answer to it has a CRC whose bytes differ."""
    body = CODEC.encode_body(0x03, CODEC.check(0x03, example(0x03, PILE)))
    answer = CODEC.encode_body(0x04, CODEC.check(0x04, {"id": PILE, "gun": "01", "response": 0}))
    for seq in range(1, 0x10000):
        inner = bytes((seq & 0xFF, seq >> 8, 0, 0x03)) + body
        crc = crc16(inner)
        if crc & 0xFF == crc >> 8:
            a = crc16(bytes((seq & 0xFF, seq >> 8, 0, 0x04)) + answer)
            if a & 0xFF != a >> 8:
                return seq, encode_frame(0x03, seq, body, CrcOrder.HIGH_FIRST)
    raise AssertionError("no such seq")


class AmbiguousCrc(TestCase):
    """A frame whose two CRC bytes are equal does not change the order a pile is answered in."""

    def test_order_kept_on_ambiguous_frame(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE), seq=0x0102, order=CrcOrder.HIGH_FIRST)
        (reply,) = rig.replies(transport)
        self.assertIs(reply.crc_order, CrcOrder.HIGH_FIRST)
        seq, heartbeat = _symmetric_heartbeat()
        proto.dataReceived(heartbeat)
        answer = CODEC.encode_body(0x04, {"id": PILE, "gun": "01", "response": 0})
        self.assertEqual(transport.value(), encode_frame(0x04, seq, answer, CrcOrder.HIGH_FIRST))


class RecordsTable(TestCase):
    """A record received again after a delivered copy counts as undelivered until delivered."""

    @inlineCallbacks
    def test_rereceived_record_is_not_delivered_yet(self):
        outbox = SqliteOutbox(self.mktemp(), reactor)
        self.addCleanup(outbox.close)
        record = Message("3b", PILE, f"{PILE}-3b-{TRADE}", b'{"copy": 1}', TRADE)
        key, committed = outbox.append(record, True)
        yield committed
        outbox.delivered(key, record)
        again = Message("3b", PILE, f"{PILE}-3b-{TRADE}", b'{"copy": 2}', TRADE)  # the pile resent it
        _, committed = outbox.append(again, True)
        yield committed
        (row,) = yield outbox.record(TRADE)
        self.assertEqual(row["timesReceived"], 2)
        self.assertIsNone(row["deliveredAt"], "the copy now stored is still undelivered")
        outbox.retention = 0.0
        yield outbox.purge()
        rows = yield outbox.record(TRADE)
        self.assertEqual(len(rows), 1, "an undelivered record was purged")


class LateCallbacksAfterStop(TestCase):
    """After Delivery.stop(), a late failure of an in-flight publish arms no retry timer."""

    def test_no_timer_after_stop(self):
        clock = Clock()
        publisher = Recorder(hold=True)
        delivery = Delivery(publisher, clock)
        delivery.submit(Message("03", PILE, "m1", b"{}"))
        delivery.stop()
        publisher.pending.pop().errback(RuntimeError("connection closed by stop"))
        self.assertEqual(clock.getDelayedCalls(), [])


class StaleLoginRefusal(TestCase):
    """A REST 0x02 refusal meant for a stranger's pending login, arriving after the stranger
    hung up, must not fall on the accepted session and knock the real pile off."""

    def test_refusal_does_not_hit_the_accepted_pile(self):
        rig = Rig()  # manual verification
        real, real_transport = rig.connect(5000)
        rig.send(real, 0x01, example(0x01, PILE))
        factory = rig.factory
        factory.command(factory.registry.find(PILE), 0x02, {"id": PILE, "result": True})
        self.assertIs(factory.registry.get(PILE).connection, real)
        stranger, _ = rig.connect(5001)
        rig.send(stranger, 0x01, example(0x01, PILE))  # pending: the operator looks it up...
        stranger.connectionLost()  # ...and meanwhile the stranger hangs up
        session = factory.registry.find(PILE)  # what POST /proxy/02 does
        try:
            factory.command(session, 0x02, {"id": PILE, "result": False})
        except LookupError:
            pass  # "no pending login to refuse" (a 404 over REST) is a fine answer
        self.assertIsNotNone(factory.registry.get(PILE), "the real pile was refused and closed")
        self.assertFalse(real_transport.disconnecting)


class RecordsOnlyForDecodedTransactions(TestCase):
    @inlineCallbacks
    def test_encrypted_3b_and_replays_do_not_touch_records(self):
        outbox = SqliteOutbox(self.mktemp(), reactor)
        self.addCleanup(outbox.close)
        _, committed = outbox.append(Message("3b", PILE, "abc-12", b"{}"))  # encrypted: no tradeSeq
        yield committed
        _, committed = outbox.append(Message("3b", PILE, f"{PILE}-3b-{TRADE}", b"{}", TRADE))
        yield committed
        _, committed = outbox.append(Message("3b", PILE, f"{PILE}-3b-{TRADE}", b"{}", TRADE), replay=True)
        yield committed
        (record,) = yield outbox.record(TRADE)
        self.assertEqual(record["timesReceived"], 1)
        self.assertEqual((yield outbox.record("12")), [])


class DataDirOption(TestCase):
    def test_file_is_a_usage_error(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("x")
        opts = Options()
        error = self.assertRaises(usage.UsageError, opts.parseOptions, ["--dataDir", path])
        self.assertIn("--dataDir", str(error))


class NothingCrossesTheDaemonFork(TestCase):
    """twistd forks between building the service and starting it: no thread may exist before."""

    def test_outbox_thread_starts_with_the_service(self):
        from ykcproxy.service import ProxyService

        config = default_config(host="127.0.0.1", tcp_port=0, http_port=0, servers=("127.0.0.1:9",))
        config = attrs.evolve(config, data_dir=self.mktemp())
        proxy = ProxyService(config, reactor)
        self.assertIsNone(proxy.outbox._thread)
        self.assertIsNone(proxy.outbox._db)
        proxy.privilegedStartService()
        proxy.startService()
        self.assertTrue(proxy.outbox._thread.is_alive())
        return proxy.stopService()


class CorruptedFrameOnce(TestCase):
    """One corrupted frame: one error, one count, one log line (it was crc, then garbage)."""

    def test_one_error_one_count_one_line(self):
        rig = Rig(auto_verification=True)
        proto, transport = rig.connect()
        rig.send(proto, 0x01, example(0x01, PILE))
        transport.clear()
        body = CODEC.encode_body(0x03, CODEC.check(0x03, example(0x03, PILE)))
        good = encode_frame(0x03, 7, body)
        bad = bytearray(good)
        bad[6] ^= 0x10
        with capturedLogs() as events:
            proto.dataReceived(bytes(bad) + good)
        dropped = [e for e in events if e.get("log_format", "").startswith("dropped")]
        self.assertEqual([e["kind"] for e in dropped], ["crc"])
        text = rig.factory.metrics.render().decode()
        self.assertIn('ykc_frame_errors_total{kind="crc"} 1.0', text)
        self.assertNotIn('kind="garbage"', text)
        (reply,) = rig.replies(transport)
        self.assertEqual((reply.code, reply.seq), (0x04, 7))
