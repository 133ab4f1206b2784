"""Who holds which pile, shared through a JetStream key-value bucket.

Each instance writes ``pile.<id>`` (instance, remote, connected since) when a
login is accepted and deletes it when the pile goes offline, and rewrites its
entries and its ``instance.<hex name>`` heartbeat every third of
``--clusterTtl``; the bucket's TTL is ``--clusterTtl``, so a dead instance's
entries expire.  A watch on the bucket keeps :class:`Directory` current and
tells the registry when one of its piles logged in on another instance
(:meth:`~ykcproxy.pile.registry.Registry.move_away`).

nats-py runs in its own asyncio loop on a daemon thread; the reactor thread
hands writes over with ``call_soon_threadsafe`` and gets watch updates with
``callFromThread``.  It never blocks.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ykcproxy.cluster import connect_options

__all__ = ["BUCKET", "Directory", "InstanceBeat", "KvLink", "PileEntry", "instance_key", "pile_key"]

#: The bucket of the pile entries and the instance heartbeats.
BUCKET = "ykcproxy_piles"


def pile_key(pile_id: str) -> str:
    """The bucket key of a pile."""
    return f"pile.{pile_id}"


def route_prefix(instance: str) -> str:
    """The subject prefix of the commands routed to ``instance`` (``<prefix>.<ft>``)."""
    return "ykcproxy.route." + instance.encode().hex()


def instance_key(instance: str) -> str:
    """The bucket key of an instance's heartbeat (hex: KV keys may not hold ``:``)."""
    return "instance." + instance.encode().hex()


