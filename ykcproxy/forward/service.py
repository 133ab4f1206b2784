"""The forwarder as a Twisted service: the publisher, the delivery queues and the outbox.

Starting it starts the publisher and recovers the durable outbox: what the
last run left undelivered is read back and goes first, before anything
received since (delivery is held until then).  A recovery that fails is
logged, shown in :meth:`ForwarderService.health` (``ok`` false, with a
``reason``) and tried again with a backoff on the clock; delivery stays held
meanwhile, so nothing overtakes the recovered messages.  Once recovered,
delivered 0x3B records past their retention are purged periodically by a
:class:`PeriodicService` that logs a failed purge and carries on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ykcproxy.forward.base import IDurableStore, IPublisher, Message
from ykcproxy.forward.delivery import Backoff, Delivery

log = Logger()


class PeriodicService(TimerService):
    """Calls ``work`` every ``step`` seconds on ``clock`` while running (first at start).

    A failure of ``work`` (raised, or its Deferred failing) is logged with the
    service's ``name`` and counted in :attr:`failures`; the next run comes at
    its time as usual.  (A bare :class:`TimerService` stops for good at the
    first failure.)
    """

    def __init__(
        self, name: str, step: float, work: Callable[[], Any], clock: IReactorTime | None = None
    ) -> None:
        super().__init__(step, self._guarded)
        self.name = name
        self.clock = clock
        self._work = work
        #: Runs that failed so far.
        self.failures = 0
        #: The message of the last failure ('' once a run succeeded).
        self.last_error = ""

    def _guarded(self) -> Deferred[None]:
        d = maybeDeferred(self._work)
        d.addCallbacks(self._succeeded, self._failed_once)
        return d

    def _succeeded(self, _: object) -> None:
        self.last_error = ""

    def _failed_once(self, failure: Failure) -> None:
        self.failures += 1
        self.last_error = failure.getErrorMessage()
        log.failure(
            "{task} failed ({failures} failures so far); next run in {step:g} s",
            failure,
            task=self.name,
            failures=self.failures,
            step=self.step,
        )


class ForwarderService(Service):
    """Starts the publisher and recovers the outbox; on stop, stops retrying and disconnects.

    :param publisher: the transport to the consumers.
    :param delivery: the delivery queues in front of it.
    :param outbox: the durable store (None: messages are kept in memory only).
    :param clock: times the recovery retries and the purges.
    :param recovery_backoff: waits between recovery attempts.
    :param drain_timeout: on stop, seconds to go on delivering what is queued
        (the piles' ``offline`` events of the shutdown among it) before the
        rest is left in the outbox for the next start; 0: stop at once.
    """

    #: How often delivered 0x3B records past their retention are purged.
    PURGE_INTERVAL = 3600.0

    def __init__(
        self,
        publisher: IPublisher,
        delivery: Delivery,
        outbox: IDurableStore | None,
        clock: IReactorTime,
        recovery_backoff: Backoff = Backoff(first=1.0, cap=60.0),
        drain_timeout: float = 0.0,
    ) -> None:
        self.publisher = publisher
        self.delivery = delivery
        self.outbox = outbox
        self.clock = clock
        self.recovery_backoff = recovery_backoff
        self.drain_timeout = drain_timeout
        self.purger: PeriodicService | None = None
        if outbox is not None:
            self.purger = PeriodicService("outbox purge", self.PURGE_INTERVAL, outbox.purge, clock)
        #: Fires with the number of messages recovered (0 without an outbox).
        self.recovered: Deferred[int] = Deferred()
        #: Fires once the publisher is usable (never, if it could not start).
        self.started: Deferred[None] = Deferred()
        #: Failed recovery attempts so far, and the last one's error (None: not failing).
        self.recovery_failures = 0
        self.recovery_error: str | None = None
        self._recovery_call: IDelayedCall | None = None

    def startService(self) -> None:
        super().startService()
        d = self.publisher.start()

        def failed(f: Failure) -> None:
            log.error("{name} forwarder not started: {e}", name=self.publisher.name, e=f.value)

        d.addCallbacks(self.started.callback, failed)
        if self.outbox is None:
            self.recovered.callback(0)
            return
        self.delivery.hold()
        self._recover()

    # -- recovery ---------------------------------------------------------------------
    def _recover(self) -> None:
        self._recovery_call = None
        outbox = self.outbox
        assert outbox is not None

        def read() -> Deferred[list[tuple[int, Message, float]]]:
            outbox.start()  # opens the database (a no-op once open)
            return outbox.pending()

        maybeDeferred(read).addCallbacks(self._restore, self._recovery_failed)

    def _restore(self, items: list[tuple[int, Message, float]]) -> None:
        if not self.running:
            return
        if self.recovery_failures:
            log.info("outbox recovered after {failures} failed attempts", failures=self.recovery_failures)
        self.recovery_error = None
        if items:
            log.info("outbox: {n} undelivered messages from the last run go first", n=len(items))
        self.delivery.restore(items)
        if self.purger is not None:
            self.purger.startService()
        self.recovered.callback(len(items))

    def _recovery_failed(self, failure: Failure) -> None:
        if not self.running:
            return
        self.recovery_failures += 1
        self.recovery_error = failure.getErrorMessage() or repr(failure.value)
        delay = self.recovery_backoff.delay(self.recovery_failures)
        log.failure(
            "outbox recovery failed (attempt {attempt}): {error}; delivery is held until it succeeds, "
            "next attempt in {delay:.1f} s",
            failure,
            attempt=self.recovery_failures,
            error=self.recovery_error,
            delay=delay,
        )
        self._recovery_call = self.clock.callLater(delay, self._recover)

    # -- state ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The forwarder part of /healthz: the publisher's and the queues' state.

        ``ok`` is false, with a ``reason``, while the outbox cannot be recovered.
        """
        health = {**self.publisher.health(), **self.delivery.health()}
        if self.recovery_error is not None:
            health["ok"] = False
            health["reason"] = (
                f"outbox recovery failed {self.recovery_failures} times ({self.recovery_error}); "
                "delivery is held, retrying"
            )
        if self.purger is not None and self.purger.last_error:
            health["lastPurgeError"] = self.purger.last_error
        return health

    def stopService(self) -> Deferred[None]:
        super().stopService()
        call, self._recovery_call = self._recovery_call, None
        if call is not None and call.active():
            call.cancel()
        if self.purger is not None and self.purger.running:
            self.purger.stopService()  # a purge under way is committed before the close
        d = self._drain()
        d.addCallback(lambda _: self._close())
        return d

    def _drain(self) -> Deferred[None]:
        """Go on delivering for up to :attr:`drain_timeout` seconds while anything is queued."""
        queued = self.delivery.depth
        usable = self.started.called and self.recovered.called
        if not (self.drain_timeout > 0 and queued and usable):
            return succeed(None)
        log.info(
            "shutdown: delivering {queued} queued messages (up to {timeout:g} s)",
            queued=queued,
            timeout=self.drain_timeout,
        )
        d = self.delivery.when_drained()
        d.addTimeout(self.drain_timeout, self.clock)

        def left(failure: Failure) -> None:
            log.warn(
                "shutdown: {left} messages not delivered within {timeout:g} s; "
                "they stay in the outbox for the next start",
                left=self.delivery.depth,
                timeout=self.drain_timeout,
            )

        return d.addErrback(left)

    def _close(self) -> Deferred[None]:
        self.delivery.stop()
        d = self.publisher.stop()
        if self.outbox is not None:
            outbox = self.outbox
            d.addBoth(lambda _: outbox.close())
        return d
