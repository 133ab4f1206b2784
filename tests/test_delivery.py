"""Delivery on a fake clock: retries, order, backpressure, dead letters, the contracts,
and the forwarder service's outbox recovery and purges.

No sockets and no sleeps: the publisher is a fake whose Deferreds the test
fires, the store a fake or the real SQLite outbox, the clock a
:class:`twisted.internet.task.Clock`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.support import reactor, rest, settle, start_consumer, start_proxy
from ykcproxy.forward.base import (
    IBatchPublisher,
    IDurableStore,
    IOutboxStore,
    IPublisher,
    Message,
    PublishError,
)
from ykcproxy.forward.delivery import Backoff, Delivery, MemoryStore
from ykcproxy.forward.http import HttpPublisher
from ykcproxy.forward.nats import NatsPublisher
from ykcproxy.forward.outbox import SqliteOutbox
from ykcproxy.forward.service import ForwarderService, PeriodicService

NO_JITTER = Backoff(first=1.0, cap=8.0)


def msg(pile: str, n: int, ft: str = "13") -> Message:
    """Message ``n`` of ``pile``."""
    return Message(ft, pile, f"{pile}-{n}", b'{"n": %d}' % n)


@implementer(IPublisher)
class FakePublisher:
    """Each publish waits for the test to :meth:`ack` or :meth:`nack` it."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[list[Message], Deferred[None]]] = []

    def publish(self, message: Message) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.calls.append(([message], d))
        return d

    def start(self) -> Deferred[None]:
        return Deferred()

    def stop(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d

    def health(self) -> dict[str, Any]:
        return {"ok": True}

    def pending(self) -> list[list[Message]]:
        """The groups sent and not yet answered."""
        return [messages for messages, d in self.calls if not d.called]

    def sent_ids(self) -> list[str]:
        return [m.message_id for messages, _ in self.calls for m in messages]

    def ack(self, every: bool = True) -> None:
        for _, d in list(self.calls):
            if not d.called:
                d.callback(None)
                if not every:
                    return

    def nack(self, error: str = "503") -> None:
        for _, d in list(self.calls):
            if not d.called:
                d.errback(PublishError(error))


@implementer(IBatchPublisher)
class FakeBatchPublisher(FakePublisher):
    """Also takes groups; ``lone_via_publish`` as given."""

    def __init__(self, lone_via_publish: bool) -> None:
        super().__init__()
        self.lone_via_publish = lone_via_publish
        self.batches = 0

    def publish_batch(self, messages: Sequence[Message]) -> Deferred[None]:
        self.batches += 1
        d: Deferred[None] = Deferred()
        self.calls.append((list(messages), d))
        return d


@implementer(IOutboxStore)
class SlowDisk:
    """A store whose commits the test performs: ``backlog`` grows until :meth:`commit`."""

    durable = True

    def __init__(self) -> None:
        self.backlog = 0
        self.dead: list[tuple[int, int, str]] = []
        self.delivered_keys: list[int] = []
        self._next = 0
        self._watchers: list[Callable[[], None]] = []

    def append(
        self, message: Message, confirm: bool = False, replay: bool = False
    ) -> tuple[int, Deferred[None] | None]:
        self._next += 1
        self.backlog += 1
        return self._next, None

    def delivered(self, key: int, message: Message | None = None) -> None:
        self.backlog += 1
        self.delivered_keys.append(key)

    def dead_letter(self, key: int, attempts: int, error: str) -> None:
        self.dead.append((key, attempts, error))

    def watch_progress(self, callback: Callable[[], None]) -> None:
        self._watchers.append(callback)

    def commit(self) -> None:
        self.backlog = 0
        for callback in self._watchers:
            callback()


def per_pile(groups: list[list[Message]]) -> dict[str, list[str]]:
    """The message ids of ``groups`` by pile, in the order sent (piles have no order among them)."""
    out: dict[str, list[str]] = {}
    for group in groups:
        for m in group:
            out.setdefault(m.pile_id, []).append(m.message_id)
    return out


def no_jitter() -> float:
    """``random.random`` stand-in: the backoff's upper bound."""
    return 1.0


class Contracts(TestCase):
    """What Delivery needs of its collaborators is declared, and given at construction."""

    def test_the_stores_and_publishers_provide_their_interfaces(self) -> None:
        verifyObject(IOutboxStore, MemoryStore())
        outbox = SqliteOutbox(self.mktemp(), reactor, start=False)
        verifyObject(IDurableStore, outbox)
        verifyObject(IBatchPublisher, HttpPublisher(["http://127.0.0.1:1"], reactor))
        verifyObject(IBatchPublisher, NatsPublisher(["127.0.0.1:1"], reactor=reactor))
        self.assertFalse(HttpPublisher.lone_via_publish)
        self.assertTrue(NatsPublisher.lone_via_publish)

    def test_batch_mode_needs_a_batch_publisher(self) -> None:
        with self.assertRaises(TypeError):
            Delivery(FakePublisher(), Clock(), batch_size=8)
        Delivery(FakePublisher(), Clock())  # no batch size: any publisher

    def test_the_publisher_says_how_a_lone_message_goes(self) -> None:
        for lone, batches in ((True, 0), (False, 1)):
            publisher = FakeBatchPublisher(lone_via_publish=lone)
            delivery = Delivery(publisher, Clock(), batch_size=8)
            delivery.submit(msg("p1", 1))
            self.assertEqual((publisher.sent_ids(), publisher.batches), (["p1-1"], batches))

    def test_progress_callback_registered_through_the_interface(self) -> None:
        store = SlowDisk()
        Delivery(FakePublisher(), Clock(), store=store)
        self.assertEqual(len(store._watchers), 1)

    @inlineCallbacks
    def test_outbox_timestamps_come_from_the_clock(self) -> None:
        clock = Clock()
        clock.advance(1_000_000.0)
        outbox = SqliteOutbox(self.mktemp(), reactor, retention=100.0, clock=clock)
        self.addCleanup(outbox.close)
        record = Message("3b", "p1", "p1-3b-" + "7" * 32, b"{}", trade_seq="7" * 32)
        key, committed = outbox.append(record, confirm=True)
        yield committed
        ((_, _, created),) = yield outbox.pending()
        self.assertEqual(created, 1_000_000.0)
        clock.advance(5.0)
        outbox.delivered(key, record)
        (stored,) = yield outbox.record("7" * 32)
        self.assertEqual((stored["receivedAt"], stored["deliveredAt"]), (1_000_000_000, 1_000_005_000))
        other, committed = outbox.append(Message("13", "p1", "x", b"{}"), confirm=True)
        yield committed
        clock.advance(2.0)
        outbox.dead_letter(other, 3, "500")
        (dead,) = yield outbox.dead_letters()
        self.assertEqual((dead["createdAt"], dead["failedAt"]), (1_000_005_000, 1_000_007_000))
        purged = yield outbox.purge()  # delivered 2 s ago, retention 100 s
        self.assertEqual(purged, 0)
        clock.advance(100.0)
        purged = yield outbox.purge()
        self.assertEqual(purged, 1)


class Retries(TestCase):
    def test_backoff_doubles_up_to_the_cap(self) -> None:
        self.assertEqual([NO_JITTER.delay(n, no_jitter) for n in range(1, 7)], [1, 2, 4, 8, 8, 8])
        self.assertEqual(NO_JITTER.delay(1, lambda: 0.0), 0.5)  # jitter: half to all of it

    def test_failed_head_retried_after_the_backoff(self) -> None:
        clock, publisher = Clock(), FakePublisher()
        delivered: list[tuple[str, float]] = []
        delivery = Delivery(
            publisher,
            clock,
            backoff=Backoff(first=1.0, cap=2.0),
            on_delivered=lambda m, latency: delivered.append((m.message_id, latency)),
        )
        delivery.submit(msg("p1", 1))
        for attempt in range(1, 5):
            self.assertEqual(len(publisher.calls), attempt)
            publisher.nack()
            self.assertEqual(delivery.health()["lastError"], "503")
            clock.advance(min(2.0, 2 ** (attempt - 1)))  # the longest the jitter allows
        self.assertEqual(len(publisher.calls), 5)
        clock.advance(3.0)
        publisher.ack()
        self.assertEqual(delivery.retries, 4)
        self.assertEqual(delivery.depth, 0)
        self.assertEqual(delivered, [("p1-1", clock.seconds())])

    def test_confirmed_submit_fires_once_delivered(self) -> None:
        clock, publisher = Clock(), FakePublisher()
        delivery = Delivery(publisher, clock, backoff=NO_JITTER)
        confirmed = delivery.submit(msg("p1", 1), confirm=True)
        assert confirmed is not None
        publisher.nack()
        self.assertFalse(confirmed.called)
        clock.advance(1.0)
        publisher.ack()
        self.assertTrue(confirmed.called)

    def test_stop_cancels_retries(self) -> None:
        clock, publisher = Clock(), FakePublisher()
        delivery = Delivery(publisher, clock, backoff=NO_JITTER)
        delivery.submit(msg("p1", 1))
        publisher.nack()
        delivery.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(60)
        self.assertEqual(len(publisher.calls), 1)


class Order(TestCase):
    def test_each_pile_in_order_piles_in_parallel(self) -> None:
        clock, publisher = Clock(), FakePublisher()
        delivery = Delivery(publisher, clock, backoff=NO_JITTER)
        for n in range(3):
            delivery.submit(msg("a", n))
            delivery.submit(msg("b", n))
        # One head per pile in flight: a-0 and b-0.
        self.assertEqual(publisher.pending(), [[msg("a", 0)], [msg("b", 0)]])
        publisher.nack()  # both fail: nothing behind them overtakes
        clock.advance(1.0)
        self.assertEqual(per_pile(publisher.pending()), {"a": ["a-0"], "b": ["b-0"]})
        for _ in range(3):
            publisher.ack()
        self.assertEqual(
            per_pile([m for m, _ in publisher.calls]),
            {"a": ["a-0", "a-0", "a-1", "a-2"], "b": ["b-0", "b-0", "b-1", "b-2"]},
        )

    def test_max_in_flight(self) -> None:
        publisher = FakePublisher()
        delivery = Delivery(publisher, Clock(), max_in_flight=2)
        for pile in "abcd":
            delivery.submit(msg(pile, 0))
        self.assertEqual(len(publisher.pending()), 2)
        publisher.ack(every=False)
        self.assertEqual([m[0].pile_id for m in publisher.pending()], ["b", "c"])

    def test_batches_keep_each_piles_order(self) -> None:
        clock, publisher = Clock(), FakeBatchPublisher(lone_via_publish=False)
        delivery = Delivery(publisher, clock, batch_size=4, max_in_flight=1, backoff=NO_JITTER)
        for n in range(3):
            delivery.submit(msg("a", n))
        delivery.submit(msg("b", 0))
        # a-0 went alone (nothing else was queued); the rest waits for it.
        self.assertEqual(publisher.pending(), [[msg("a", 0)]])
        publisher.ack()
        self.assertEqual(publisher.pending(), [[msg("b", 0), msg("a", 1), msg("a", 2)]])
        publisher.nack()  # the whole group is sent again, each pile's in order
        clock.advance(1.0)
        clock.advance(1.0)  # both piles' retries are due (one group in flight at a time)
        while publisher.pending():
            publisher.ack()
        self.assertEqual(
            per_pile([m for m, _ in publisher.calls]),
            {"a": ["a-0", "a-1", "a-2", "a-1", "a-2"], "b": ["b-0", "b-0"]},
        )
        self.assertEqual(delivery.depth, 0)

    def test_recovered_messages_go_before_those_received_since(self) -> None:
        clock, publisher = Clock(), FakePublisher()
        delivery = Delivery(publisher, clock)
        delivery.hold()
        delivery.submit(msg("a", 5))
        self.assertEqual(publisher.calls, [])
        delivery.restore([(1, msg("a", 1), 0.0), (2, msg("a", 2), 0.0)])
        for _ in range(3):
            publisher.ack()
        self.assertEqual(publisher.sent_ids(), ["a-1", "a-2", "a-5"])


class Backpressure(TestCase):
    def test_pauses_at_the_limit_and_resumes_below_80_percent(self) -> None:
        clock, publisher = Clock(), FakePublisher()
        changes: list[bool] = []
        delivery = Delivery(publisher, clock, high_water=10, on_pressure=changes.append)
        for n in range(10):
            delivery.submit(msg("a", n))
        self.assertEqual((delivery.pressure, changes), (True, [True]))
        for _ in range(2):  # 8 left: the low water mark
            publisher.ack(every=False)
        self.assertEqual(changes, [True, False])

    def test_the_stores_backlog_counts_and_its_progress_releases(self) -> None:
        """A disk that falls behind pauses reads; its commit (progress) resumes them."""
        clock, publisher, store = Clock(), FakePublisher(), SlowDisk()
        changes: list[bool] = []
        delivery = Delivery(publisher, clock, store=store, high_water=10, on_pressure=changes.append)
        for n in range(5):
            delivery.submit(msg(f"p{n}", 0))
        publisher.ack()  # delivered, but 5 inserts and 5 deletes wait for the disk
        self.assertEqual((delivery.depth, store.backlog), (0, 10))
        delivery.submit(msg("p9", 0))
        self.assertEqual(changes, [True])
        self.assertEqual(delivery.load(), 12)
        store.commit()
        self.assertEqual((delivery.pressure, changes), (False, [True, False]))


class DeadLetters(TestCase):
    def test_undeliverable_head_moves_aside_and_its_pile_goes_on(self) -> None:
        clock, publisher, store = Clock(), FakePublisher(), SlowDisk()
        delivery = Delivery(publisher, clock, store=store, backoff=NO_JITTER, dead_letter_after=10.0)
        confirmed = delivery.submit(msg("a", 0))
        delivery.submit(msg("a", 1))
        attempts = 0
        while not store.dead:
            publisher.nack("500")
            attempts += 1
            clock.advance(8.0)
        self.assertIsNone(confirmed)
        self.assertEqual(store.dead, [(1, attempts, "500")])
        self.assertEqual(publisher.pending(), [[msg("a", 1)]])  # the next of the pile goes on
        publisher.ack()
        self.assertEqual(store.delivered_keys, [2])
        self.assertEqual(delivery.depth, 0)

    def test_confirmed_submit_fails_when_buried(self) -> None:
        clock, publisher = Clock(), FakePublisher()
        delivery = Delivery(publisher, clock, backoff=NO_JITTER, dead_letter_after=5.0)
        confirmed = delivery.submit(msg("a", 0), confirm=True)
        assert confirmed is not None
        failures: list[Failure] = []
        confirmed.addErrback(failures.append)
        publisher.nack("timeout")
        clock.advance(8.0)
        publisher.nack("timeout")
        self.assertEqual(len(failures), 1)
        self.assertIn("undeliverable: timeout", failures[0].getErrorMessage())
        self.assertEqual(delivery.depth, 0)


@implementer(IDurableStore)
class ScriptedOutbox(MemoryStore):
    """A durable store whose start, pending and purge fail as many times as told."""

    durable = True

    def __init__(self, start_failures: int = 0, pending_failures: int = 0, purge_failures: int = 0) -> None:
        super().__init__()
        self.start_failures = start_failures
        self.pending_failures = pending_failures
        self.purge_failures = purge_failures
        self.purges = 0
        self.closed = False
        self.left: list[tuple[int, Message, float]] = [(1, msg("a", 0), 0.0)]

    def start(self) -> None:
        if self.start_failures:
            self.start_failures -= 1
            raise OSError("database is locked")

    def pending(self) -> Deferred[list[tuple[int, Message, float]]]:
        d: Deferred[list[tuple[int, Message, float]]] = Deferred()
        if self.pending_failures:
            self.pending_failures -= 1
            d.errback(Failure(RuntimeError("no such column: ft")))
        else:
            d.callback(self.left)
        return d

    def purge(self) -> Deferred[int]:
        self.purges += 1
        d: Deferred[int] = Deferred()
        if self.purge_failures:
            self.purge_failures -= 1
            d.errback(Failure(RuntimeError("disk I/O error")))
        else:
            d.callback(0)
        return d

    def close(self) -> Deferred[None]:
        self.closed = True
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d


class Forwarder(TestCase):
    """The forwarder service: outbox recovery and purges, on a fake clock."""

    def forwarder(self, outbox: ScriptedOutbox) -> tuple[ForwarderService, FakePublisher, Clock]:
        clock, publisher = Clock(), FakePublisher()
        delivery = Delivery(publisher, clock, store=outbox)
        service = ForwarderService(publisher, delivery, outbox, clock, recovery_backoff=NO_JITTER)
        service.startService()
        self.addCleanup(service.stopService)
        return service, publisher, clock

    def test_failed_recovery_is_logged_degraded_and_retried(self) -> None:
        outbox = ScriptedOutbox(start_failures=1, pending_failures=2)
        service, publisher, clock = self.forwarder(outbox)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        health = service.health()
        self.assertIs(health["ok"], False)
        self.assertIn("outbox recovery failed 1 times (database is locked)", health["reason"])
        self.assertEqual(publisher.calls, [])  # held: nothing may overtake what is on disk
        service.delivery.submit(msg("a", 1))
        clock.advance(1.0)
        clock.advance(2.0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertIn("3 times (no such column: ft)", service.health()["reason"])
        self.assertFalse(service.recovered.called)
        clock.advance(4.0)  # the fourth attempt succeeds
        self.assertEqual(self.successResultOf(service.recovered), 1)
        self.assertNotIn("reason", service.health())
        self.assertIs(service.health()["ok"], True)
        publisher.ack()
        publisher.ack()
        self.assertEqual(publisher.sent_ids(), ["a-0", "a-1"])

    def test_stopping_ends_the_retries(self) -> None:
        outbox = ScriptedOutbox(pending_failures=100)
        service, _, clock = self.forwarder(outbox)
        service.stopService()
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertTrue(outbox.closed)

    def test_a_failed_purge_does_not_stop_the_purges(self) -> None:
        outbox = ScriptedOutbox(purge_failures=2)
        service, _, clock = self.forwarder(outbox)
        self.assertEqual(outbox.purges, 1)  # at start, once recovered
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(service.health()["lastPurgeError"], "disk I/O error")
        clock.advance(ForwarderService.PURGE_INTERVAL)
        self.assertEqual(outbox.purges, 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        clock.advance(ForwarderService.PURGE_INTERVAL)
        clock.advance(ForwarderService.PURGE_INTERVAL)
        self.assertEqual(outbox.purges, 4)
        self.assertNotIn("lastPurgeError", service.health())
        assert service.purger is not None
        self.assertEqual(service.purger.failures, 2)

    def test_a_purge_that_raises_is_a_failure_too(self) -> None:
        calls: list[int] = []

        def purge() -> None:
            calls.append(1)
            raise ValueError("boom")

        clock = Clock()
        periodic = PeriodicService("test job", 10.0, purge, clock)
        periodic.startService()
        self.addCleanup(periodic.stopService)
        clock.advance(10.0)
        clock.advance(10.0)
        self.assertEqual((len(calls), periodic.failures), (3, 3))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 3)


class RecoveryOfTheRealService(TestCase):
    """/healthz of the whole proxy while its outbox cannot be read."""

    @inlineCallbacks
    def test_healthz_degraded_while_the_outbox_cannot_be_recovered(self) -> None:
        data_dir = self.mktemp()
        os.makedirs(data_dir)
        with closing(sqlite3.connect(os.path.join(data_dir, "outbox.sqlite3"))) as db:
            db.execute("CREATE TABLE outbox (key INTEGER PRIMARY KEY)")  # from some other program
            db.commit()
        _, url = start_consumer(self)
        proxy = start_proxy(self, servers=url, data_dir=data_dir)
        assert proxy.forwarder is not None
        for _ in range(200):
            if proxy.forwarder.recovery_failures:
                break
            yield settle(0.01)
        code, health = yield rest(proxy, "GET", "/healthz")
        self.assertEqual(code, 503, health)
        self.assertIn("forwarder", health["degraded"])
        self.assertIs(health["forwarder"]["ok"], False)
        self.assertIn("outbox recovery failed", health["forwarder"]["reason"])
        self.assertIn("no such column", health["forwarder"]["reason"])
        self.flushLoggedErrors(sqlite3.OperationalError)


class StartedPublisher(FakePublisher):
    """A fake publisher that is usable at once."""

    def start(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d


class DrainOnStop(TestCase):
    """On stop, what is queued (the shutdown's offline events) is delivered first, within a bound."""

    def forwarder(self) -> tuple[ForwarderService, StartedPublisher, ScriptedOutbox, Clock]:
        clock, publisher, outbox = Clock(), StartedPublisher(), ScriptedOutbox()
        outbox.left = []
        delivery = Delivery(publisher, clock, store=outbox, backoff=NO_JITTER)
        service = ForwarderService(publisher, delivery, outbox, clock, drain_timeout=5.0)
        service.startService()
        return service, publisher, outbox, clock

    def test_drained_fires_at_once_when_nothing_is_queued(self) -> None:
        delivery = Delivery(FakePublisher(), Clock())
        self.successResultOf(delivery.when_drained())

    def test_queued_messages_are_delivered_before_the_close(self) -> None:
        service, publisher, outbox, clock = self.forwarder()
        service.delivery.submit(msg("a", 1))
        service.delivery.submit(msg("b", 1))
        stopped = service.stopService()
        self.assertNoResult(stopped)
        self.assertFalse(outbox.closed)
        publisher.ack()
        self.successResultOf(stopped)
        self.assertTrue(outbox.closed)
        self.assertEqual(sorted(publisher.sent_ids()), ["a-1", "b-1"])

    def test_a_retry_during_the_drain_still_counts(self) -> None:
        service, publisher, outbox, clock = self.forwarder()
        service.delivery.submit(msg("a", 1))
        stopped = service.stopService()
        publisher.nack()
        self.flushLoggedErrors()
        clock.advance(1.0)  # the backoff's retry, still within the drain
        publisher.ack()
        self.successResultOf(stopped)
        self.assertEqual(publisher.sent_ids(), ["a-1", "a-1"])

    def test_what_is_not_delivered_in_time_stays_in_the_store(self) -> None:
        service, publisher, outbox, clock = self.forwarder()
        service.delivery.submit(msg("a", 1))
        stopped = service.stopService()
        clock.advance(5.0)
        self.successResultOf(stopped)
        self.assertTrue(outbox.closed)
        self.assertEqual(service.delivery.depth, 1)
        self.assertEqual(clock.getDelayedCalls(), [])
