"""Cluster mode against a real ``nats-server -js``: the shared pile registry and takeovers."""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.nats_server import NatsServer
from tests.support import call, command_with_wait, login, reactor, start_consumer, start_proxy, until
from ykcproxy.cluster.registry_kv import Directory, InstanceBeat, KvLink, PileEntry, instance_key, pile_key
from ykcproxy.wire.examples import example

PILE = "32010200000001"


@inlineCallbacks
def two_instances(test: TestCase, **settings: Any) -> Any:
    """A real ``nats-server -js``, a webhook consumer and instances ``a`` and ``b`` on it."""
    nats = NatsServer(reactor, jetstream=True)
    test.addCleanup(nats.cleanup)
    yield nats.start()
    test.nats = nats  # type: ignore[attr-defined]
    consumer, url = start_consumer(test)
    common = {"servers": url, "cluster": nats.url, "cluster_ttl": 3.0, "auto_verification": True, **settings}
    a = yield start_proxy(test, instance_id="a", **common)
    b = yield start_proxy(test, instance_id="b", **common)
    yield a.cluster.link.started
    yield b.cluster.link.started
    return consumer, a, b


class DirectoryUpdates(TestCase):
    def test_other_holders_are_reported(self) -> None:
        moved: list[tuple[str, float]] = []
        d = Directory("a", on_moved=lambda pile, since: moved.append((pile, since)))
        d.update(instance_key("b"), InstanceBeat("b", 1, 0.0).encode())
        d.update("pile." + PILE, PileEntry(PILE, "a", "10.0.0.1:5", 1.0).encode())
        d.update("pile." + PILE, PileEntry(PILE, "b", "10.0.0.2:5", 2.0).encode())
        self.assertEqual(moved, [(PILE, 2.0)])
        self.assertEqual(d.holder(PILE), "b")
        self.assertEqual(d.counts(), {"b": 1})
        d.update("pile." + PILE, None)
        self.assertIsNone(d.holder(PILE))

    def test_instance_keys_hold_no_colon(self) -> None:
        self.assertNotIn(":", instance_key("host:27600"))

    def test_piles_count_while_their_instance_is_heard(self) -> None:
        d = Directory("a", on_moved=lambda pile, since: None, ttl=15.0)
        d.update(instance_key("b"), InstanceBeat("b", 1, 100.0).encode(), now=100.0)
        d.update("pile." + PILE, PileEntry(PILE, "b", "10.0.0.2:5", 90.0).encode(), now=100.0)
        self.assertEqual((d.holder(PILE), d.counts()), ("b", {"b": 1}))
        self.assertEqual(d.expire(115.0), [])
        self.assertEqual(d.expire(115.5), ["b"])
        self.assertEqual((d.holder(PILE), d.counts(), d.held(), d.instances), (None, {}, [], {}))
        # Its heartbeat again (a partition healed): its piles count again.
        d.update(instance_key("b"), InstanceBeat("b", 1, 130.0).encode(), now=130.0)
        self.assertEqual(d.holder(PILE), "b")
        # A heartbeat the watch found at start counts from when it was written.
        d.update(instance_key("c"), InstanceBeat("c", 0, 80.0).encode(), now=131.0, initial=True)
        self.assertEqual(d.expire(131.0), ["c"])
        # This instance's own entries count without a heartbeat of its own.
        d.update("pile.32010200000002", PileEntry("32010200000002", "a", "10.0.0.1:5", 1.0).encode())
        self.assertEqual(d.holder("32010200000002"), "a")

    def test_the_entries_of_an_instance_gone_for_the_bucket_ttl_are_forgotten(self) -> None:
        d = Directory("a", on_moved=lambda pile, since: None, ttl=15.0, lifetime=3600.0)
        d.update(instance_key("b"), InstanceBeat("b", 1, 100.0).encode(), now=100.0)
        d.update(instance_key("c"), InstanceBeat("c", 1, 100.0).encode(), now=100.0)
        d.update("pile." + PILE, PileEntry(PILE, "b", "10.0.0.2:5", 90.0).encode(), now=100.0)
        other = "32010200000002"
        d.update("pile." + other, PileEntry(other, "c", "10.0.0.3:5", 90.0).encode(), now=100.0)
        self.assertEqual(d.expire(116.0), ["b", "c"])
        d.update(instance_key("c"), InstanceBeat("c", 1, 200.0).encode(), now=200.0)  # c came back
        for now in range(216, 3717, 500):
            d.update(instance_key("c"), InstanceBeat("c", 1, now).encode(), now=now)
            d.expire(now)
        self.assertIn(PILE, d.piles, "kept for the bucket's TTL")
        d.expire(3717.0)
        self.assertEqual(set(d.piles), {other})
        self.assertEqual(d.dropped, {})

    def test_each_instance_is_waited_for_as_long_as_its_heartbeat_says(self) -> None:
        d = Directory("a", on_moved=lambda pile, since: None, ttl=15.0)
        d.update(instance_key("b"), InstanceBeat("b", 0, 100.0, ttl=60.0).encode(), now=100.0)
        d.update(instance_key("c"), InstanceBeat("c", 0, 100.0, ttl=5.0).encode(), now=100.0)
        d.update(instance_key("old"), b'{"instance": "old", "piles": 0, "at": 100.0}', now=100.0)
        self.assertEqual(d.expire(106.0), ["c"])
        self.assertEqual(d.expire(116.0), ["old"])  # a heartbeat without a TTL: this instance's
        self.assertEqual(d.expire(159.0), [])
        self.assertEqual(d.expire(161.0), ["b"])
        self.assertIsNone(InstanceBeat.decode(b'{"instance": "x", "piles": 0, "at": 1, "ttl": -3}').ttl)


