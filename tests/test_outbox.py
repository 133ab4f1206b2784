"""Nothing lost: the durable outbox with a real consumer that fails, restarts of the proxy,
dead letters, backpressure and the transaction lookup."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.support import connect_pile, login, rest, settle, start_consumer, start_proxy
from ykcproxy.forward.base import Message
from ykcproxy.forward.outbox import SqliteOutbox
from ykcproxy.service import ProxyService
from ykcproxy.wire.examples import example

from .support import reactor

PILES = ["32010200000001", "32010200000002", "32010200000003"]
FAST = {"retry_first": 0.02, "retry_max": 0.1}


def in_pile_order(test: TestCase, posts: list, pile_ids: list[str]) -> None:
    """Per pile, the consumer saw the frames in the order the pile sent them (by seq)."""
    for pile in pile_ids:
        seqs = [
            p.body["header"]["seq"] for p in posts if p.body.get("id") == pile and "seq" in p.body["header"]
        ]
        first = []
        for s in seqs:  # duplicates of at-least-once delivery are allowed, reordering is not
            if s not in first:
                first.append(s)
        test.assertEqual(first, sorted(first), f"pile {pile}")


class OutboxStore(TestCase):
    """The SQLite store on its own thread."""

    @inlineCallbacks
    def test_append_commit_pending_delivered(self):
        outbox = SqliteOutbox(self.mktemp(), reactor)
        self.addCleanup(outbox.close)
        messages = [Message("03", "p1", f"m{i}", b'{"i": %d}' % i) for i in range(5)]
        keys = []
        for m in messages:
            key, committed = outbox.append(m)
            keys.append(key)
        yield committed
        outbox.delivered(keys[0], messages[0])
        pending = yield outbox.pending()
        self.assertEqual([m for _, m, _ in pending], messages[1:])
        self.assertLessEqual(outbox.commits, 3)  # group commits, not one per message

    @inlineCallbacks
    def test_group_commit_and_backlog(self):
        """A burst is one transaction; a message delivered before its commit is never written."""
        outbox = SqliteOutbox(self.mktemp(), reactor)
        self.addCleanup(outbox.close)
        record = Message("3b", "p1", "p1-3b-" + "5" * 32, b"{}", "5" * 32)
        for i in range(1000):
            key, _ = outbox.append(Message("13", "p1", f"m{i}", b"{}"), confirm=False)
            outbox.delivered(key)
        key, committed = outbox.append(record)
        self.assertEqual(outbox.backlog, 2001)
        outbox.delivered(key, record)
        yield committed
        yield outbox.dead_letters()  # barrier
        self.assertEqual(outbox.backlog, 0)
        self.assertLessEqual(outbox.commits, 4)
        pending = yield outbox.pending()
        self.assertEqual(pending, [])
        (stored,) = yield outbox.record("5" * 32)
        self.assertIsNotNone(stored["deliveredAt"])

    def lazy_outbox(self, window: float) -> SqliteOutbox:
        outbox = SqliteOutbox(self.mktemp(), reactor, start=False)
        outbox.LAZY_WINDOW = window
        outbox.start()
        self.addCleanup(outbox.close)
        return outbox

    @inlineCallbacks
    def until(self, condition, timeout: float = 10.0):
        waited = 0.0
        while not condition():
            self.assertLess(waited, timeout, "condition not reached")
            yield settle(0.01)
            waited += 0.01

    @inlineCallbacks
    def test_delivered_within_the_window_is_never_written_across_batches(self):
        """An insert carried past a commit is still cancelled by its delete."""
        outbox = self.lazy_outbox(1.0)
        a, b = Message("13", "p1", "a", b"{}"), Message("13", "p1", "b", b"{}")
        key_a, _ = outbox.append(a, confirm=False)
        yield settle(0.5)
        key_b, _ = outbox.append(b, confirm=False)
        yield self.until(lambda: outbox.commits >= 1)  # at ~1.0 s: a is due, b is 0.5 s old
        self.assertEqual(outbox.rows_written, 1)
        outbox.delivered(key_b, b)  # before b is due (1.5 s)
        pending = yield outbox.pending()  # urgent: commits what is pending
        self.assertEqual([m for _, m, _ in pending], [a])
        self.assertEqual(outbox.rows_written, 1, "b was never written")

    @inlineCallbacks
    def test_carried_inserts_reach_the_disk_without_more_traffic(self):
        outbox = self.lazy_outbox(0.3)
        outbox.append(Message("13", "p1", "a", b"{}"), confirm=False)
        yield settle(0.2)
        outbox.append(Message("13", "p1", "b", b"{}"), confirm=False)
        yield self.until(lambda: outbox.rows_written == 2)
        path = outbox.path

        def on_disk() -> list[str]:
            with closing(sqlite3.connect(path)) as db:
                return [row[0] for row in db.execute("SELECT message_id FROM outbox ORDER BY key")]

        ids = yield deferToThread(on_disk)
        self.assertEqual(ids, ["a", "b"])

    @inlineCallbacks
    def test_survives_reopen_and_keys_continue(self):
        path = self.mktemp()
        outbox = SqliteOutbox(path, reactor)
        key, committed = outbox.append(Message("3b", "p1", "p1-3b-" + "1" * 32, b"{}", "1" * 32))
        yield committed
        yield outbox.close()
        again = SqliteOutbox(path, reactor)
        self.addCleanup(again.close)
        pending = yield again.pending()
        self.assertEqual([k for k, _, _ in pending], [key])
        key2, _ = again.append(Message("03", "p1", "x", b"{}"))
        self.assertGreater(key2, key)
        records = yield again.record("1" * 32)
        self.assertEqual(len(records), 1)

    @inlineCallbacks
    def test_dead_letters_and_replay(self):
        outbox = SqliteOutbox(self.mktemp(), reactor)
        self.addCleanup(outbox.close)
        m = Message("13", "p1", "m1", b"{}")
        key, committed = outbox.append(m)
        yield committed
        outbox.dead_letter(key, 7, "500")
        dead = yield outbox.dead_letters()
        self.assertEqual([(d["key"], d["attempts"], d["lastError"]) for d in dead], [(key, 7, "500")])
        self.assertEqual(outbox.dead_count, 1)
        taken = yield outbox.take_dead(None)
        self.assertEqual(taken, [m])
        self.assertEqual(outbox.dead_count, 0)
        pending = yield outbox.pending()
        self.assertEqual(pending, [])

    @inlineCallbacks
    def test_purge_keeps_undelivered_records(self):
        outbox = SqliteOutbox(self.mktemp(), reactor, retention=0.0)
        self.addCleanup(outbox.close)
        a = Message("3b", "p1", "p1-3b-" + "1" * 32, b"{}", "1" * 32)
        b = Message("3b", "p1", "p1-3b-" + "2" * 32, b"{}", "2" * 32)
        ka, _ = outbox.append(a)
        kb, committed = outbox.append(b)
        yield committed
        outbox.delivered(ka, a)
        yield settle(0.01)
        purged = yield outbox.purge()
        self.assertEqual(purged, 1)
        kept = yield outbox.record("2" * 32)
        self.assertEqual(len(kept), 1)


class ConsumerOutage(TestCase):
    @inlineCallbacks
    def test_500_then_200_loses_nothing(self):
        consumer, url = start_consumer(self)
        failing = {"on": True}
        consumer.answer = lambda post: 500 if failing["on"] else 200
        proxy = start_proxy(
            self, servers=url, auto_verification=True, auto_transaction_record_confirm=True, **FAST
        )
        links = []
        for pile in PILES:
            link = yield login(self, proxy, pile)
            links.append(link)
        sent = 0
        for round_ in range(5):
            for pile, link in zip(PILES, links):
                link.send(0x13, example(0x13, pile, salt=round_))
                link.send(0x3B, example(0x3B, pile, salt=round_))
                sent += 2
        # Records are confirmed once stored, while the consumer is still down.
        for link in links:
            for _ in range(5):
                yield link.expect(0x40)
        for _ in range(100):  # the first failed POST marks the forwarder degraded
            code, health = yield rest(proxy, "GET", "/healthz")
            if code == 503:
                break
            yield settle(0.02)
        self.assertEqual(code, 503)
        self.assertIn("forwarder", health["degraded"])
        self.assertEqual(consumer.posts, [])
        failing["on"] = False
        total = sent + 2 * len(PILES)  # each pile's 01 and online
        yield consumer.count(total)
        in_pile_order(self, consumer.posts, PILES)
        code, health = yield rest(proxy, "GET", "/healthz")
        self.assertEqual(code, 200, health)
        trade = example(0x3B, PILES[0], salt=3)["tradeSeq"]
        code, found = yield rest(proxy, "GET", f"/transactions/{trade}")
        self.assertEqual(code, 200, found)
        self.assertEqual(found["records"][0]["message"]["tradeSeq"], trade)
        self.assertIsNotNone(found["records"][0]["deliveredAt"])
        code, _ = yield rest(proxy, "GET", "/transactions/" + "9" * 32)
        self.assertEqual(code, 404)

    @inlineCallbacks
    def test_dead_letters_replayed(self):
        consumer, url = start_consumer(self)
        failing = {"on": True}
        consumer.answer = lambda post: 500 if failing["on"] else 200
        proxy = start_proxy(self, servers=url, auto_verification=True, dead_letter_after=0.2, **FAST)
        link = yield login(self, proxy, PILES[0])
        link.send(0x13, example(0x13, PILES[0]))
        yield settle(0.6)
        code, state = yield rest(proxy, "GET", "/outbox")
        self.assertEqual(code, 200)
        self.assertEqual(state["deadLetterCount"], 3)  # 01, online, 13
        self.assertEqual(state["queued"], 0)
        failing["on"] = False
        code, body = yield rest(proxy, "POST", "/outbox/replay", {})
        self.assertEqual((code, body["replayed"]), (200, 3))
        yield consumer.count(3)
        self.assertEqual([p.path for p in consumer.posts], ["/01", "/online", "/13"])


class ProxyRestart(TestCase):
    @inlineCallbacks
    def test_undelivered_go_first_after_restart(self):
        consumer, url = start_consumer(self)
        consumer.answer = lambda post: 500
        data_dir = self.mktemp()
        first = start_proxy(self, servers=url, auto_verification=True, data_dir=data_dir, **FAST)
        link = yield login(self, first, PILES[0])
        for i in range(10):
            link.send(0x13, example(0x13, PILES[0], salt=i))
        yield settle(0.1)
        yield first.stopService()
        consumer.answer = lambda post: 200
        second = start_proxy(self, servers=url, auto_verification=True, data_dir=data_dir, **FAST)
        yield second.forwarder.recovered
        link2 = yield login(self, second, PILES[0])
        link2.send(0x13, example(0x13, PILES[0], salt=99))
        # 01, online, 10 × 13, offline (shutdown); then 01, online, 13 of the new run.
        yield consumer.count(16)
        paths = [p.path for p in consumer.posts]
        self.assertEqual(paths[:13], ["/01", "/online"] + ["/13"] * 10 + ["/offline"])
        self.assertEqual(paths[13:], ["/01", "/online", "/13"])
        self.assertEqual(consumer.posts[12].body["reason"], "shutdown")


class Backpressure(TestCase):
    @inlineCallbacks
    def test_reads_pause_and_resume_nothing_dropped(self):
        consumer, url = start_consumer(self)
        failing = {"on": True}
        consumer.answer = lambda post: 500 if failing["on"] else 200
        proxy = start_proxy(self, servers=url, auto_verification=True, outbox_limit=10, **FAST)
        link = yield login(self, proxy, PILES[0])
        for i in range(30):
            link.send(0x3B, example(0x3B, PILES[0], salt=i))
        yield settle(0.3)
        self.assertTrue(proxy.delivery.pressure)
        depth = proxy.delivery.depth
        for i in range(30, 60):  # not read while paused
            link.send(0x3B, example(0x3B, PILES[0], salt=i))
        yield settle(0.3)
        self.assertEqual(proxy.delivery.depth, depth)
        code, health = yield rest(proxy, "GET", "/healthz")
        self.assertEqual(code, 503)
        self.assertTrue(link.connected)
        failing["on"] = False
        yield consumer.count(62)
        yield consumer.wait_for(lambda posts: len(consumer.sessions) >= 60)
        yield proxy.outbox.dead_letters()  # barrier: the deletes are committed
        yield settle(0.01)
        self.assertFalse(proxy.delivery.pressure)
        trades = [p.body["tradeSeq"] for p in consumer.of("3b")]
        self.assertEqual(trades, [example(0x3B, PILES[0], salt=i)["tradeSeq"] for i in range(60)])


class Standalone(TestCase):
    """No consumer: nothing is queued, but 0x3B records are kept and confirmed only when asked."""

    @inlineCallbacks
    def test_records_kept_and_confirmed_when_asked(self):
        proxy = start_proxy(self, auto_verification=True, auto_transaction_record_confirm=True)
        self.assertIsNone(proxy.outbox)
        self.assertIsNone(proxy.delivery)
        link = yield connect_pile(self, proxy)
        link.send(0x01, example(0x01, PILES[0]))
        yield link.expect(0x02)
        record = example(0x3B, PILES[0])
        link.send(0x3B, record)
        confirm = yield link.expect(0x40)
        self.assertEqual(confirm.fields["tradeSeq"], record["tradeSeq"])
        code, body = yield rest(proxy, "GET", "/transactions/" + record["tradeSeq"])
        self.assertEqual(code, 200)
        self.assertEqual(len(body["records"]), 1)

    @inlineCallbacks
    def test_no_confirm_by_default(self):
        proxy = start_proxy(self, auto_verification=True)
        link = yield connect_pile(self, proxy)
        link.send(0x01, example(0x01, PILES[0]))
        yield link.expect(0x02)
        record = example(0x3B, PILES[0])
        link.send(0x3B, record)
        link.send(0x03, example(0x03, PILES[0]))
        yield link.expect(0x04)
        yield proxy.records.dead_letters()  # barrier: the writer thread has committed
        self.assertEqual([r.code for r in link.received], [0x02, 0x04])
        code, _ = yield rest(proxy, "GET", "/transactions/" + record["tradeSeq"])
        self.assertEqual(code, 200)

    @inlineCallbacks
    def test_nothing_kept_without_a_data_dir(self):
        proxy = start_proxy(self, auto_verification=True, data_dir="")
        self.assertIsNone(proxy.records)
        code, _ = yield rest(proxy, "GET", "/transactions/" + "1" * 32)
        self.assertEqual(code, 404)


__all__ = ["ProxyService"]