@attrs.frozen
class PileEntry:
    """One pile as the cluster sees it."""

    pile_id: str
    instance: str
    remote: str
    since: float

    def encode(self) -> bytes:
        """The bucket value."""
        return json.dumps(
            {"id": self.pile_id, "instance": self.instance, "remote": self.remote, "since": self.since}
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> PileEntry:
        """The entry of a bucket value (``ValueError`` if it is not one)."""
        d = json.loads(data)
        return cls(str(d["id"]), str(d["instance"]), str(d["remote"]), float(d["since"]))


@attrs.frozen
class InstanceBeat:
    """An instance's heartbeat: its name, how many piles it holds, when it last refreshed."""

    instance: str
    piles: int
    at: float

    def encode(self) -> bytes:
        """The bucket value."""
        return json.dumps({"instance": self.instance, "piles": self.piles, "at": self.at}).encode()

    @classmethod
    def decode(cls, data: bytes) -> InstanceBeat:
        """The heartbeat of a bucket value."""
        d = json.loads(data)
        return cls(str(d["instance"]), int(d["piles"]), float(d["at"]))


@attrs.define
class Directory:
    """The cluster's piles and instances as last seen by the watch (reactor thread).

    :param me: this instance's name.
    :param on_moved: called with a pile id and the other instance's login time whenever another
        instance writes that it holds the pile (the caller checks whether it holds it too).
    """

    me: str
    on_moved: Callable[[str, float], Any]
    piles: dict[str, PileEntry] = attrs.Factory(dict)
    instances: dict[str, InstanceBeat] = attrs.Factory(dict)

    def update(self, key: str, value: bytes | None) -> None:
        """A watch update: ``value`` None when the key was deleted or expired."""
        kind, _, name = key.partition(".")
        try:
            if kind == "pile":
                if value is None:
                    self.piles.pop(name, None)
                    return
                entry = PileEntry.decode(value)
                self.piles[name] = entry
                if entry.instance != self.me:
                    self.on_moved(name, entry.since)
            elif kind == "instance":
                if value is None:
                    self.instances = {k: v for k, v in self.instances.items() if instance_key(k) != key}
                    return
                beat = InstanceBeat.decode(value)
                self.instances[beat.instance] = beat
        except (ValueError, KeyError, TypeError):
            Logger().warn("cluster: ignoring a malformed entry {key}", key=key)

    def holder(self, pile_id: str) -> str | None:
        """The instance holding ``pile_id``, if any."""
        entry = self.piles.get(pile_id)
        return entry.instance if entry is not None else None

    def counts(self) -> dict[str, int]:
        """Piles per instance, as the entries say."""
        out: dict[str, int] = {}
        for entry in self.piles.values():
            out[entry.instance] = out.get(entry.instance, 0) + 1
        return out


#: Seconds between two slices of the registry refresh (at most; shorter for short TTLs).
REFRESH_TICK = 0.5


class KvLink:
    """The bucket over NATS, on its own asyncio thread.

    :param entries: gives this instance's current pile entries (for the refresh).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        server: str,
        directory: Directory,
        entries: Callable[[], list[PileEntry]],
        ttl: float,
        username: str = "",
        password: str = "",
    ) -> None:
        self.reactor = reactor
        self.server = server
        self.directory = directory
        self.entries = entries
        self.ttl = ttl
        self._credentials = (username, password)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kv: Any = None
        self._nc: Any = None
        self._refresh = LoopingCall(self.refresh)
        self._refresh.clock = reactor
        #: The refresh is spread over the ``ttl / 3`` cycle: each tick rewrites one
        #: slice of the entries, so that no tick floods the bucket (and the watches
        #: of every instance) with all of them at once.
        self.tick = min(REFRESH_TICK, ttl / 3)
        self.slices = max(1, round(ttl / 3 / self.tick))
        self._ticks = 0
        self.started: Deferred[None] = Deferred()

    # -- reactor thread ---------------------------------------------------------
    def start(self) -> Deferred[None]:
        """Connect, create the bucket, start the watch; fires when the watch is current."""
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._thread_main, name="ykcproxy-cluster-kv", daemon=True).start()
        return self.started

    def put(self, entry: PileEntry) -> None:
        """Write a pile entry (accepted login)."""
        self._submit(pile_key(entry.pile_id), entry.encode())

    def delete(self, pile_id: str) -> None:
        """Remove a pile entry (the pile went offline here)."""
        self._submit(pile_key(pile_id), None)

    def refresh(self) -> None:
        """Rewrite one slice of this instance's entries; each cycle, the heartbeat too.

        Every entry is rewritten once per ``ttl / 3`` (they expire after the TTL otherwise).
        """
        mine = self.entries()
        slice_, self._ticks = self._ticks % self.slices, self._ticks + 1
        for entry in mine:
            if hash(entry.pile_id) % self.slices == slice_:
                self.put(entry)
        if slice_ == 0:
            beat = InstanceBeat(self.directory.me, len(mine), self.reactor.seconds())
            self._submit(instance_key(self.directory.me), beat.encode())

    def stop(self) -> None:
        """Stop refreshing and end the loop thread (the entries expire or are replaced)."""
        if self._refresh.running:
            self._refresh.stop()
        loop = self._loop
        if loop is None:
            return

        async def close() -> None:
            try:
                if self._nc is not None:
                    await self._nc.close()
            except Exception:  # noqa: BLE001 - stopping anyway
                pass
            loop.stop()

        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(close()))

    def request(self, subject: str, data: bytes, timeout: float) -> Deferred[bytes]:
        """A NATS request over this link's connection; fails after ``timeout`` s without an answer."""
        d: Deferred[bytes] = Deferred()
        loop = self._loop

        async def ask() -> None:
            try:
                msg = await self._nc.request(subject, data, timeout=timeout)
            except Exception as e:  # noqa: BLE001 - handed to the reactor
                self.reactor.callFromThread(d.errback, RuntimeError(str(e) or type(e).__name__))
                return
            self.reactor.callFromThread(d.callback, msg.data)

        if loop is None or self._nc is None:
            d.errback(RuntimeError("not connected to the cluster NATS"))
        else:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(ask()))
        return d

    def _submit(self, key: str, value: bytes | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._write, key, value)

    def _ready(self) -> None:
        self._refresh.start(self.tick, now=True)
        if not self.started.called:
            self.started.callback(None)

    def _failed(self, message: str) -> None:
        self.log.error("cluster: {message}", message=message)
        if not self.started.called:
            self.started.errback(RuntimeError(message))

    # -- loop thread ------------------------------------------------------------
    def _write(self, key: str, value: bytes | None) -> None:
        if self._kv is None:
            return
        if value is None:
            asyncio.ensure_future(self._kv.delete(key))
        else:
            asyncio.ensure_future(self._kv.put(key, value))

    def _thread_main(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.create_task(self._run())
        self._loop.run_forever()

    async def _run(self) -> None:
        import nats

        options = connect_options(self.server, *self._credentials)
        try:
            self._nc = await nats.connect(**options)
            js = self._nc.jetstream()
            self._kv = await js.create_key_value(bucket=BUCKET, ttl=self.ttl)
            watcher = await self._kv.watchall()
        except Exception as e:  # noqa: BLE001 - reported to the reactor
            self.reactor.callFromThread(self._failed, f"cannot use the KV bucket on the cluster NATS: {e}")
            return
        current = False
        while True:
            try:
                entry = await watcher.updates(timeout=3600)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - connection closed
                return
            if entry is None:
                if not current:
                    current = True
                    self.reactor.callFromThread(self._ready)
                continue
            value = None if entry.operation in ("DEL", "PURGE") else entry.value
            self.reactor.callFromThread(self.directory.update, entry.key, value)
