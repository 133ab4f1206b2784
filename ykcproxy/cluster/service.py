"""Cluster mode (``--cluster``): this instance's piles in the shared bucket, and takeovers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.logger import Logger

from ykcproxy.cluster import redact_servers
from ykcproxy.cluster.registry_kv import Directory, KvLink, PileEntry, route_prefix
from ykcproxy.config import ProxyConfig
from ykcproxy.pile.registry import MOVED
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.pile.session import PileSession

__all__ = [
    "FRAMES_LOOKUP",
    "ROUTE_GRACE",
    "SESSION_LIST",
    "SESSION_LOOKUP",
    "SESSION_TIMEOUT",
    "ClusterService",
]

#: Seconds beyond a command's wait the holding instance may take to answer (else 503).
ROUTE_GRACE = 5.0

#: The request asking an instance for an order: ``ykcproxy.route.<hex instance>.sessions``.
SESSION_LOOKUP = "sessions"

#: The request asking an instance for its page of ``GET /sessions``:
#: ``ykcproxy.route.<hex instance>.sessions-list``, payload ``{"query": {<the query arguments>}}``.
SESSION_LIST = "sessions-list"

#: Seconds each instance has to answer a session lookup (no answer counts as "not here").
SESSION_TIMEOUT = 2.0

#: The request asking the holding instance for a pile's frame history:
#: ``ykcproxy.route.<hex instance>.frames``, payload ``{"id": <pile>, "limit": <n or null>}``.
FRAMES_LOOKUP = "frames"

log = Logger()


class ClusterService(Service):
    """Keeps the bucket current with this instance's piles and closes piles taken elsewhere."""

    def __init__(self, config: ProxyConfig, reactor: Any, piles: PileServerFactory) -> None:
        self.me = config.instance_name
        self.piles = piles
        self.directory = Directory(self.me, on_moved=self.moved)
        self.link = KvLink(
            reactor,
            config.cluster,
            self.directory,
            self.entries,
            config.cluster_ttl,
            config.username,
            config.password,
        )
        #: This instance's own order lookup (``tradeSeq`` -> the order or None), set with the REST API.
        self.local_session: Callable[[str], Deferred[dict[str, Any] | None]] | None = None
        #: This instance's page of a ``GET /sessions`` query (its arguments), set with the REST API.
        self.local_list: Callable[[dict[str, str]], Deferred[dict[str, Any]]] | None = None
        #: This instance's frames of a pile (id, limit) -> ``(status, answer)``, set with the console.
        self.local_frames: Callable[[str, int | None], tuple[int, dict[str, Any]]] | None = None
        #: The piles watched across instances (:class:`~ykcproxy.cluster.watch.RemoteWatches`),
        #: set with the console; started and stopped with this service.
        self.watches: Any = None
        registry = piles.registry
        online, offline = registry.on_online, registry.on_offline

        def on_online(session: PileSession) -> None:
            online(session)
            self.link.put(self.entry(session))

        def on_offline(session: PileSession, reason: str) -> None:
            offline(session, reason)
            if reason != MOVED and self.directory.holder(session.pile_id) in (self.me, None):
                self.link.delete(session.pile_id)

        registry.on_online, registry.on_offline = on_online, on_offline

    def entry(self, session: PileSession) -> PileEntry:
        """The bucket entry of one of this instance's piles."""
        return PileEntry(session.pile_id, self.me, session.connection.remote, session.connected_at)

    def moved(self, pile_id: str, since: float) -> None:
        """Another instance holds ``pile_id`` since ``since``: close ours if it is older."""
        session = self.piles.registry.get(pile_id)
        if session is None:
            return
        if session.connected_at <= since:
            self.piles.registry.move_away(pile_id)
        else:
            # A stale write of an instance that has not yet seen our login: ours is newer.
            self.link.put(self.entry(session))

    def entries(self) -> list[PileEntry]:
        """Every pile this instance holds and no other instance took over later."""
        return [self.entry(s) for s in self.piles.registry if not self._taken(s)]

    def _taken(self, session: PileSession) -> bool:
        entry = self.directory.piles.get(session.pile_id)
        return entry is not None and entry.instance != self.me and entry.since >= session.connected_at

    @inlineCallbacks
    def route(self, pile_id: str, ft: str, body: Any, wait: float | None) -> Any:
        """Run a command on the instance holding ``pile_id``: ``(status, answer)`` as REST gives."""
        holder = self.directory.holder(pile_id)
        if holder is None or holder == self.me:
            return 404, {"message": f"pile {pile_id} is not connected"}
        payload = dict(body) if isinstance(body, dict) else body
        if wait is not None and isinstance(payload, dict):
            payload["wait"] = wait
        answer = yield self._ask_holder(holder, pile_id, ft, payload, (wait or 0) + ROUTE_GRACE)
        return answer

    def _ask_holder(
        self, holder: str, pile_id: str, name: str, payload: Any, timeout: float
    ) -> Deferred[tuple[int, dict[str, Any]]]:
        """A request on ``holder``'s route subject ``name``: its ``(status, answer)``, or a 503
        when it does not answer within ``timeout``."""
        d = self.link.request(f"{route_prefix(holder)}.{name}", json.dumps(payload).encode(), timeout)

        def got(data: bytes) -> tuple[int, dict[str, Any]]:
            answer = json.loads(data)
            return int(answer.pop("status")), answer

        def failed(failure: Any) -> tuple[int, dict[str, Any]]:
            failure.trap(RuntimeError)
            why = failure.getErrorMessage()
            return 503, {"message": f"instance {holder} holding pile {pile_id} did not answer: {why}"}

        return d.addCallbacks(got, failed)

    def find_session(self, trade_seq: str) -> Deferred[dict[str, Any] | None]:
        """Ask every other live instance for an order: the first that has it wins, else None.

        One request per instance on its route subject, each bounded by :data:`SESSION_TIMEOUT`;
        an instance that does not answer in time (or is gone) counts as not having it.
        """
        result: Deferred[dict[str, Any] | None] = Deferred()
        others = [name for name in self.directory.instances if name != self.me]
        pending = [len(others)]
        if not others:
            result.callback(None)
            return result
        payload = json.dumps({"tradeSeq": trade_seq}).encode()

        def got(data: bytes) -> None:
            try:
                answer = json.loads(data)
            except ValueError:
                return
            if not result.called and isinstance(answer, dict) and answer.get("status") == 200:
                result.callback(answer.get("session"))

        def done(_: object) -> None:
            pending[0] -= 1
            if pending[0] == 0 and not result.called:
                result.callback(None)

        for name in others:
            d = self.link.request(f"{route_prefix(name)}.{SESSION_LOOKUP}", payload, SESSION_TIMEOUT)
            d.addCallback(got)
            d.addErrback(lambda f: None)
            d.addBoth(done)
        return result

    @inlineCallbacks
    def answer_session(self, payload: bytes) -> Any:
        """Another instance's session lookup: ``(200, {"session": order})`` or ``(404, ...)``."""
        try:
            trade_seq = str(json.loads(payload)["tradeSeq"])
        except (ValueError, KeyError, TypeError):
            return 400, {"message": 'body: must be {"tradeSeq": ...}'}
        found = None
        if self.local_session is not None:
            try:
                found = yield self.local_session(trade_seq)
            except ValueError as e:
                return 400, {"message": str(e)}
        if found is None:
            return 404, {"message": f"no session {trade_seq} on {self.me}"}
        return 200, {"session": found}

    def list_sessions(self, args: dict[str, str]) -> Deferred[tuple[list[dict[str, Any]], list[str]]]:
        """Ask every other live instance for its page of a ``GET /sessions`` query.

        Fires with the pages and the names of the instances that gave none within
        :data:`SESSION_TIMEOUT` (gone, or not answering).
        """
        others = [name for name in self.directory.instances if name != self.me]
        payload = json.dumps({"query": args}).encode()

        def ask(name: str) -> Deferred[Any]:
            d = self.link.request(f"{route_prefix(name)}.{SESSION_LIST}", payload, SESSION_TIMEOUT)

            def got(data: bytes) -> Any:
                answer = json.loads(data)
                if not isinstance(answer, dict) or answer.get("status") != 200:
                    raise ValueError(f"instance {name} answered {str(answer)[:200]}")
                return answer

            return d.addCallback(got)

        def gathered(results: list[tuple[bool, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
            pages = [r for ok, r in results if ok]
            missing = [name for name, (ok, _) in zip(others, results, strict=True) if not ok]
            for name, (ok, failure) in zip(others, results, strict=True):
                if not ok:
                    log.warn(
                        "cluster: no sessions from {instance}: {why}",
                        instance=name,
                        why=failure.getErrorMessage(),
                    )
            return pages, missing

        return DeferredList([ask(name) for name in others], consumeErrors=True).addCallback(gathered)

    @inlineCallbacks
    def answer_session_list(self, payload: bytes) -> Any:
        """Another instance's ``GET /sessions`` query: ``(200, {"sessions": [...], "next": ...})``."""
        try:
            args = json.loads(payload)["query"]
            if not isinstance(args, dict):
                raise TypeError
            args = {str(k): str(v) for k, v in args.items()}
        except (ValueError, KeyError, TypeError):
            return 400, {"message": 'body: must be {"query": {...}}'}
        if self.local_list is None:
            return 200, {"sessions": [], "next": None}
        try:
            found = yield self.local_list(args)
        except ValueError as e:
            return 400, {"message": str(e)}
        return 200, found

    def frames_elsewhere(
        self, pile_id: str, limit: int | None
    ) -> Deferred[tuple[int, dict[str, Any]]] | None:
        """Ask the instance holding ``pile_id`` for its frames; None if no other instance holds it.

        Fires with ``(status, answer)`` as ``GET /piles/<id>/frames`` gives them there, or a 503
        when the holder does not answer within :data:`SESSION_TIMEOUT`.
        """
        holder = self.directory.holder(pile_id)
        if holder is None or holder == self.me:
            return None
        return self._ask_holder(
            holder, pile_id, FRAMES_LOOKUP, {"id": pile_id, "limit": limit}, SESSION_TIMEOUT
        )

    def answer_frames(self, payload: bytes) -> Deferred[tuple[int, dict[str, Any]]]:
        """Another instance's ``frames`` request: this instance's answer for the pile."""
        try:
            asked = json.loads(payload)
            pile_id, limit = str(asked["id"]), asked.get("limit")
            if limit is not None and (not isinstance(limit, int) or limit < 1):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return succeed(
                (400, {"message": 'body: must be {"id": <pile>, "limit": <positive integer or null>}'})
            )
        if self.local_frames is None:
            return succeed((404, {"message": "the frame history is off (--frameHistory 0)"}))
        return succeed(self.local_frames(pile_id, limit))

    def other_piles(self) -> list[dict[str, Any]]:
        """The piles other instances hold, as ``GET /piles`` shows them."""
        return [
            {"id": e.pile_id, "instance": e.instance, "remote": e.remote, "connectedAt": int(e.since * 1000)}
            for e in self.directory.held()
            if e.instance != self.me
        ]

    def view(self) -> dict[str, Any]:
        """``GET /cluster``: every instance with its pile count and last refresh."""
        counts = self.directory.counts()
        instances = [
            {"instance": b.instance, "piles": counts.get(b.instance, 0), "refreshedAt": int(b.at * 1000)}
            for b in sorted(self.directory.instances.values(), key=lambda b: b.instance)
        ]
        return {"enabled": True, "instance": self.me, "instances": instances}

    def startService(self) -> None:
        """Connect in the background; a failure is logged."""
        super().startService()
        log.info(
            "cluster: instance {instance} on {server}",
            instance=self.me,
            server=redact_servers(self.link.server),
        )
        self.link.start().addErrback(lambda f: None)
        if self.watches is not None:
            self.watches.start()

    def stopService(self) -> None:
        """Stop refreshing (the entries expire after the TTL or are taken over)."""
        super().stopService()
        if self.watches is not None:
            self.watches.stop()
        self.link.stop()
