"""Cluster mode with real ``ykcproxy`` processes: an instance killed with SIGKILL, its pile moves on.

Three proxy processes on one real ``nats-server -js`` (``--clusterTtl 3``); a
raw-socket pile logs in on A, A is killed, the pile reconnects to B, and C's
REST shows it on B and routes a command with ``?wait=`` to it.  Everything is
polled on the reactor; nothing sleeps and no clock is asserted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.daemon import Daemon, proxy_argv, reactor, spawn
from tests.nats_server import NatsServer
from tests.support import call, command_with_wait, settle, start_consumer
from tests.test_crash import connect  # a raw-socket pile, logged in

PILE = "32010200000001"
#: A second pile on the killed instance that does not reconnect.
LOST = "32010200000002"
TTL = 3.0


@inlineCallbacks
def until_answer(proxy: Any, path: str, holds: Callable[[Any], bool], timeout: float) -> Any:
    """GET ``path`` until ``holds(body)`` (fails after ``timeout`` s of the reactor's clock)."""
    deadline = reactor.seconds() + timeout
    while True:
        answer = yield call(proxy, "GET", path)
        if answer.code == 200 and holds(answer.body):
            return answer.body
        if reactor.seconds() > deadline:
            raise AssertionError(f"GET {path}: still {answer.code} {answer.body!r} after {timeout} s")
        yield settle(0.05)


class KilledInstance(TestCase):
    timeout = 90

    def instance(self, name: str, consumer_url: str, nats_url: str) -> Daemon:
        data_dir = os.path.abspath(self.mktemp())
        cluster = ["--cluster", nats_url, "--instanceId", name, "--clusterTtl", str(TTL)]
        return spawn(self, proxy_argv(consumer_url, data_dir, *cluster))

    def close_at_cleanup(self, link: Any) -> None:
        def close() -> Any:
            if link.connected:
                link.transport.loseConnection()
            return link.lost

        self.addCleanup(close)

    @inlineCallbacks
    def test_pile_of_a_killed_instance_reconnects_and_is_reached_through_another(self) -> Any:
        nats = NatsServer(reactor, jetstream=True)
        self.addCleanup(nats.cleanup)
        yield nats.start()
        consumer, url = start_consumer(self)
        procs = {name: self.instance(name, url, nats.url) for name in "abc"}
        ports = {}
        for name, proc in procs.items():
            ports[name] = yield proc.ready
        rest = {name: SimpleNamespace(http_port=port[1]) for name, port in ports.items()}
        # Every instance's heartbeat is in the bucket: the cluster is up.
        yield until_answer(rest["c"], "/cluster", lambda b: len(b["instances"]) == 3, timeout=20)
        link_a = yield connect(ports["a"][0], PILE)
        self.close_at_cleanup(link_a)
        lost = yield connect(ports["a"][0], LOST)
        self.close_at_cleanup(lost)
        yield until_answer(
            rest["c"],
            "/piles",
            lambda b: sorted((p["id"], p["instance"]) for p in b) == [(PILE, "a"), (LOST, "a")],
            TTL,
        )
        yield command_with_wait(self, rest["b"], link_a, PILE)

        procs["a"].signal("KILL")
        yield procs["a"].ended
        link_b = yield connect(ports["b"][0], PILE)
        self.close_at_cleanup(link_b)
        # The pile that came back is on B; after the TTL without A's heartbeat, A and the
        # pile that did not come back are gone from the others' views.
        for name in "bc":
            yield until_answer(
                rest[name],
                "/piles",
                lambda b: [(p["id"], p["instance"]) for p in b] == [(PILE, "b")],
                3 * TTL,
            )
            yield until_answer(
                rest[name],
                "/cluster",
                lambda b: sorted(i["instance"] for i in b["instances"]) == ["b", "c"],
                TTL,
            )
        gone = yield call(rest["c"], "POST", "/proxy/92", {"id": LOST, "control": 1})
        self.assertEqual(gone.code, 404, gone.body)
        one = yield call(rest["c"], "GET", f"/piles/{PILE}")
        self.assertEqual((one.code, one.body["instance"]), (200, "b"))
        yield command_with_wait(self, rest["c"], link_b, PILE)
        self.assertNotIn(b"Traceback", procs["b"].output + procs["c"].output)
