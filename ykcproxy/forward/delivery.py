"""Ordered, retried delivery of messages to a publisher.

Each pile has a FIFO queue; the head of a queue is sent, and the next message
of that pile only after the head was delivered, so a consumer sees each
pile's messages in the order the pile sent them.  Piles are served in
parallel up to ``max_in_flight``.  A failed send is retried after an
exponential, jittered, capped backoff.  A store (memory, or the durable
outbox) keeps every message until it is delivered.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ykcproxy.forward.base import IBatchPublisher, IOutboxStore, IPublisher, Message

log = Logger()


@implementer(IOutboxStore)
class MemoryStore:
    """Keeps nothing beyond the delivery queues: lost on a crash."""

    durable = False
    #: Nothing is ever waiting for a disk.
    backlog = 0

    def __init__(self) -> None:
        self._next = 0

    def append(
        self, message: Message, confirm: bool = False, replay: bool = False
    ) -> tuple[int, Deferred[None] | None]:
        self._next += 1
        return self._next, None

    def delivered(self, key: int, message: Message | None = None) -> None:
        pass

    def dead_letter(self, key: int, attempts: int, error: str) -> None:
        log.error(
            "message {key} dropped after {attempts} attempts: {error}",
            key=key,
            attempts=attempts,
            error=error,
        )

    def watch_progress(self, callback: Callable[[], None]) -> None:
        """Never called back: the backlog is always 0."""


@attrs.define(eq=False)
class _Item:
    key: int
    message: Message
    queued_at: float
    attempts: int = 0
    waiter: Deferred[None] | None = None


@attrs.frozen
class Backoff:
    """Exponential backoff with jitter: ``first`` doubling up to ``cap`` seconds."""

    first: float = 0.5
    cap: float = 30.0

    def delay(self, attempts: int, rnd: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt ``attempts + 1``."""
        base = min(self.cap, self.first * (2 ** max(0, attempts - 1)))
        return base * (0.5 + rnd() / 2)


