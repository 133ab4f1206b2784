"""The durable outbox: SQLite (WAL) written by one dedicated thread.

Every message is appended before it is forwarded and deleted once delivered.
The writer thread takes whatever operations are queued, runs them in one
transaction and commits (a group commit), then fires the Deferreds of the
appends it committed on the reactor thread.  The reactor thread never
touches the database.

Tables:

- ``outbox``: undelivered messages, in key order (the order piles sent them);
- ``dead``: messages that kept failing for longer than the dead-letter time;
  listed and replayed over REST;
- ``records``: every 0x3B transaction record by tradeSeq, kept for the
  retention time after delivery, for reconciliation.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ykcproxy.forward.base import IDurableStore, Message

log = Logger()

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    key INTEGER PRIMARY KEY,
    pile_id TEXT NOT NULL,
    ft TEXT NOT NULL,
    message_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    key INTEGER PRIMARY KEY,
    pile_id TEXT NOT NULL,
    ft TEXT NOT NULL,
    message_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    trade_seq TEXT NOT NULL,
    pile_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    received REAL NOT NULL,
    times_received INTEGER NOT NULL DEFAULT 1,
    delivered REAL,
    PRIMARY KEY (trade_seq, pile_id)
);
CREATE INDEX IF NOT EXISTS records_delivered ON records (delivered);
"""

Op = Callable[[sqlite3.Connection], Any]

UPSERT_RECORD = (
    "INSERT INTO records (trade_seq, pile_id, message_id, payload, received) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (trade_seq, pile_id) DO UPDATE SET "
    "payload = excluded.payload, times_received = times_received + 1, delivered = NULL"
)
MARK_DELIVERED = "UPDATE records SET delivered = ? WHERE message_id = ? AND pile_id = ?"


