"""The session store: every order in SQLite (``sessions.sqlite3`` in the data directory).

The reactor thread never touches the database once the proxy runs: every
read and write goes to one dedicated worker thread (a Twisted thread pool of
one), in the order they were asked for.  Only :meth:`SessionStore.open`, at
start and before the pile port listens, reads synchronously: the orders still
open are needed before the first frame arrives.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from ykcproxy.sessions.query import SessionQuery
from ykcproxy.sessions.snapshot import Snapshot

FILE_NAME = "sessions.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    trade_seq TEXT PRIMARY KEY,
    pile_id TEXT NOT NULL,
    gun_id TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    updated_at INTEGER NOT NULL,
    live INTEGER NOT NULL,
    rules TEXT NOT NULL,
    kinds TEXT NOT NULL,
    document TEXT NOT NULL,
    energy INTEGER,
    amount INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_at);
CREATE INDEX IF NOT EXISTS sessions_live ON sessions (live, updated_at);
CREATE TABLE IF NOT EXISTS billing_models (
    pile_id TEXT PRIMARY KEY,
    updated_at INTEGER NOT NULL,
    model TEXT NOT NULL
);
"""

UPSERT_MODEL = "INSERT OR REPLACE INTO billing_models (pile_id, updated_at, model) VALUES (?, ?, ?)"

