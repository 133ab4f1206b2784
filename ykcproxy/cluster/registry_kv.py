"""Who holds which pile, shared through a JetStream key-value bucket.

Each instance writes ``pile.<id>`` (instance, remote, connected since) when a
login is accepted and deletes it when the pile goes offline, and rewrites its
``instance.<hex name>`` heartbeat every third of ``--clusterTtl``.  A pile entry
counts while its instance's heartbeat does: an instance not heard from for
``--clusterTtl`` drops out of every :class:`Directory`, and its piles with it.
So the periodic work is one write per instance, whatever the number of piles;
the pile entries are only rewritten every third of :data:`ENTRY_LIFETIME`, the
bucket's TTL, which clears the entries of instances that never come back.  A
watch on the bucket keeps :class:`Directory` current and tells the registry when
one of its piles logged in on another instance
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
from ykcproxy.cluster.shared import SharedConnection

__all__ = [
    "BUCKET",
    "ENTRY_LIFETIME",
    "Directory",
    "InstanceBeat",
    "KvLink",
    "PileEntry",
    "instance_key",
    "pile_key",
]

#: The bucket of the pile entries and the instance heartbeats.
BUCKET = "ykcproxy_piles"

#: Seconds a value lives in the bucket (its TTL; at least three ``--clusterTtl``): the
#: entries of an instance that never comes back are gone from the bucket after this.
ENTRY_LIFETIME = 3600.0


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
    """An instance's heartbeat: its name, how many piles it holds, when it last refreshed,
    and its ``--clusterTtl`` (how long the others wait for its next one; None: theirs)."""

    instance: str
    piles: int
    at: float
    ttl: float | None = None

    def encode(self) -> bytes:
        """The bucket value."""
        value: dict[str, object] = {"instance": self.instance, "piles": self.piles, "at": self.at}
        if self.ttl is not None:
            value["ttl"] = self.ttl
        return json.dumps(value).encode()

    @classmethod
    def decode(cls, data: bytes) -> InstanceBeat:
        """The heartbeat of a bucket value."""
        d = json.loads(data)
        ttl = float(d.get("ttl") or 0)
        return cls(str(d["instance"]), int(d["piles"]), float(d["at"]), ttl if ttl > 0 else None)


@attrs.define
class Directory:
    """The cluster's piles and instances as last seen by the watch (reactor thread).

    A pile entry counts while its instance is live: this instance, or one whose
    heartbeat was heard within ``ttl`` seconds (:meth:`expire` drops the others).
    The entries of an instance that dropped out are kept aside and count again if
    its heartbeat comes back (a NATS partition that healed).

    :param me: this instance's name.
    :param on_moved: called with a pile id and the other instance's login time whenever another
        instance writes that it holds the pile (the caller checks whether it holds it too).
    :param ttl: seconds an instance stays live without a heartbeat.
    """

    me: str
    on_moved: Callable[[str, float], Any]
    ttl: float = float("inf")
    piles: dict[str, PileEntry] = attrs.Factory(dict)
    instances: dict[str, InstanceBeat] = attrs.Factory(dict)
    #: When each instance's heartbeat was last heard (this instance's clock).
    heard: dict[str, float] = attrs.Factory(dict)
    #: Seconds the entries of an instance that dropped out are kept (the bucket's TTL: it
    #: has forgotten them by then too, and its expiry tells no watch).
    lifetime: float = float("inf")
    #: When each instance that dropped out did (this instance's clock).
    dropped: dict[str, float] = attrs.Factory(dict)

    def update(self, key: str, value: bytes | None, now: float = 0.0, initial: bool = False) -> None:
        """A watch update: ``value`` None when the key was deleted.

        ``now`` is when it arrived; ``initial`` says it is one of the values the watch
        found at start, whose heartbeat counts from when it was written (no later than now).
        """
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
                    for gone in [k for k in self.instances if instance_key(k) == key]:
                        self._drop(gone, now)
                    return
                beat = InstanceBeat.decode(value)
                self.instances[beat.instance] = beat
                self.dropped.pop(beat.instance, None)
                self.heard[beat.instance] = min(now, beat.at) if initial else now
        except (ValueError, KeyError, TypeError):
            Logger().warn("cluster: ignoring a malformed entry {key}", key=key)

    def _ttl_of(self, instance: str) -> float:
        beat = self.instances.get(instance)
        return beat.ttl if beat is not None and beat.ttl is not None else self.ttl

    def _drop(self, instance: str, now: float) -> None:
        self.instances.pop(instance, None)
        self.heard.pop(instance, None)
        self.dropped[instance] = now

    def expire(self, now: float) -> list[str]:
        """Drop the instances not heard from for their TTL (their heartbeat's, else ``ttl``)
        seconds; returns their names."""
        gone = [k for k, at in self.heard.items() if k != self.me and now - at > self._ttl_of(k)]
        for name in gone:
            self._drop(name, now)
        forgotten = [k for k, at in self.dropped.items() if now - at > self.lifetime]
        for name in forgotten:
            del self.dropped[name]
            for pile_id in [p for p, e in self.piles.items() if e.instance == name]:
                del self.piles[pile_id]
        return gone

    def live(self, instance: str) -> bool:
        """Whether ``instance`` counts: this one, or one whose heartbeat is current."""
        return instance == self.me or instance in self.instances

    def held(self) -> list[PileEntry]:
        """The entries of live instances."""
        return [e for e in self.piles.values() if self.live(e.instance)]

    def holder(self, pile_id: str) -> str | None:
        """The live instance holding ``pile_id``, if any."""
        entry = self.piles.get(pile_id)
        return entry.instance if entry is not None and self.live(entry.instance) else None

    def counts(self) -> dict[str, int]:
        """Piles per live instance, as the entries say."""
        out: dict[str, int] = {}
        for entry in self.held():
            out[entry.instance] = out.get(entry.instance, 0) + 1
        return out


#: Seconds a stopping instance waits for NATS to take the deletion of its heartbeat.
STOP_TIMEOUT = 2.0

#: Seconds between two ticks of the refresh (at most; shorter for short TTLs): each tick
#: expires silent instances, retries failed writes and rewrites a slice of the entries.
REFRESH_TICK = 0.5


class KvLink:
    """The bucket over NATS, on its own asyncio thread.

    :param entries: gives this instance's current pile entries (for the refresh).
    :param ttl: ``--clusterTtl``: the heartbeat is written every third of it.
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
        #: This link's connection, for the command responders to subscribe on.
        self.shared = SharedConnection()
        #: Writes in flight per key (loop thread): only a key's latest write is redone.
        self._generation: dict[str, int] = {}
        #: The revision of this instance's last write of each pile key (loop thread): its
        #: delete is conditional on it, so it never removes another instance's later entry.
        self._written: dict[str, int] = {}
        #: The writes in flight (loop thread), awaited at stop.
        self._inflight: set[asyncio.Future[None]] = set()
        #: The revisions of the values the watch found at start (reactor thread, until ready).
        self._revisions: dict[str, int] = {}
        self.directory.ttl = ttl
        #: The bucket's TTL: the pile entries are rewritten every third of it.
        self.lifetime = self.directory.lifetime = max(ENTRY_LIFETIME, 3 * ttl)
        self._refresh = LoopingCall(self.refresh)
        self._refresh.clock = reactor
        self.tick = min(REFRESH_TICK, ttl / 3)
        #: Ticks between two heartbeats (``ttl / 3``).
        self.beat_every = max(1, round(ttl / 3 / self.tick))
        #: Ticks per rewrite cycle of the entries (each once per ``lifetime / 3``).
        self.slices = max(1, round(self.lifetime / 3 / self.tick))
        self._ticks = 0
        #: Keys whose last write failed (NATS away): rewritten from the current state each tick.
        self._failed_keys: set[str] = set()
        #: The entries of this rewrite cycle not yet rewritten, how many go per tick, and the
        #: tick the cycle started (the next one starts ``slices`` ticks later).
        self._cycle: list[PileEntry] = []
        self._per_tick = 1
        self._cycle_start = 0
        self.started: Deferred[None] = Deferred()

    # -- reactor thread ---------------------------------------------------------
    def start(self) -> Deferred[None]:
        """Connect, create the bucket, start the watch; fires when the watch is current."""
        self._loop = self.shared.loop = asyncio.new_event_loop()
        threading.Thread(target=self._thread_main, name="ykcproxy-cluster-kv", daemon=True).start()
        return self.started

    def put(self, entry: PileEntry) -> None:
        """Write a pile entry (accepted login)."""
        self._submit(pile_key(entry.pile_id), entry.encode())

    def delete(self, pile_id: str) -> None:
        """Remove a pile entry (the pile went offline here)."""
        self._submit(pile_key(pile_id), None)

    def refresh(self) -> None:
        """One tick: drop silent instances, the heartbeat every ``ttl / 3``, a slice of the entries.

        Every entry is rewritten once per ``lifetime / 3`` (the bucket forgets it after
        ``lifetime``); a write that failed is redone from the current state.
        """
        now = self.reactor.seconds()
        for name in self.directory.expire(now):
            self.log.info(
                "cluster: instance {instance} not heard from for {ttl} s", instance=name, ttl=self.ttl
            )
        tick, self._ticks = self._ticks, self._ticks + 1
        retry, self._failed_keys = self._failed_keys, set()
        if not self._cycle and tick - self._cycle_start >= self.slices:
            self._cycle, self._cycle_start = self.entries(), tick
            self._per_tick = -(-len(self._cycle) // self.slices)
        some, self._cycle = self._cycle[: self._per_tick], self._cycle[self._per_tick :]
        for entry in some:
            if self.directory.piles.get(entry.pile_id) == entry:  # still held, by the same login
                self.put(entry)
        me = instance_key(self.directory.me)
        if retry - {me}:
            held = {pile_key(e.pile_id): e for e in self.entries()}
            for key in retry - {me}:
                if key in held:
                    self.put(held[key])
                elif self.directory.holder(key.partition(".")[2]) in (self.directory.me, None):
                    self._submit(key, None)  # a pile no longer held here: its delete failed
        if tick % self.beat_every == 0 or me in retry:
            self.beat(now)

    def beat(self, now: float) -> None:
        """Write this instance's heartbeat."""
        count = sum(1 for e in self.directory.piles.values() if e.instance == self.directory.me)
        beat = InstanceBeat(self.directory.me, count, now, self.ttl)
        self._submit(instance_key(self.directory.me), beat.encode())

    def stop(self) -> None:
        """Stop refreshing, delete the heartbeat (the others drop this instance at once) and end
        the loop thread. Writes handed over before are sent first."""
        if self._refresh.running:
            self._refresh.stop()
        loop, self._loop = self._loop, None
        if loop is None:
            return
        me = instance_key(self.directory.me)

        async def close() -> None:
            if self._inflight:  # e.g. the deletes of the piles closed at a clean stop
                await asyncio.wait(set(self._inflight), timeout=STOP_TIMEOUT)
            try:
                if self._kv is not None:
                    await asyncio.wait_for(self._kv.delete(me), STOP_TIMEOUT)
            except Exception:  # noqa: BLE001 - it expires after the TTL instead
                pass
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
        # The piles that logged in before the bucket was usable, then the ticks (heartbeat first).
        self.beat(self.reactor.seconds())
        held = self.entries()
        for entry in held:
            self.put(entry)
        # Entries of this instance's name that it does not hold: left by its previous run.
        # Deleted only if still at the revision seen (not if another instance took the pile since).
        ids = {e.pile_id for e in held}
        for pile_id, entry in list(self.directory.piles.items()):
            if entry.instance == self.directory.me and pile_id not in ids:
                key = pile_key(pile_id)
                self.directory.piles.pop(pile_id)
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(self._delete_stale, key, self._revisions.get(key))
        self._revisions.clear()
        self._ticks = self._cycle_start = 1  # every entry was just written: the first cycle later
        self._refresh.start(self.tick, now=False)
        if not self.started.called:
            self.started.callback(None)

    def _failed(self, message: str) -> None:
        self.log.error("cluster: {message}", message=message)
        if not self.started.called:
            self.started.errback(RuntimeError(message))

    # -- loop thread ------------------------------------------------------------
    def _delete_stale(self, key: str, revision: int | None) -> None:
        async def delete() -> None:
            try:
                await self._kv.delete(key, last=revision)
            except Exception:  # noqa: BLE001 - written since by another instance: theirs stays
                pass

        if self._kv is not None and revision:
            asyncio.ensure_future(delete())

    def _write(self, key: str, value: bytes | None) -> None:
        if self._kv is None:
            return
        self._generation[key] = generation = self._generation.get(key, 0) + 1
        task = asyncio.ensure_future(self._write_one(key, value, generation))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _write_one(self, key: str, value: bytes | None, generation: int) -> None:
        try:
            if value is None:
                # Only the value this instance wrote last (a pile taken over meanwhile keeps the
                # other instance's entry; that delete fails and is not redone once the watch shows it).
                await self._kv.delete(key, last=self._written.get(key))
                self._written.pop(key, None)
            else:
                self._written[key] = await self._kv.put(key, value)
        except Exception:  # noqa: BLE001 - redone by the next tick unless written again since
            if self._generation.get(key) == generation:
                self.reactor.callFromThread(self._failed_keys.add, key)
        if self._generation.get(key) == generation:
            del self._generation[key]

    def _thread_main(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        loop.create_task(self._run())
        loop.run_forever()

    async def _run(self) -> None:
        import nats

        options = connect_options(self.server, *self._credentials)
        try:
            self._nc = await nats.connect(**options)
            self.shared.connected(self._nc)
            js = self._nc.jetstream()
            self._kv = await js.create_key_value(bucket=BUCKET, ttl=self.lifetime)
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
            self.reactor.callFromThread(self._update, entry.key, value, not current, entry.revision)

    def _update(self, key: str, value: bytes | None, initial: bool, revision: int | None = None) -> None:
        if initial and revision:
            self._revisions[key] = revision
        self.directory.update(key, value, self.reactor.seconds(), initial)