@implementer(IDurableStore)
class SqliteOutbox:
    """An :class:`~ykcproxy.forward.base.IDurableStore` on SQLite, with its own writer thread.

    ``reactor`` is used for ``callFromThread`` and ``callLater(0)`` (the
    hand-over to the writer); ``clock`` (default: ``reactor``) gives every
    timestamp stored (``created``, ``received``, ``delivered``, ``failed_at``)
    and the purge cutoff.  Only the writer thread's batching windows are
    measured on ``time.monotonic()``: they are real waits of a real thread,
    never stored.
    """

    durable = True

    #: When an urgent operation turns up while a lazy batch is gathered, the writer
    #: waits this long for its companions of the same moment (see :meth:`_gather`).
    BATCH_WINDOW = 0.005
    #: When nobody waits for the commit, a batch gathers for this long after its
    #: first operations were handed over (one commit, one fsync)...
    LAZY_WINDOW = 0.2
    #: ...up to this many operations per transaction.
    MAX_BATCH = 8192

    def __init__(
        self,
        directory: str,
        reactor: Any,
        retention: float = 7 * 86400.0,
        start: bool = True,
        clock: IReactorTime | None = None,
    ) -> None:
        self.path = os.path.join(directory, "outbox.sqlite3")
        self.directory = directory
        self.retention = retention
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        #: Lists of operations, one per reactor turn (``[None]`` ends the writer), each
        #: with whether someone waits for its commit and when it was handed over.
        self._ops: queue.SimpleQueue[tuple[list[tuple[Any, ...] | None], bool, float]] = queue.SimpleQueue()
        self._staged: list[tuple[Any, ...] | None] = []
        self._staged_urgent = False
        #: Writer thread only: inserts held back from the disk (see :meth:`_apply`).
        self._carry: list[tuple[int, tuple[Any, ...], float]] = []
        self._staging: Any = None  # the pending hand-over (a DelayedCall)
        self._urgent_event = threading.Event()
        self._db: sqlite3.Connection | None = None
        self._next_key = 0
        self.dead_count = 0
        self.commits = 0
        #: Outbox rows written to disk so far (messages not delivered within LAZY_WINDOW).
        self.rows_written = 0
        #: Operations queued and not yet committed (part of the backpressure measure).
        self.backlog = 0
        #: Called on the reactor thread after each commit (see :meth:`watch_progress`).
        self._progress: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        if start:
            self.start()

    def start(self) -> None:
        """Open the database and start the writer thread.

        Separate from construction because ``twistd`` forks to daemonize after
        building the service and before starting it: neither a thread nor an
        open SQLite connection may cross that fork.
        """
        if self._thread is not None:
            return
        os.makedirs(self.directory, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            row = db.execute(
                "SELECT max(m) FROM (SELECT max(key) m FROM outbox UNION ALL SELECT max(key) FROM dead)"
            )
            self._next_key = (row.fetchone()[0] or 0) + 1
            self.dead_count = db.execute("SELECT count(*) FROM dead").fetchone()[0]
        except BaseException:
            db.close()  # a later start() tries again from scratch
            raise
        self._db = db
        self._thread = threading.Thread(target=self._run, name="ykcproxy-outbox", daemon=True)
        self._thread.start()

    # -- the writer thread ------------------------------------------------------
    def _gather(self) -> tuple[list[tuple[Any, ...] | None], bool]:
        """The next batch, and whether someone waits for its commit.

        When someone waits (a 0x3B to confirm, a read, a close) the batch is
        what is queued now, and what arrives within ``BATCH_WINDOW`` of an urgent
        operation that turns up while gathering.  Otherwise the writer sleeps
        until ``LAZY_WINDOW`` after the first operations were handed over, so it
        does not wake for every reactor turn; the window counts from the
        hand-over, so a writer that is behind does not wait at all.  With inserts
        carried over (see :meth:`_apply`) and nothing new, the batch is empty once
        the oldest of them is due.
        """
        timeout = None
        if self._carry:
            timeout = max(0.0, self._carry[0][2] + self.LAZY_WINDOW - time.monotonic())
        try:
            first, urgent, handed = self._ops.get(timeout=timeout)
        except queue.Empty:
            return [], False
        batch: list[tuple[Any, ...] | None] = list(first)
        if not urgent:
            delay = handed + self.LAZY_WINDOW - time.monotonic()
            if delay > 0:
                # Woken early only by an urgent operation (see _hand_over).
                self._urgent_event.wait(delay)
        self._urgent_event.clear()
        became_urgent = self._take_queued(batch)
        if batch[-1] is not None and became_urgent and not urgent:
            # An urgent operation arrived during the lazy window: give its
            # companions of the same moment a short window too.
            time.sleep(self.BATCH_WINDOW)
            self._take_queued(batch)
        return batch, urgent or became_urgent

    def _take_queued(self, batch: list[tuple[Any, ...] | None]) -> bool:
        """Add what is queued now to ``batch`` (up to ``MAX_BATCH``); whether any of it is urgent."""
        urgent = False
        while len(batch) < self.MAX_BATCH and batch[-1] is not None:
            try:
                more, more_urgent, _ = self._ops.get_nowait()
            except queue.Empty:
                break
            batch.extend(more)
            urgent = urgent or more_urgent
        return urgent

    def _run(self) -> None:
        db = self._db
        assert db is not None
        while True:
            batch, urgent = self._gather()
            stop = bool(batch) and batch[-1] is None
            work = [op for op in batch if op is not None]
            try:
                db.execute("BEGIN IMMEDIATE")
                results = self._apply(db, work, urgent or stop, time.monotonic())
                db.execute("COMMIT")
                self.commits += 1
            except Exception:
                failure = Failure()
                log.failure("outbox commit failed ({n} operations lost from the disk)", failure, n=len(work))
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                results = [(op[-1], failure, False) for op in work if op[0] != "d"]
            self._reactor.callFromThread(self._fire, results, len(work))
            if stop:
                db.close()
                return

    def _apply(
        self, db: sqlite3.Connection, work: list[tuple[Any, ...]], urgent: bool, now: float
    ) -> list[tuple[Any, Any, bool]]:
        """Run one batch in order; an insert and a delete of the same key cancel out.

        Inserts are written only once they are ``LAZY_WINDOW`` old, or at once when
        someone waits for this commit: younger ones are carried over to the next
        batch (in memory, in the writer thread), where their delete may still
        cancel them.  So a message delivered within ``LAZY_WINDOW`` of its arrival
        is never written, however busy the writer is.  What is written is always
        the oldest of what is pending, so the disk holds a prefix of what piles
        sent (every earlier undelivered message is on disk too).
        """
        pending = {entry[0] for entry in self._carry}
        pending.update(op[1] for op in work if op[0] == "i")
        cancelled = {op[1] for op in work if op[0] == "d" and op[1] in pending}
        #: Inserts not yet written: (key, row, born), oldest first.
        rows: list[tuple[int, tuple[Any, ...], float]] = [e for e in self._carry if e[0] not in cancelled]
        # Taken over by this batch; if its transaction fails, they are lost from the disk
        # with the rest of it (and logged), not written later behind newer rows.
        self._carry = []
        deletes: list[tuple[int]] = []
        records: list[tuple[str, tuple[Any, ...]]] = []
        results: list[tuple[Any, Any, bool]] = []

        def write(upto: int) -> None:
            if upto:
                db.executemany("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?)", [e[1] for e in rows[:upto]])
                del rows[:upto]
                self.rows_written += upto
            if deletes:
                db.executemany("DELETE FROM outbox WHERE key = ?", deletes)
                deletes.clear()
            for sql, args in records:
                db.execute(sql, args)
            records.clear()

        for op in work:
            kind = op[0]
            if kind == "i":
                _, key, row, record, born, d = op
                if key not in cancelled:
                    rows.append((key, row, born))
                if record is not None:
                    records.append((UPSERT_RECORD, record))
                if d is not None:
                    results.append((d, None, True))
            elif kind == "d":
                _, key, mark = op
                if key not in cancelled:
                    deletes.append((key,))
                if mark is not None:
                    records.append((MARK_DELIVERED, mark))
            else:
                write(len(rows))
                _, fn, d = op
                try:
                    results.append((d, fn(db), True))
                except Exception:
                    results.append((d, Failure(), False))
        if urgent:
            due = len(rows)
        else:
            cutoff = now - self.LAZY_WINDOW
            due = 0
            while due < len(rows) and rows[due][2] <= cutoff:
                due += 1
        self._carry = rows[due:]
        write(due)
        return results

    def _fire(self, results: list[tuple[Deferred[Any] | None, Any, bool]], done: int) -> None:
        self.backlog -= done
        for d, value, ok in results:
            if d is None:
                continue
            if ok:
                d.callback(value)
            else:
                d.errback(value)
        for callback in self._progress:
            callback()

    def watch_progress(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the reactor thread after each commit (the backlog shrank)."""
        self._progress.append(callback)

    def _put(self, op: tuple[Any, ...], urgent: bool = False) -> None:
        """Stage an operation; the writer gets this reactor turn's operations as one list.

        ``urgent``: someone waits for its commit (a read, a run, an insert to confirm).
        """
        self.backlog += 1
        self._staged.append(op)
        if urgent:
            self._staged_urgent = True
        if self._staging is None:
            self._staging = self._reactor.callLater(0, self._hand_over)

    def _hand_over(self) -> None:
        if self._staging is not None and self._staging.active():
            self._staging.cancel()
        self._staging = None
        staged, self._staged = self._staged, []
        urgent, self._staged_urgent = self._staged_urgent, False
        if staged:
            self._ops.put((staged, urgent, time.monotonic()))
            if urgent:
                self._urgent_event.set()

    def run(self, op: Op) -> Deferred[Any]:
        """Run ``op(connection)`` in the writer thread, in its own order; Deferred of its result."""
        d: Deferred[Any] = Deferred()
        self._put(("f", op, d), urgent=True)
        return d

    def _later(self, op: Op) -> None:
        self._put(("f", op, None), urgent=True)

    # -- Store ------------------------------------------------------------------------
    def append(
        self, message: Message, confirm: bool = True, replay: bool = False
    ) -> tuple[int, Deferred[None] | None]:
        """Queue the insert; with ``confirm`` a Deferred fires once it is committed.

        A 0x3B also goes to the records table, unless it is a ``replay`` of a dead letter.
        """
        assert self._thread is not None, "append before start()"
        key = self._next_key
        self._next_key += 1
        now = self._clock.seconds()
        row = (key, message.pile_id, message.ft, message.message_id, message.payload, now)
        record = None
        if message.trade_seq is not None and not replay:
            record = (message.trade_seq, message.pile_id, message.message_id, message.payload, now)
        d: Deferred[None] | None = Deferred() if confirm else None
        self._put(("i", key, row, record, time.monotonic(), d), urgent=confirm)
        return key, d

    def delivered(self, key: int, message: Message | None = None) -> None:
        """Queue the delete of a delivered message (and note a record's delivery)."""
        mark = None
        if message is not None and message.ft == "3b":
            # Also a 0x3B recovered from the table (no trade_seq): its record row, if any, has its id.
            mark = (self._clock.seconds(), message.message_id, message.pile_id)
        self._put(("d", key, mark))

    def dead_letter(self, key: int, attempts: int, error: str) -> None:
        """Move an undeliverable message to the dead-letter table."""
        now = self._clock.seconds()
        self.dead_count += 1

        def move(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO dead SELECT key, pile_id, ft, message_id, payload, created, ?, ?, ? "
                "FROM outbox WHERE key = ?",
                (now, attempts, error, key),
            )
            db.execute("DELETE FROM outbox WHERE key = ?", (key,))

        self._later(move)

    # -- recovery, inspection and replay -------------------------------------------------
    def pending(self) -> Deferred[list[tuple[int, Message, float]]]:
        """Undelivered messages in order: (key, message, created)."""

        def read(db: sqlite3.Connection) -> list[tuple[int, Message, float]]:
            rows = db.execute(
                "SELECT key, ft, pile_id, message_id, payload, created FROM outbox ORDER BY key"
            )
            return [
                (k, Message(ft, pile, mid, bytes(payload)), created)
                for k, ft, pile, mid, payload, created in rows
            ]

        return self.run(read)

    def dead_letters(self, limit: int = 100) -> Deferred[list[dict[str, Any]]]:
        """The oldest dead letters, as JSON-ready dicts."""

        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT key, pile_id, ft, message_id, created, failed_at, attempts, last_error "
                "FROM dead ORDER BY key LIMIT ?",
                (limit,),
            )
            names = ("key", "id", "ft", "messageId", "createdAt", "failedAt", "attempts", "lastError")
            out = []
            for row in rows:
                entry = dict(zip(names, row))
                entry["createdAt"] = int(entry["createdAt"] * 1000)
                entry["failedAt"] = int(entry["failedAt"] * 1000)
                out.append(entry)
            return out

        return self.run(read)

    def take_dead(
        self, keys: list[int] | None, requeue: Callable[[Message], Any] | None = None
    ) -> Deferred[list[Message]]:
        """Remove dead letters (all, or those ``keys``) and return them for replay, in order.

        ``requeue`` (Delivery.submit) is called for each before the delete is queued, so the
        delete commits together with, or after, the re-inserts."""

        def take(db: sqlite3.Connection) -> list[Message]:
            if keys is None:
                rows = db.execute(
                    "SELECT key, ft, pile_id, message_id, payload FROM dead ORDER BY key"
                ).fetchall()
            else:
                marks = ",".join("?" * len(keys))
                rows = db.execute(
                    "SELECT key, ft, pile_id, message_id, payload FROM dead "
                    f"WHERE key IN ({marks}) ORDER BY key",
                    keys,
                ).fetchall()
            return rows

        d = self.run(take)

        def count(rows: list[Any]) -> list[Message]:
            messages = [Message(ft, pile, mid, bytes(payload)) for _, ft, pile, mid, payload in rows]
            if requeue is not None:
                for m in messages:
                    requeue(m)
            taken = [(r[0],) for r in rows]
            self._later(lambda db: db.executemany("DELETE FROM dead WHERE key = ?", taken))
            self.dead_count -= len(messages)
            return messages

        return d.addCallback(count)

    def record(self, trade_seq: str) -> Deferred[list[dict[str, Any]]]:
        """Every stored 0x3B with this tradeSeq (one per pile, normally one)."""

        def read(db: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = db.execute(
                "SELECT pile_id, message_id, payload, received, times_received, delivered "
                "FROM records WHERE trade_seq = ?",
                (trade_seq,),
            )
            out = []
            for pile, mid, payload, received, times, delivered in rows:
                out.append(
                    {
                        "id": pile,
                        "messageId": mid,
                        "receivedAt": int(received * 1000),
                        "timesReceived": times,
                        "deliveredAt": int(delivered * 1000) if delivered else None,
                        "message": json.loads(payload),
                    }
                )
            return out

        return self.run(read)

    def purge(self) -> Deferred[int]:
        """Drop delivered records older than the retention; returns how many."""
        cutoff = self._clock.seconds() - self.retention

        def purge(db: sqlite3.Connection) -> int:
            return db.execute(
                "DELETE FROM records WHERE delivered IS NOT NULL AND delivered < ?", (cutoff,)
            ).rowcount

        return self.run(purge)

    def close(self) -> Deferred[None]:
        """Commit what is queued, close the database and end the thread."""
        if self._closed:
            d: Deferred[None] = Deferred()
            d.callback(None)
            return d
        self._closed = True
        done: Deferred[None] = Deferred()
        thread = self._thread
        if thread is None:
            done.callback(None)
            return done
        self._hand_over()
        self._ops.put(([None], True, 0.0))
        self._urgent_event.set()

        def joined() -> None:
            thread.join()
            self._reactor.callFromThread(done.callback, None)

        threading.Thread(target=joined, name="ykcproxy-outbox-join", daemon=True).start()
        return done
