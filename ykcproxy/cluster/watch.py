"""A console on one instance watching a pile another instance holds: its frames relayed over NATS.

The watching instance (the console's ``GET /events?pile=<id>``) subscribes to
``ykcproxy.frames.<id>`` and asks the holder, on its route subject
(``ykcproxy.route.<hex>.watch``, payload ``{"id": <pile>, "seconds": 30}``), to
stream the pile's frames there for the next 30 seconds; it asks again every
10 seconds while a console watches, each time of the instance that holds the
pile then (a pile that moved is followed within that time).  The holder
streams a pile while a console of its own or another instance's request
wants it, and stops by itself when no request renewed it in time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ykcproxy.cluster.registry_kv import Directory, KvLink, route_prefix
from ykcproxy.cluster.shared import SharedConnection, Subscriber
from ykcproxy.jsonenc import dumps

__all__ = ["RENEW_SECONDS", "WATCH_REQUEST", "WATCH_SECONDS", "RemoteWatches", "frame_subject"]

#: The request asking the holding instance to stream a pile's frames (on its route subject).
WATCH_REQUEST = "watch"

#: Seconds a holder streams a pile after a request.
WATCH_SECONDS = 30.0

#: Seconds between two requests of a watching instance (also how soon a moved pile is followed).
RENEW_SECONDS = 10.0

#: Seconds the holder has to answer a request (it is asked again at the next renewal anyway).
ASK_TIMEOUT = 2.0

#: The longest streaming a request may ask for.
MAX_SECONDS = 300.0

log = Logger()


def frame_subject(pile_id: str) -> str:
    """The subject a holder streams a pile's frames on."""
    return "ykcproxy.frames." + pile_id


class RemoteWatches:
    """The piles watched across instances: relayed here, and streamed from here.

    :param history_watch: turns the streaming of a pile's frame ring on or off
        (:meth:`~ykcproxy.console.history.FrameHistory.watch`).
    :param publish_local: hands a relayed frame event to this instance's consoles.
    """

    def __init__(
        self,
        reactor: Any,
        directory: Directory,
        link: KvLink,
        history_watch: Callable[[str, bool], None],
        publish_local: Callable[[str, dict[str, Any]], None],
        seconds: float = WATCH_SECONDS,
        renew: float = RENEW_SECONDS,
    ) -> None:
        self.reactor = reactor
        self.directory = directory
        self.link = link
        self.shared: SharedConnection = link.shared
        self.history_watch = history_watch
        self.publish_local = publish_local
        self.seconds = seconds
        self.renew = renew
        #: Piles the consoles of this instance watch.
        self.local: set[str] = set()
        #: Piles other instances asked this one to stream, and until when.
        self.remote: dict[str, float] = {}
        #: The relay subscriptions, by pile (reactor thread): the subscriber offered each client.
        self._relays: dict[str, Subscriber] = {}
        #: The NATS subscriptions of the relays (loop thread): pile -> (client, subscription).
        self._subscriptions: dict[str, tuple[Any, Any]] = {}
        self._loop = LoopingCall(self.tick)
        self._loop.clock = reactor

    # -- both sides ----------------------------------------------------------------------
    def start(self) -> None:
        """Renew the requests and expire the streams every ``renew`` seconds."""
        if not self._loop.running:
            self._loop.start(self.renew, now=False)

    def stop(self) -> None:
        """Stop renewing; the holders stop streaming after ``seconds``."""
        if self._loop.running:
            self._loop.stop()
        for pile_id in list(self._relays):
            self._unrelay(pile_id)

    def local_watch(self, pile_id: str, watching: bool) -> None:
        """A console here started (or stopped) watching ``pile_id`` (the event hub's ``on_watch``)."""
        if watching:
            self.local.add(pile_id)
            self._apply(pile_id)
            self._ask(pile_id)
        else:
            self.local.discard(pile_id)
            self._apply(pile_id)
            self._unrelay(pile_id)

    def tick(self) -> None:
        """Expire the streams no request renewed; ask the holders of the piles watched here again."""
        now = self.reactor.seconds()
        for pile_id, until in list(self.remote.items()):
            if until <= now:
                del self.remote[pile_id]
                self._apply(pile_id)
        for pile_id in list(self.local):
            self._ask(pile_id)

    def _apply(self, pile_id: str) -> None:
        self.history_watch(pile_id, pile_id in self.local or pile_id in self.remote)

    # -- the holder's side ---------------------------------------------------------------
    def answer_watch(self, payload: bytes) -> Deferred[tuple[int, dict[str, Any]]]:
        """Another instance's request to stream a pile: streamed for the seconds asked."""
        try:
            asked = json.loads(payload)
            pile_id, seconds = str(asked["id"]), float(asked.get("seconds", self.seconds))
            if not 0 < seconds <= MAX_SECONDS:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            message = f'body: must be {{"id": <pile>, "seconds": <more than 0, at most {MAX_SECONDS:g}>}}'
            return succeed((400, {"message": message}))
        until = self.reactor.seconds() + seconds
        new = pile_id not in self.remote
        self.remote[pile_id] = max(until, self.remote.get(pile_id, 0.0))
        if new:
            self._apply(pile_id)
        return succeed((200, {"id": pile_id, "subject": frame_subject(pile_id), "seconds": seconds}))

    def frame(self, pile_id: str, event: dict[str, Any]) -> None:
        """A frame event of a streamed pile: published for the instances that asked for it."""
        if pile_id in self.remote:
            self.shared.publish(frame_subject(pile_id), dumps(event))

    # -- the watching side ---------------------------------------------------------------
    def _ask(self, pile_id: str) -> None:
        holder = self.directory.holder(pile_id)
        if holder is None or holder == self.directory.me:
            return
        self._relay(pile_id)
        payload = json.dumps({"id": pile_id, "seconds": self.seconds}).encode()
        d = self.link.request(f"{route_prefix(holder)}.{WATCH_REQUEST}", payload, ASK_TIMEOUT)
        d.addErrback(
            lambda f: log.debug(
                "cluster: {instance} did not take the watch of {pile}: {why}",
                instance=holder,
                pile=pile_id,
                why=f.getErrorMessage(),
            )
        )

    def _relay(self, pile_id: str) -> None:
        if pile_id in self._relays:
            return
        subscriptions = self._subscriptions

        async def subscribe(client: Any) -> None:  # loop thread
            held = subscriptions.get(pile_id)
            if held is not None and held[0] is client:
                return

            async def on_message(msg: Any) -> None:
                self.reactor.callFromThread(self._relayed, pile_id, msg.data)

            subscription = await client.subscribe(frame_subject(pile_id), cb=on_message)
            if self._relays.get(pile_id) is not subscribe:  # unwatched meanwhile
                await subscription.unsubscribe()
                return
            subscriptions[pile_id] = (client, subscription)

        self._relays[pile_id] = subscribe
        self.shared.attach(subscribe)

    def _unrelay(self, pile_id: str) -> None:
        subscribe = self._relays.pop(pile_id, None)
        if subscribe is None:
            return
        self.shared.detach(subscribe)
        subscriptions = self._subscriptions

        async def unsubscribe() -> None:  # loop thread
            held = subscriptions.pop(pile_id, None)
            if held is not None:
                try:
                    await held[1].unsubscribe()
                except Exception:  # noqa: BLE001 - the connection is gone anyway
                    pass

        self.shared.run(unsubscribe)

    def _relayed(self, pile_id: str, data: bytes) -> None:
        if pile_id not in self.local:
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict):
            self.publish_local(pile_id, event)