class FakeLoop:
    """Stands for the NATS thread's asyncio loop: records the writes handed to it."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, bytes | None]] = []

    def call_soon_threadsafe(self, f: Any, key: str, value: bytes | None) -> None:
        self.writes.append((key, value))


class Refresh(TestCase):
    def link(self, piles: int) -> tuple[KvLink, FakeLoop, task.Clock]:
        clock = task.Clock()
        clock.advance(1000)
        directory = Directory("a", on_moved=lambda pile, since: None)
        entries = [PileEntry(f"{32010200000001 + i:014d}", "a", "10.0.0.1:5", 1.0) for i in range(piles)]
        for e in entries:
            directory.update(pile_key(e.pile_id), e.encode(), clock.seconds())
        link = KvLink(clock, "nats://127.0.0.1:1", directory, lambda: list(entries), ttl=15.0)
        loop = FakeLoop()
        link._loop = loop  # type: ignore[assignment]
        return link, loop, clock

    def test_the_periodic_writes_are_the_heartbeat_and_a_slow_rewrite(self) -> None:
        link, loop, clock = self.link(300)
        link._ready()
        self.assertEqual(len(loop.writes), 301)  # at start: the heartbeat and every entry
        del loop.writes[:]
        clock.pump([0.5] * 30)  # 15 s: three heartbeats, and a few entries of the slow rewrite
        beats = [k for k, _ in loop.writes if k == instance_key("a")]
        self.assertEqual(len(beats), 3)
        self.assertLess(len(loop.writes) - len(beats), 300 * 15 / (link.lifetime / 3) + 30)
        self.assertEqual(InstanceBeat.decode(loop.writes[-1][1] or b"").piles, 300)
        # Within every third of the lifetime, every entry is rewritten once.
        cycle = int(link.lifetime / 3 / 0.5)
        clock.pump([0.5] * (cycle - 30))
        del loop.writes[:]
        clock.pump([0.5] * cycle)
        rewritten = [k for k, _ in loop.writes if k.startswith("pile.")]
        self.assertEqual((len(rewritten), len(set(rewritten))), (300, 300))
        link._refresh.stop()

    def test_a_few_piles_are_not_rewritten_more_often(self) -> None:
        link, loop, clock = self.link(3)
        link._ready()
        del loop.writes[:]
        clock.pump([0.5] * (int(link.lifetime / 3 / 0.5) + 3))  # one cycle, and its 3 ticks
        rewritten = [k for k, _ in loop.writes if k.startswith("pile.")]
        self.assertEqual(sorted(rewritten), sorted(pile_key(f"{32010200000001 + i:014d}") for i in range(3)))
        link._refresh.stop()

    def test_a_silent_instance_drops_out_after_the_ttl(self) -> None:
        link, loop, clock = self.link(1)
        link._ready()
        link.directory.update(
            instance_key("b"), InstanceBeat("b", 0, clock.seconds()).encode(), clock.seconds()
        )
        clock.pump([0.5] * 30)
        self.assertIn("b", link.directory.instances)
        clock.pump([0.5] * 2)
        self.assertNotIn("b", link.directory.instances)
        self.assertEqual(link.directory.instances, {})
        link._refresh.stop()

    def test_a_failed_write_is_redone_from_the_current_state(self) -> None:
        link, loop, clock = self.link(2)
        link._ready()
        del loop.writes[:]
        gone = "pile.32010200000099"
        link._failed_keys |= {pile_key("32010200000001"), gone}
        clock.advance(0.5)
        self.assertIn((gone, None), loop.writes)
        self.assertIn(pile_key("32010200000001"), [k for k, v in loop.writes if v is not None])
        link._refresh.stop()


class Takeover(TestCase):
    timeout = 40

    @inlineCallbacks
    def test_pile_moving_between_live_instances(self) -> Any:
        consumer, a, b = yield two_instances(self)
        yield login(self, a, PILE)
        yield until(lambda: b.cluster.directory.holder(PILE) == "a")
        link_b = yield login(self, b, PILE)
        yield until(lambda: a.piles.registry.get(PILE) is None)
        yield until(lambda: a.cluster.directory.holder(PILE) == "b")
        yield until(lambda: b.cluster.directory.counts() == {"b": 1})
        yield until(lambda: a.cluster.directory.counts() == {"b": 1})
        yield until(lambda: len([p for p in consumer.posts if p.path == "/online"]) == 2)
        self.assertEqual([p for p in consumer.posts if p.path == "/offline"], [])
        yield until(lambda: len(a.cluster.view()["instances"]) == 2)
        # A command through A's REST reaches the pile on B, with its wait reply.
        yield b.routed_commands.commands._started
        yield command_with_wait(self, a, link_b, PILE)
        listed = yield call(a, "GET", "/piles")
        self.assertEqual([(p["id"], p["instance"]) for p in listed.body], [(PILE, "b")])
        one = yield call(b, "GET", f"/piles/{PILE}")
        self.assertEqual(one.body["instance"], "b")
        missing = yield call(a, "POST", "/proxy/92", {"id": "32010200000009", "control": 1})
        self.assertEqual(missing.code, 404)
        answer = yield call(a, "GET", "/cluster")
        self.assertEqual(answer.body["instance"], "a")
        self.assertEqual(sorted(i["instance"] for i in answer.body["instances"]), ["a", "b"])


class Restart(TestCase):
    timeout = 40

    @inlineCallbacks
    def test_entries_left_by_a_previous_run_of_the_same_name_are_deleted(self) -> Any:
        nats = NatsServer(reactor, jetstream=True)
        self.addCleanup(nats.cleanup)
        yield nats.start()
        common = {"cluster": nats.url, "cluster_ttl": 3.0, "auto_verification": True}
        a = yield start_proxy(self, instance_id="a", **common)
        yield a.cluster.link.started
        # What a killed "b" left behind: an entry for a pile it held, and one another instance took.
        left, taken = "32010200000007", "32010200000008"
        a.cluster.link.put(PileEntry(left, "b", "10.0.0.2:5", 1.0))
        a.cluster.link.put(PileEntry(taken, "b", "10.0.0.2:5", 1.0))
        yield until(lambda: {left, taken} <= set(a.cluster.directory.piles))
        b = yield start_proxy(self, instance_id="b", **common)
        a.cluster.link.put(PileEntry(taken, "a", "10.0.0.1:5", 2.0))  # may land before b's delete
        yield b.cluster.link.started
        yield until(lambda: left not in a.cluster.directory.piles)
        yield until(lambda: taken in b.cluster.directory.piles)
        self.assertEqual(b.cluster.directory.holder(taken), "a")
        self.assertNotIn(left, b.cluster.directory.piles)

    @inlineCallbacks
    def test_a_stopping_instance_drops_out_at_once(self) -> Any:
        _, a, b = yield two_instances(self, cluster_ttl=600.0)  # the TTL does not run out here
        yield until(lambda: "b" in a.cluster.directory.instances)
        b.cluster.stopService()  # deletes its heartbeat
        yield until(lambda: "b" not in a.cluster.directory.instances)
        self.assertTrue(a.cluster.link._refresh.running)


class Deletes(TestCase):
    timeout = 40

    @inlineCallbacks
    def test_a_clean_stop_removes_the_entries_of_its_piles(self) -> Any:
        _, a, b = yield two_instances(self, cluster_ttl=600.0)
        yield login(self, b, PILE)
        yield until(lambda: a.cluster.directory.holder(PILE) == "b")
        yield b.stopService()
        yield until(lambda: PILE not in a.cluster.directory.piles)
        self.assertNotIn("b", a.cluster.directory.instances)

    @inlineCallbacks
    def test_a_delete_leaves_the_entry_another_instance_wrote_since(self) -> Any:
        _, a, b = yield two_instances(self, cluster_ttl=600.0)
        a.cluster.link.put(PileEntry(PILE, "a", "10.0.0.1:5", 1.0))
        yield until(lambda: pile_key(PILE) in a.cluster.link._written)
        b.cluster.link.put(PileEntry(PILE, "b", "10.0.0.2:5", 2.0))
        yield until(lambda: a.cluster.directory.holder(PILE) == "b")
        a.cluster.link.delete(PILE)
        # A later write of a's, seen by the watch, went out after the delete on the same connection.
        a.cluster.link.put(PileEntry("32010200000009", "a", "10.0.0.1:6", 3.0))
        yield until(lambda: "32010200000009" in b.cluster.directory.piles)
        self.assertEqual(b.cluster.directory.holder(PILE), "b")
        self.assertEqual(a.cluster.directory.holder(PILE), "b")


class FramesAcrossInstances(TestCase):
    timeout = 40

    @inlineCallbacks
    def test_the_frames_of_a_pile_held_elsewhere_are_the_holders(self) -> Any:
        _, a, b = yield two_instances(self)
        link = yield login(self, b, PILE)
        link.send(0x03, example(0x03, PILE))
        yield link.expect(0x04)
        yield until(lambda: a.cluster.directory.holder(PILE) == "b")
        here = yield call(b, "GET", f"/piles/{PILE}/frames")
        self.assertEqual(here.code, 200, here.body)
        there = yield call(a, "GET", f"/piles/{PILE}/frames")
        self.assertEqual((there.code, there.body), (200, here.body))
        self.assertEqual([f["code"] for f in there.body["frames"]], ["01", "02", "03", "04"])
        last = yield call(a, "GET", f"/piles/{PILE}/frames?limit=1")
        self.assertEqual(last.body["frames"], here.body["frames"][-1:])
        bad = yield call(a, "GET", f"/piles/{PILE}/frames?limit=0")
        self.assertEqual(bad.code, 400, bad.body)
        missing = yield call(a, "GET", "/piles/32010200000009/frames")
        self.assertEqual(missing.code, 404, missing.body)
        # A holder that does not answer (gone without a word, still in the directory): a 503.
        a.cluster.directory.instances["gone"] = InstanceBeat("gone", 0, 0.0)
        a.cluster.directory.piles["32010200000009"] = PileEntry("32010200000009", "gone", "10.0.0.9:5", 1.0)
        silent = yield call(a, "GET", "/piles/32010200000009/frames")
        self.assertEqual(silent.code, 503, silent.body)
        self.assertIn("gone", silent.body["message"])


class SessionsAcrossInstances(TestCase):
    timeout = 40

    @inlineCallbacks
    def test_an_order_seen_on_b_is_read_through_a(self) -> Any:
        _, a, b = yield two_instances(self)
        yield b.routed_commands.commands._started
        trade = yield self.start_order(b, PILE, 1)
        yield until(lambda: "b" in a.cluster.directory.instances)
        here = yield call(b, "GET", f"/sessions/{trade}")
        self.assertEqual(here.code, 200, here.body)
        there = yield call(a, "GET", f"/sessions/{trade}")
        self.assertEqual(there.code, 200, there.body)
        self.assertEqual(there.body, here.body)
        self.assertEqual((there.body["tradeSeq"], there.body["id"]), (trade, PILE))
        # Lower case is the same order; an order no instance saw is a 404; a bad one a 400.
        lower = yield call(a, "GET", f"/sessions/{trade.lower()}")
        self.assertEqual(lower.code, 200, lower.body)
        missing = yield call(a, "GET", f"/sessions/{'9' * 32}")
        self.assertEqual(missing.code, 404, missing.body)
        bad = yield call(a, "GET", "/sessions/12")
        self.assertEqual(bad.code, 400, bad.body)
        # An instance in the directory that is gone (no responder) counts as not having it.
        a.cluster.directory.instances["gone"] = InstanceBeat("gone", 0, 0.0)
        still = yield call(a, "GET", f"/sessions/{trade}")
        self.assertEqual((still.code, still.body), (200, here.body))
        gone = yield call(a, "GET", f"/sessions/{'9' * 32}")
        self.assertEqual(gone.code, 404, gone.body)

    @inlineCallbacks
    def start_order(self, proxy: Any, pile: str, n: int) -> Any:
        """An order started on ``proxy`` for ``pile`` (logged in there), accepted by the pile."""
        link = yield login(self, proxy, pile)
        trade = f"{pile}01250102030405{n:04d}"
        order = {"tradeSeq": trade, "gunId": "01"}
        started = yield call(proxy, "POST", "/proxy/34", {**example(0x34, pile), **order})
        self.assertEqual(started.code, 200, started.body)
        yield link.expect(0x34)
        link.send(0x33, {**example(0x33, pile), **order, "result": True, "reason": 0})
        yield until(lambda: proxy.sessions.get(trade) is not None)
        return trade

    @inlineCallbacks
    def test_the_list_shows_the_orders_of_every_instance(self) -> Any:
        _, a, b = yield two_instances(self)
        for proxy in (a, b):
            yield proxy.routed_commands.commands._started
        other = "32010200000002"
        first = yield self.start_order(a, other, 1)
        second = yield self.start_order(b, PILE, 2)
        yield until(lambda: "b" in a.cluster.directory.instances and "a" in b.cluster.directory.instances)
        views = {}
        for proxy in (a, b):
            listed = yield call(proxy, "GET", "/sessions")
            self.assertEqual(listed.code, 200, listed.body)
            views[proxy] = listed.body
            orders = [(s["tradeSeq"], s["id"]) for s in listed.body["sessions"]]
            newest_first = sorted(
                [(s["startedAt"], s["tradeSeq"]) for s in listed.body["sessions"]], reverse=True
            )
            self.assertEqual(sorted(orders), sorted([(first, other), (second, PILE)]))
            self.assertEqual([t for _, t in newest_first], [t for t, _ in orders])
            self.assertEqual(listed.body["next"], None)
            self.assertNotIn("unanswered", listed.body)
        self.assertEqual(views[a], views[b])
        # Paging across instances: one a page, the cursor of the first gives the second.
        one = yield call(a, "GET", "/sessions?limit=1")
        self.assertEqual(len(one.body["sessions"]), 1)
        self.assertIsNotNone(one.body["next"])
        two = yield call(a, "GET", f"/sessions?limit=1&before={one.body['next']}")
        self.assertEqual(two.body["next"], None)
        paged = [s["tradeSeq"] for s in one.body["sessions"] + two.body["sessions"]]
        self.assertEqual(paged, [s["tradeSeq"] for s in views[a]["sessions"]])
        # Filters apply on every instance; a bad one is a 400 before anyone is asked.
        only = yield call(a, "GET", f"/sessions?pile={PILE}")
        self.assertEqual([s["tradeSeq"] for s in only.body["sessions"]], [second])
        bad = yield call(a, "GET", "/sessions?pile=12")
        self.assertEqual(bad.code, 400, bad.body)
        # An instance that does not answer: the others' orders, and its name.
        a.cluster.directory.instances["gone"] = InstanceBeat("gone", 0, 0.0)
        partial = yield call(a, "GET", "/sessions")
        self.assertEqual(partial.code, 200, partial.body)
        self.assertEqual(partial.body["sessions"], views[a]["sessions"])
        self.assertEqual(partial.body["unanswered"], ["gone"])


class NatsCommandsAcrossInstances(TestCase):
    timeout = 40

    @inlineCallbacks
    def test_one_instance_takes_each_request_and_routes_it_to_the_holder(self) -> Any:
        import json

        from tests.nats_server import connect_client

        consumer, a, b = yield two_instances(self, nats_commands=True)
        for proxy in (a, b):
            yield proxy.nats_commands.commands._started
            yield proxy.routed_commands.commands._started
        link = yield login(self, b, PILE)
        yield until(lambda: a.cluster.directory.holder(PILE) == "b")
        client = yield connect_client(self.nats.port)  # type: ignore[attr-defined]
        self.addCleanup(client.transport.loseConnection)
        for _ in range(4):  # whichever instance takes it, the frame is written once
            body = json.dumps({"id": PILE, "control": 1, "wait": 5}).encode()
            pending = client.request("charge.command.ykc.92", body)
            got = yield link.expect(0x92)
            link.send(0x91, example(0x91, PILE), seq=got.seq)
            answer = json.loads((yield pending).payload)
            self.assertEqual(answer["status"], 200, answer)
            self.assertEqual(answer["frame"], got.raw.hex())
        link.send(0x03, example(0x03, PILE))
        yield link.expect(0x04)  # anything written for those requests came before this answer
        self.assertEqual([f.code for f in link.unclaimed if f.code == 0x92], [])