class Delivery:
    """Per-pile ordered delivery with retries, in front of one publisher.

    Every collaborator is given here and never replaced: the ``publisher``
    (an :class:`IBatchPublisher` when ``batch_size`` is set), the ``clock``
    (all timing and ages), the ``store`` (an :class:`IOutboxStore`, whose
    progress this queue watches) and the callbacks.
    """

    def __init__(
        self,
        publisher: IPublisher,
        clock: IReactorTime,
        store: IOutboxStore | None = None,
        max_in_flight: int = 64,
        backoff: Backoff = Backoff(),
        on_delivered: Callable[[Message, float], None] | None = None,
        on_failed: Callable[[Message, Failure], None] | None = None,
        dead_letter_after: float | None = None,
        high_water: int | None = None,
        on_pressure: Callable[[bool], None] | None = None,
        batch_size: int = 0,
    ) -> None:
        if batch_size and not IBatchPublisher.providedBy(publisher):
            raise TypeError(f"batch_size={batch_size} needs an IBatchPublisher, not {publisher!r}")
        if batch_size < 0:
            raise ValueError(f"batch_size must be 0 (off) or more, not {batch_size}")
        self.publisher = publisher
        self.clock = clock
        self.store: IOutboxStore = store if store is not None else MemoryStore()
        self.store.watch_progress(self._store_progress)
        self.max_in_flight = max_in_flight
        self.backoff = backoff
        self._on_delivered = on_delivered
        self._on_failed = on_failed
        self._queues: dict[str, deque[_Item]] = {}
        self._ready: deque[str] = deque()
        self._in_flight = 0
        self._pumping = False
        self._depth = 0
        self._last_error = ""
        self._timers: dict[str, Any] = {}
        self._stopped = False
        self._held = False
        self._drain_waiters: list[Deferred[None]] = []
        self.dead_letter_after = dead_letter_after
        self.high_water = high_water
        self.low_water = int(high_water * 0.8) if high_water else 0
        self._on_pressure = on_pressure
        self.pressure = False
        self.retries = 0
        #: With a batch size, the publisher's ``publish_batch`` sends up to that many at once.
        self.batch_size = batch_size
        self._batch_publisher: IBatchPublisher | None = IBatchPublisher(publisher) if batch_size else None
        #: In batch mode, a lone message goes through ``publish`` (the publisher says).
        self._lone_via_publish = self._batch_publisher is not None and bool(
            self._batch_publisher.lone_via_publish
        )

    # -- introspection --------------------------------------------------
    @property
    def depth(self) -> int:
        """Messages accepted and not yet delivered."""
        return self._depth

    def oldest_age(self) -> float:
        """Seconds the oldest undelivered message has waited (0 if none)."""
        now = self.clock.seconds()
        heads = [q[0].queued_at for q in self._queues.values() if q]
        return now - min(heads) if heads else 0.0

    def health(self) -> dict[str, Any]:
        """Queue state for /healthz."""
        return {
            "queued": self._depth,
            "inFlight": self._in_flight,
            "oldestAgeSeconds": round(self.oldest_age(), 3),
            "lastError": self._last_error,
        }

    # -- API ------------------------------------------------------------------
    def when_drained(self) -> Deferred[None]:
        """A Deferred that fires once nothing accepted is left undelivered (now, if so)."""
        d: Deferred[None] = Deferred()
        if self._depth == 0:
            d.callback(None)
        else:
            self._drain_waiters.append(d)
        return d

    def _check_drained(self) -> None:
        if self._depth == 0 and self._drain_waiters:
            waiters, self._drain_waiters = self._drain_waiters, []
            for d in waiters:
                d.callback(None)

    def stop(self) -> None:
        """Cancel pending retries (what is queued stays in the store)."""
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self._ready.clear()
        self._stopped = True

    def submit(self, message: Message, confirm: bool = False, replay: bool = False) -> Deferred[None] | None:
        """Queue ``message`` for delivery.

        With ``confirm``, return a Deferred that fires once the message is
        safe: committed to a durable store, or else delivered to the consumer.
        """
        key, committed = self.store.append(message, confirm, replay)
        item = _Item(key, message, self.clock.seconds())
        result: Deferred[None] | None = None
        if confirm:
            if self.store.durable:
                assert committed is not None
                result = committed
            else:
                result = item.waiter = Deferred()
        self._enqueue(item)
        return result

    def hold(self) -> None:
        """Queue, but do not send, until :meth:`restore` (startup recovery)."""
        self._held = True

    def restore(self, items: list[tuple[int, Message, float]]) -> None:
        """Put recovered undelivered messages before anything queued since, and start sending."""
        by_pile: dict[str, list[_Item]] = {}
        for key, message, created in items:
            by_pile.setdefault(message.pile_id, []).append(_Item(key, message, created))
        for pile, recovered in by_pile.items():
            queue = self._queues.get(pile)
            if queue is None:
                self._queues[pile] = deque(recovered)
                self._ready.append(pile)
            else:
                queue.extendleft(reversed(recovered))
            self._depth += len(recovered)
        self._held = False
        self._check_pressure()
        self._pump()

    def load(self) -> int:
        """What backpressure measures: messages not yet delivered, plus the store's
        operations not yet committed (a durable store that falls behind counts too)."""
        return self._depth + self.store.backlog

    def _store_progress(self) -> None:
        if self.pressure:
            self._check_pressure()

    def _check_pressure(self) -> None:
        if self.high_water is None:
            return
        load = self.load()
        if not self.pressure and load >= self.high_water:
            self.pressure = True
            log.warn(
                "{load} messages wait for delivery or the disk (limit {limit}): pausing reads from piles",
                load=load,
                limit=self.high_water,
            )
            if self._on_pressure is not None:
                self._on_pressure(True)
        elif self.pressure and load <= self.low_water:
            self.pressure = False
            log.info("{load} messages wait for delivery or the disk: reading from piles again", load=load)
            if self._on_pressure is not None:
                self._on_pressure(False)

    def _enqueue(self, item: _Item) -> None:
        pile = item.message.pile_id
        queue = self._queues.get(pile)
        self._depth += 1
        if self.high_water is not None and self._depth >= self.high_water - self.store.backlog:
            self._check_pressure()
        if queue is None:
            self._queues[pile] = deque((item,))
            self._ready.append(pile)
            self._pump()
        else:
            queue.append(item)

    # -- the loop -----------------------------------------------------------------
    def _pump(self) -> None:
        if self._pumping or self._stopped or self._held:
            return
        self._pumping = True
        try:
            ready = self._ready
            while ready and self._in_flight < self.max_in_flight:
                self._in_flight += 1
                if self._batch_publisher is not None:
                    groups = self._take_batch()
                    messages = [item.message for _, items in groups for item in items]
                    if len(messages) == 1 and self._lone_via_publish:
                        d = self._publish(self.publisher.publish, messages[0])
                    else:
                        d = self._publish(self._batch_publisher.publish_batch, messages)
                else:
                    pile = ready.popleft()
                    head = self._queues[pile][0]
                    head.attempts += 1
                    groups = [(pile, [head])]
                    d = self._publish(self.publisher.publish, head.message)
                d.addCallbacks(self._sent, self._failed, callbackArgs=(groups,), errbackArgs=(groups,))
        finally:
            self._pumping = False

    @staticmethod
    def _publish(method: Callable[[Any], Deferred[None]], arg: Any) -> Deferred[None]:
        """Call a publisher; an exception it raises becomes a failed Deferred (retried)."""
        try:
            return method(arg)
        except Exception:
            return fail()

    def _take_batch(self) -> list[tuple[str, list[_Item]]]:
        """Up to ``batch_size`` messages: the queued ones of ready piles, each pile's in order."""
        groups = []
        room = self.batch_size
        ready = self._ready
        while ready and room > 0:
            pile = ready.popleft()
            items = list(islice(self._queues[pile], room))
            for item in items:
                item.attempts += 1
            groups.append((pile, items))
            room -= len(items)
        return groups

    def _sent(self, _: object, groups: list[tuple[str, list[_Item]]]) -> None:
        self._in_flight -= 1
        now = self.clock.seconds()
        for pile, items in groups:
            queue = self._queues[pile]
            for item in items:
                queue.popleft()
                self._depth -= 1
                self.store.delivered(item.key, item.message)
                if self._on_delivered is not None:
                    self._on_delivered(item.message, now - item.queued_at)
                if item.waiter is not None:
                    item.waiter.callback(None)
            self._next_of(pile)
        self._check_drained()
        self._pump()

    def _failed(self, failure: Failure, groups: list[tuple[str, list[_Item]]]) -> None:
        self._in_flight -= 1
        if self._stopped:
            return  # stays in the store; delivered after the next start
        self._last_error = failure.getErrorMessage()
        now = self.clock.seconds()
        for pile, items in groups:
            head = items[0]
            self.retries += 1
            if self._on_failed is not None:
                self._on_failed(head.message, failure)
            if self.dead_letter_after is not None and now - head.queued_at >= self.dead_letter_after:
                self._bury(pile, head)
                continue
            delay = self.backoff.delay(head.attempts)
            log.warn(
                "delivery of {ft} for pile {pile_id} failed (attempt {attempts}): {error}; "
                "retry in {delay:.1f}s",
                ft=head.message.ft,
                pile_id=pile,
                attempts=head.attempts,
                error=self._last_error,
                delay=delay,
            )
            self._timers[pile] = self.clock.callLater(delay, self._retry, pile)
        self._pump()

    def _bury(self, pile: str, item: _Item) -> None:
        """Move a message that kept failing to the dead letters; its pile's queue goes on."""
        log.error(
            "{ft} {message_id} of pile {pile_id} undeliverable for {age:.0f}s after {attempts} attempts: "
            "moved to the dead letters",
            ft=item.message.ft,
            message_id=item.message.message_id,
            pile_id=pile,
            age=self.clock.seconds() - item.queued_at,
            attempts=item.attempts,
        )
        queue = self._queues[pile]
        queue.popleft()
        self._depth -= 1
        self.store.dead_letter(item.key, item.attempts, self._last_error)
        if item.waiter is not None:
            item.waiter.errback(Failure(RuntimeError(f"undeliverable: {self._last_error}")))
        self._next_of(pile)
        self._check_drained()

    def _next_of(self, pile: str) -> None:
        """A pile's head is done with: its next message becomes ready, or its queue goes."""
        if self._queues[pile]:
            self._ready.append(pile)
        else:
            del self._queues[pile]
        if self.pressure:
            self._check_pressure()

    def _retry(self, pile: str) -> None:
        self._timers.pop(pile, None)
        if pile in self._queues:
            self._ready.append(pile)
            self._pump()
