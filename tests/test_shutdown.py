"""SIGTERM: the real ``ykcproxy`` command sends offline (reason shutdown) and exits 0 within the bound.

The bound is checked without reading a clock: a consumer that never answers
keeps the forwarder's stop pending, and the process must still exit, saying
what it gave up on, long before the test's own timeout.
"""

from __future__ import annotations

import os

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.daemon import proxy_argv, reactor, spawn
from tests.support import start_consumer
from tests.test_crash import connect  # a raw-socket pile, logged in

PILES = ("32010200000001", "32010200000002")


class Sigterm(TestCase):
    timeout = 60

    def start(self, url: str, *extra: str, data_dir: str = ""):
        data_dir = data_dir or os.path.abspath(self.mktemp())
        argv = proxy_argv(url, data_dir, *extra)
        return spawn(self, argv)

    @inlineCallbacks
    def test_offline_for_every_pile_posted_before_exit_0(self):
        consumer, url = start_consumer(self)
        proc = self.start(url)
        pile_port, _ = yield proc.ready
        yield proc.saying(b"SIGHUP reloads")  # running: the signal handlers are in place
        for pile in PILES:
            yield connect(pile_port, pile)
        yield consumer.wait_for(lambda posts: len(consumer.of("online")) >= 2)
        proc.signal("TERM")
        code = yield proc.ended
        self.assertEqual(code, 0, proc.output.decode())
        self.assertNotIn(b"--shutdownTimeout", proc.output)
        self.assertNotIn(b"Traceback", proc.output)
        # Delivered while the process was stopping, not left for a next start.
        offline = consumer.of("offline")
        self.assertEqual(sorted(p.body["id"] for p in offline), sorted(PILES))
        self.assertEqual({p.body["reason"] for p in offline}, {"shutdown"})

    @inlineCallbacks
    def test_offline_refused_at_shutdown_goes_out_after_restart(self):
        consumer, url = start_consumer(self)
        data_dir = os.path.abspath(self.mktemp())
        proc = self.start(url, "-shutdownTimeout", "2", data_dir=data_dir)
        pile_port, _ = yield proc.ready
        yield proc.saying(b"SIGHUP reloads")
        for pile in PILES:
            yield connect(pile_port, pile)
        yield consumer.wait_for(lambda posts: len(consumer.of("online")) >= 2)
        consumer.answer = lambda post: 503 if post.path == "/offline" else 200
        proc.signal("TERM")
        self.assertEqual((yield proc.ended), 0, proc.output.decode())
        self.assertIn(b"they stay in the outbox for the next start", proc.output)
        self.assertEqual(consumer.of("offline"), [])
        consumer.answer = lambda post: 200
        again = self.start(url, data_dir=data_dir)
        yield again.ready
        yield again.saying(b"SIGHUP reloads")
        yield consumer.wait_for(lambda posts: len(consumer.of("offline")) >= 2)
        offline = consumer.of("offline")
        self.assertEqual(sorted(p.body["id"] for p in offline), sorted(PILES))
        self.assertEqual({p.body["reason"] for p in offline}, {"shutdown"})
        again.signal("TERM")
        self.assertEqual((yield again.ended), 0)

    def cancel_held_answers(self) -> None:
        for call in reactor.getDelayedCalls():
            if "Consumer.render_POST" in getattr(call.func, "__qualname__", ""):
                call.cancel()

    @inlineCallbacks
    def test_stuck_consumer_exits_at_the_bound(self):
        consumer, url = start_consumer(self)
        consumer.delay = 3600.0  # answers nothing before the test ends
        self.addCleanup(self.cancel_held_answers)
        proc = self.start(url, "-shutdownTimeout", "1", "-httpTimeout", "3600")
        pile_port, _ = yield proc.ready
        yield proc.saying(b"SIGHUP reloads")  # running: the signal handlers are in place
        yield connect(pile_port, PILES[0])
        yield consumer.wait_for(lambda posts: len(posts) >= 1)  # the online POST, held in flight
        proc.signal("TERM")
        code = yield proc.ended
        self.assertEqual(code, 0, proc.output.decode())
        self.assertIn(b"not finished after 1 s (--shutdownTimeout), stopping anyway", proc.output)
        self.assertIn(b"still pending:", proc.output)
