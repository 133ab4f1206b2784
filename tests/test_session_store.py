"""The session store on real SQLite: write-behind, reload after a restart, retention."""

from __future__ import annotations

import json
import os
import sqlite3

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.test_sessions import MODEL, PILE, T0, Harness, trade
from ykcproxy.sessions.persist import SessionWriter, restore_into
from ykcproxy.sessions.store import SessionStore
from ykcproxy.sessions.tracker import SessionTracker


class StoreTests(TestCase):
    def store(self, directory: str, clock: Clock | None = None) -> SessionStore:
        store = SessionStore(directory, reactor, retention=3600, clock=clock)
        self.addCleanup(store.close)
        return store

    def writing(self, h: Harness, directory: str) -> tuple[SessionStore, SessionWriter]:
        """An opened store in ``directory`` and a writer of ``h``'s tracker to it."""
        store = self.store(directory, clock=h.clock)
        store.open()
        writer = SessionWriter(h.tracker, store, h.clock)
        writer.attach()
        return store, writer

    @inlineCallbacks
    def test_open_order_survives_and_settles(self) -> None:
        directory = self.mktemp()
        h = Harness(start_timeout=90, record_timeout=30)
        store = self.store(directory)
        self.assertEqual(store.open(), [])
        writer = SessionWriter(h.tracker, store, h.clock)
        writer.attach()
        ts = trade(1)
        h.charge(ts)
        h.realtime(ts, energy=4321)
        h.realtime(ts, energy=5000)
        yield writer.flush()
        self.assertEqual(writer.flushes, 1)
        yield store.close()
        # A new process: a new tracker on the same file.
        again = Harness()
        reopened = self.store(directory)
        self.assertEqual(restore_into(again.tracker, reopened.open()), 1)
        order = again.tracker.get(ts)
        assert order is not None
        self.assertEqual((order.state, order.energy), ("charging", 5000))
        again.record(ts)
        again.confirm(ts)
        self.assertEqual(again.state(ts), "settled")
        self.assertNotIn("unseen-start", again.kinds(ts))

    @inlineCallbacks
    def test_energy_alone_is_written_as_progress(self) -> None:
        directory = self.mktemp()
        h = Harness()
        store, writer = self.writing(h, directory)
        ts = trade(7)
        h.charge(ts)
        h.realtime(ts, energy=100)
        yield writer.flush()
        h.realtime(ts, energy=2500)
        self.assertEqual(writer._dirty, set(), "energy moving marks no whole document")
        self.assertEqual(len(writer._progressed), 1)
        yield writer.flush()
        stored = yield store.get(ts)
        self.assertEqual(stored["energy"], 2500)
        yield store.close()
        again = Harness()
        reopened = self.store(directory)
        restore_into(again.tracker, reopened.open())
        self.assertEqual(again.tracker.get(ts).energy, 2500)  # type: ignore[union-attr]

    @inlineCallbacks
    def test_a_file_of_the_first_schema_is_upgraded(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        db = sqlite3.connect(os.path.join(directory, "sessions.sqlite3"))
        db.execute(
            "CREATE TABLE sessions (trade_seq TEXT PRIMARY KEY, pile_id TEXT NOT NULL, gun_id TEXT NOT NULL,"
            " state TEXT NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER,"
            " updated_at INTEGER NOT NULL, live INTEGER NOT NULL, rules TEXT NOT NULL,"
            " kinds TEXT NOT NULL, document TEXT NOT NULL)"
        )
        detail = {"tradeSeq": "T1", "energy": 7, "amount": 8}
        db.execute(
            "INSERT INTO sessions VALUES ('T1', 'P', '01', 'ended', 1, 2, 3, 0, '', '', ?)",
            (json.dumps({"detail": detail}),),
        )
        db.commit()
        db.close()
        store = self.store(directory)
        self.assertEqual(store.open(), [])
        stored = yield store.get("T1")
        self.assertEqual(stored, detail)

    @inlineCallbacks
    def test_billing_model_survives_a_restart(self) -> None:
        directory = self.mktemp()
        h = Harness()
        store, writer = self.writing(h, directory)
        h.down(0x58, **MODEL)
        h.up(0x57, result=1)
        yield writer.flush()
        yield store.close()
        again = Harness()
        reopened = self.store(directory)
        restore_into(again.tracker, reopened.open())
        again.tracker.restore_models(reopened.billing_models())
        self.assertEqual(again.tracker.billing_model(PILE), MODEL)
        ts = trade(3)
        again.charge(ts)
        again.record(ts, peakUnitPrice=1, peakElectricCharge=100)
        self.assertEqual(again.kinds(ts), ["tariff-mismatch"], "rule 8 checked against the stored model")

    @inlineCallbacks
    def test_model_change_alone_is_written_soon(self) -> None:
        directory = self.mktemp()
        h = Harness()
        store, writer = self.writing(h, directory)
        h.down(0x0A, **MODEL)
        h.clock.advance(writer.soon)
        self.assertEqual(writer.flushes, 1)
        yield store.close()
        reopened = self.store(directory)
        reopened.open()
        self.assertEqual(reopened.billing_models(), {PILE: MODEL})

    @inlineCallbacks
    def test_overdue_timer_runs_its_full_length_again(self) -> None:
        directory = self.mktemp()
        h = Harness(start_timeout=90)
        store, writer = self.writing(h, directory)
        ts = trade(2)
        h.remote_start(ts)
        yield writer.flush()
        yield store.close()
        clock = Clock()
        clock.advance(T0 + 500)  # down longer than the start timeout
        tracker = SessionTracker(clock, lambda body, mid: None, start_timeout=90)
        reopened = self.store(directory)
        restore_into(tracker, reopened.open())
        clock.advance(89)
        order = tracker.get(ts)
        assert order is not None
        self.assertEqual(order.state, "starting")
        clock.advance(2)
        self.assertEqual([a.kind for a in order.anomalies], ["start-timeout"])

    @inlineCallbacks
    def test_settled_order_is_read_from_the_store_and_purged(self) -> None:
        directory = self.mktemp()
        h = Harness()
        store, writer = self.writing(h, directory)
        ts = trade(3)
        h.charge(ts)
        h.record(ts)
        h.confirm(ts)
        yield writer.flush()
        got = yield store.get(ts)
        self.assertEqual(got["state"], "settled")
        self.assertEqual(got["id"], PILE)
        self.assertTrue(got["timeline"])
        purged = yield store.purge()
        self.assertEqual(purged, 0)
        h.clock.advance(3601)
        purged = yield store.purge()
        self.assertEqual(purged, 1)
        gone = yield store.get(ts)
        self.assertIsNone(gone)

    def test_state_change_schedules_a_flush_energy_alone_does_not(self) -> None:
        directory = self.mktemp()
        h = Harness()
        store, writer = self.writing(h, directory)
        ts = trade(4)
        h.charge(ts)
        h.clock.advance(writer.soon)
        self.assertEqual(writer.flushes, 1)
        for energy in range(10):
            h.realtime(ts, energy=2000 + energy)
        h.clock.advance(writer.soon)
        self.assertEqual(writer.flushes, 1)  # marked only: the periodic flush writes it
        return writer.flush()

    @inlineCallbacks
    def test_the_list_reads_stored_orders_with_its_filters(self) -> None:
        from ykcproxy.sessions.query import page, parse_query

        directory = self.mktemp()
        h = Harness(record_timeout=30)
        store, writer = self.writing(h, directory)
        settled, missing, open_ = trade(4), trade(5), trade(6)
        h.charge(settled)
        h.record(settled)
        h.confirm(settled)
        h.clock.advance(10)
        h.charge(missing)
        h.clock.advance(10)
        h.charge(open_)
        yield writer.flush()
        yield store.close()
        again = Harness()  # the next run: its tracker holds only what it reloaded
        reopened = self.store(directory)
        restore_into(again.tracker, reopened.open())

        @inlineCallbacks
        def listed(**args: str):
            query = parse_query({k.encode(): [v.encode()] for k, v in args.items()})
            stored = yield reopened.query(query)
            return page(query, again.tracker, stored)

        everything = yield listed()
        self.assertEqual([s["tradeSeq"] for s in everything["sessions"]], [open_, missing, settled])
        got = yield listed(state="settled")
        self.assertEqual([s["tradeSeq"] for s in got["sessions"]], [settled])
        self.assertEqual(got["sessions"][0]["id"], PILE)
        first = yield listed(limit="1")
        self.assertEqual(len(first["sessions"]), 1)
        second = yield listed(limit="2", before=first["next"])
        self.assertEqual([s["tradeSeq"] for s in second["sessions"]], [missing, settled])
        self.assertIsNone(second["next"])
        none = yield listed(anomaly="tariff-mismatch")
        self.assertEqual(none["sessions"], [])
