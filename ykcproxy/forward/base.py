"""The contracts of the forward side.

- :class:`IPublisher`: a transport that delivers one message to consumers;
- :class:`IBatchPublisher`: one that also sends a group of messages at once;
- :class:`IOutboxStore`: where messages wait until delivered, with its backlog
  and its progress callback (what backpressure counts);
- :class:`IDurableStore`: a store that survives a restart (recovery, purges).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface


class Message(NamedTuple):
    """One message for consumers, already encoded as JSON.

    ``ft`` is the frame type as two lowercase hex digits (``"3b"``) or a
    lifecycle event (``"online"``, ``"offline"``); it names the HTTP path and
    the NATS subject.  An immutable NamedTuple rather than a frozen attrs
    class: one is built per forwarded frame, and a frozen attrs instance costs
    2.7 times as much to build (0.55 µs against 0.2 µs here).

    ``trade_seq`` is the tradeSeq of a decoded 0x3B transaction record (the
    outbox keeps those records by it), None for every other message.
    """

    ft: str
    pile_id: str
    message_id: str
    payload: bytes
    trade_seq: str | None = None


class PublishError(Exception):
    """A message was not delivered; it may be retried."""


class IPublisher(Interface):
    """A transport that delivers messages to the consumer (HTTP or NATS)."""

    name = Attribute("Short name for logs and metrics: 'http', 'nats'.")

    def publish(message: Message) -> Deferred[None]:
        """Deliver one message.

        The Deferred fires with None once the consumer acknowledged it (a 2xx,
        a broker flush or a JetStream ack), and fails with :class:`PublishError`
        otherwise.  It never blocks the reactor.
        """

    def start() -> Deferred[None]:
        """Connect (if the transport has connections); fires when usable or failed."""

    def stop() -> Deferred[None]:
        """Flush what can be flushed and disconnect."""

    def health() -> dict[str, Any]:
        """``{"ok": bool, ...details}`` for /healthz."""


class IBatchPublisher(IPublisher):
    """A publisher that also sends a group of messages in one operation."""

    lone_via_publish = Attribute(
        "bool: in batch mode, a group of one message goes through :meth:`IPublisher.publish` "
        "(NATS: the same wire, less work) rather than :meth:`publish_batch` (HTTP: /batch)."
    )

    def publish_batch(messages: Sequence[Message]) -> Deferred[None]:
        """Deliver ``messages`` in order; fires once all are acknowledged.

        Fails (with :class:`PublishError`) if any is not: the whole group is then
        sent again, so consumers must deduplicate by ``messageId``.
        """


class IOutboxStore(Interface):
    """Where messages wait until delivered (memory, or the durable outbox).

    Called on the reactor thread only; none of its methods blocks.
    """

    durable = Attribute("bool: whether what it keeps survives a crash.")

    backlog = Attribute(
        "int: operations accepted and not yet committed.  Backpressure counts them on "
        "top of the messages not yet delivered, so a store that falls behind pauses reads too."
    )

    def append(
        message: Message, confirm: bool = False, replay: bool = False
    ) -> tuple[int, Deferred[None] | None]:
        """Keep ``message``; return its key and, with ``confirm``, a Deferred firing once it is safe.

        ``replay``: a dead letter queued again (not a new receipt).
        """

    def delivered(key: int, message: Message | None = None) -> None:
        """Forget a delivered message."""

    def dead_letter(key: int, attempts: int, error: str) -> None:
        """Set aside a message that kept failing."""

    def watch_progress(callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the reactor thread each time :attr:`backlog` shrank.

        The one delivery queue in front of the store registers here (its
        pressure is re-checked); a store that never has a backlog never calls it.
        """


class IDurableStore(IOutboxStore):
    """A store on disk: opened at service start, recovered, purged and closed."""

    def start() -> None:
        """Open the store (after ``twistd`` forked); raises if it cannot be opened."""

    def pending() -> Deferred[list[tuple[int, Message, float]]]:
        """Undelivered messages of the last run, in order: (key, message, created)."""

    def purge() -> Deferred[int]:
        """Drop what is past its retention; fires with how many."""

    def close() -> Deferred[None]:
        """Commit what is queued and close."""
