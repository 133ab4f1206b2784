"""The first run an operator makes: ``ykcproxy`` with no consumer, the simulator pointed at it.

Real processes on loopback: the ``ykcproxy`` command (standalone: the auto
answers on, a warning says so) and ``ykcproxy-sim``; a raw-socket pile sends
a transaction record, which is stored and readable but not confirmed.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.daemon import ChildOutput, command, reactor, spawn
from tests.support import call, settle
from tests.test_crash import connect
from ykcproxy.wire.examples import example


class FirstRun(TestCase):
    timeout = 60

    @inlineCallbacks
    def piles(self, proxy: Any) -> Any:
        answer = yield call(proxy, "GET", "/piles")
        self.assertEqual(answer.code, 200)
        return [p for p in answer.body if p["loggedIn"]]

    @inlineCallbacks
    def test_simulator_piles_come_online_and_records_are_kept_unconfirmed(self):
        data_dir = os.path.abspath(self.mktemp())
        argv = [command("ykcproxy"), "--host", "127.0.0.1", "--tcpPort", "0", "--httpPort", "0"]
        proc = spawn(self, [*argv, "--dataDir", data_dir])
        pile_port, http_port = yield proc.ready
        self.assertIn(b"no consumer", proc.output.lower())  # the standalone warning
        proxy = SimpleNamespace(http_port=http_port)

        sim = ChildOutput()
        sim_argv = [command("ykcproxy-sim"), "--port", str(pile_port), "--piles", "3"]
        sim_argv += ["--ramp", "0", "--warmup", "0", "--duration", "120"]
        reactor.spawnProcess(sim, sim_argv[0], sim_argv, env=dict(os.environ))

        def stop_sim() -> Deferred[Any]:
            if not sim.ended.called:
                sim.transport.signalProcess("KILL")  # type: ignore[union-attr]
            return sim.ended

        self.addCleanup(stop_sim)
        online: list[Any] = []
        for _ in range(500):
            online = yield self.piles(proxy)
            if len(online) == 3 or sim.ended.called:
                break
            yield settle(0.05)
        self.assertEqual(len(online), 3, sim.output.decode(errors="replace"))

        pile = "32010200000099"
        link = yield connect(pile_port, pile)  # its login answered by the standalone default
        record = example(0x3B, pile)
        link.send(0x3B, record)
        path = f"/transactions/{record['tradeSeq']}"
        answer = None
        for _ in range(200):
            answer = yield call(proxy, "GET", path)
            if answer.code == 200:
                break
            yield settle(0.05)
        assert answer is not None
        self.assertEqual(answer.code, 200, answer.body)
        self.assertEqual(answer.body["tradeSeq"], record["tradeSeq"])
        link.send(0x03, example(0x03, pile))
        yield link.expect(0x04)  # anything the record caused was written before this answer
        self.assertNotIn(0x40, [got.code for got in link.unclaimed])  # money is never confirmed by default