UPSERT = (
    "INSERT OR REPLACE INTO sessions (trade_seq, pile_id, gun_id, state, started_at, ended_at, "
    "updated_at, live, rules, kinds, document, energy, amount) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

#: Energy and amount of a charging order, newer than its document.
PROGRESS = "UPDATE sessions SET energy = ?, amount = ? WHERE trade_seq = ?"

#: Columns added since the first schema: (name, declaration).
ADDED_COLUMNS = (("energy", "INTEGER"), ("amount", "INTEGER"))

#: A stored order's document, and its energy and amount (newer than the document's).
DOCUMENT = "SELECT document, energy, amount FROM sessions"


class SessionStore:
    """The orders on disk; ``retention`` seconds after an order is retired it is purged.

    Beside the orders, the billing model each pile last agreed to (rule 8 checks
    records against it), one row per pile, kept until the pile's next model.
    """

    def __init__(
        self, directory: str, reactor: Any, retention: float = 7 * 86400.0, clock: IReactorTime | None = None
    ) -> None:
        self.directory = directory
        self.path = os.path.join(directory, FILE_NAME)
        self.retention = retention
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self._db: sqlite3.Connection | None = None
        self._pool: ThreadPool | None = None

    def open(self) -> list[dict[str, Any]]:
        """Open the database (synchronously, at start) and return the documents of the live orders."""
        os.makedirs(self.directory, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        present = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
        for name, declaration in ADDED_COLUMNS:
            if name not in present:
                db.execute(f"ALTER TABLE sessions ADD COLUMN {name} {declaration}")
        rows = db.execute(f"{DOCUMENT} WHERE live = 1 ORDER BY started_at").fetchall()
        self._db = db
        pool = ThreadPool(1, 1, name="ykcproxy-sessions")
        pool.start()
        self._pool = pool
        return [_document(row) for row in rows]

    def billing_models(self) -> dict[str, dict[str, Any]]:
        """Pile → its last billing model, read synchronously (at start, right after :meth:`open`)."""
        assert self._db is not None, "the session store is not open"
        rows = self._db.execute("SELECT pile_id, model FROM billing_models").fetchall()
        return {pile_id: json.loads(model) for pile_id, model in rows}

    def _run(self, fn: Any, *args: Any) -> Deferred[Any]:
        assert self._pool is not None, "the session store is not open"
        return deferToThreadPool(self._reactor, self._pool, fn, *args)

    def write(
        self,
        snapshots: list[Snapshot],
        models: dict[str, dict[str, Any]] | None = None,
        progress: list[tuple[int, int, str]] | None = None,
    ) -> Deferred[None]:
        """Write snapshots, billing models (pile → model) and progress in one transaction.

        ``progress`` holds ``(energy, amount, tradeSeq)`` of orders whose
        document is unchanged.  JSON is encoded in the worker thread.
        """
        now = int(self._clock.seconds() * 1000)

        def write() -> None:
            db = self._db
            assert db is not None
            rows = [
                (
                    s.trade_seq,
                    s.pile_id,
                    s.gun_id,
                    s.state,
                    s.started_at,
                    s.ended_at,
                    s.updated_at,
                    int(s.live),
                    s.rules,
                    s.kinds,
                    json.dumps(s.document, separators=(",", ":")),
                    s.document["detail"]["energy"],
                    s.document["detail"]["amount"],
                )
                for s in snapshots
            ]
            model_rows = [
                (pile_id, now, json.dumps(model, separators=(",", ":")))
                for pile_id, model in (models or {}).items()
            ]
            with db:
                db.execute("BEGIN")
                db.executemany(UPSERT, rows)
                db.executemany(UPSERT_MODEL, model_rows)
                db.executemany(PROGRESS, progress or ())

        return self._run(write)

    def get(self, trade_seq: str) -> Deferred[dict[str, Any] | None]:
        """The ``GET /sessions/<tradeSeq>`` view of a stored order, or None."""

        def read() -> dict[str, Any] | None:
            assert self._db is not None
            row = self._db.execute(f"{DOCUMENT} WHERE trade_seq = ?", (trade_seq,)).fetchone()
            return _document(row)["detail"] if row else None

        return self._run(read)

    def query(self, query: SessionQuery) -> Deferred[list[dict[str, Any]]]:
        """The ``GET /sessions`` views of the stored orders matching ``query``, newest first.

        At most ``query.limit + 1`` (so that the caller knows whether a next page exists).
        """
        where, values = _where(query)
        sql = (
            DOCUMENT
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY started_at DESC, trade_seq DESC LIMIT ?"
        )
        values.append(query.limit + 1)

        def read() -> list[dict[str, Any]]:
            assert self._db is not None
            return [_listed(_document(row)["detail"]) for row in self._db.execute(sql, values)]

        return self._run(read)

    def purge(self) -> Deferred[int]:
        """Drop the retired orders last changed more than ``retention`` ago; how many."""
        cutoff = int((self._clock.seconds() - self.retention) * 1000)

        def purge() -> int:
            assert self._db is not None
            with self._db:
                return self._db.execute(
                    "DELETE FROM sessions WHERE live = 0 AND updated_at < ?", (cutoff,)
                ).rowcount

        return self._run(purge)

    def close(self) -> Deferred[None]:
        """Close the database after every queued operation, and end the worker thread."""
        pool = self._pool
        if pool is None:
            done: Deferred[None] = Deferred()
            done.callback(None)
            return done

        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        d = self._run(close)

        def stopped(_: object) -> None:
            self._pool = None
            pool.stop()

        return d.addCallback(stopped)


#: The keys of an order in a ``GET /sessions`` list (the ``session`` message body).
LISTED = ("tradeSeq", "id", "gunId", "state", "startedAt", "endedAt", "energy", "amount", "anomalies")


def _document(row: tuple[str, int | None, int | None]) -> dict[str, Any]:
    """A stored document with the energy and amount of its row (written since, when charging)."""
    document: dict[str, Any] = json.loads(row[0])
    detail = document["detail"]
    if row[1] is not None:
        detail["energy"] = row[1]
    if row[2] is not None:
        detail["amount"] = row[2]
    return document


def _listed(detail: dict[str, Any]) -> dict[str, Any]:
    return {key: detail.get(key) for key in LISTED}


def _where(query: SessionQuery) -> tuple[list[str], list[Any]]:
    """The SQL conditions and their values for the filters of ``query``."""
    where: list[str] = []
    values: list[Any] = []
    for column, value in (("pile_id", query.pile), ("gun_id", query.gun), ("state", query.state)):
        if value is not None:
            where.append(f"{column} = ?")
            values.append(value)
    if query.since is not None:
        where.append("started_at >= ?")
        values.append(query.since)
    if query.before is not None:
        where.append("(started_at < ? OR (started_at = ? AND trade_seq < ?))")
        values += [query.before[0], query.before[0], query.before[1]]
    anomaly = query.anomaly
    if anomaly == "any":
        where.append("rules != ''")
    elif isinstance(anomaly, int):
        where.append("rules LIKE ?")
        values.append(f"% {anomaly} %")
    elif anomaly is not None:
        where.append("kinds LIKE ?")
        values.append(f"% {anomaly} %")
    return where, values
