"""The proxy process killed with SIGKILL mid-stream and started again on the same data directory."""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from tests.support import reactor, settle, start_consumer
from ykcproxy.sim.link import PileLink
from ykcproxy.wire.examples import example

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PILES = ["44010200000001", "44010200000002", "44010200000003"]
LISTENING = re.compile(rb"(pile port|REST API) listening on [\d.]+:(\d+)")


class ProxyProcess(ProcessProtocol):
    """``twistd -n ykcproxy`` as a child process; ``ready`` fires with (pile port, REST port)."""

    def __init__(self) -> None:
        self.ready: Deferred[tuple[int, int]] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.output = b""
        self.ports: dict[bytes, int] = {}

    def outReceived(self, data: bytes) -> None:
        self.output += data
        for match in LISTENING.finditer(data):
            self.ports[match.group(1)] = int(match.group(2))
        if len(self.ports) == 2 and not self.ready.called:
            self.ready.callback((self.ports[b"pile port"], self.ports[b"REST API"]))

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError("proxy ended early:\n" + self.output.decode(errors="replace")))
        self.ended.callback(None)


def spawn_proxy(test: TestCase, consumer_url: str, data_dir: str) -> ProxyProcess:
    proc = ProxyProcess()
    args = [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "--logfile=-",
        "ykcproxy",
        "--host=127.0.0.1",
        "--tcpPort=0",
        "--httpPort=0",
        f"--servers={consumer_url}",
        f"--dataDir={data_dir}",
        "--autoVerification=true",
        "--autoTransactionRecordConfirm=true",
        "--retryMaxDelay=0.1",
    ]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    transport = reactor.spawnProcess(proc, sys.executable, args, env=env, path=ROOT)

    def kill() -> Deferred[None]:
        if not proc.ended.called:
            transport.signalProcess("KILL")
        return proc.ended

    test.addCleanup(kill)
    proc.transport = transport
    return proc


@inlineCallbacks
def connect(port: int, pile: str) -> Any:
    link = PileLink()
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), link)
    link.send(0x01, example(0x01, pile))
    yield link.expect(0x02)
    return link


class KillNine(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_sigkill_loses_nothing_acknowledged(self):
        consumer, url = start_consumer(self)
        consumer.answer = lambda post: 500  # nothing leaves the outbox before the crash
        data_dir = os.path.abspath(self.mktemp())
        first = spawn_proxy(self, url, data_dir)
        pile_port, _ = yield first.ready
        links = {}
        for pile in PILES:
            links[pile] = yield connect(pile_port, pile)
        # Phase 1: frames, each pile ending with a record; its 0x40 means all before it are on disk.
        phase1: dict[str, list[str]] = {p: [] for p in PILES}
        for i in range(20):
            for pile, link in links.items():
                link.send(0x13, example(0x13, pile, salt=i))
                phase1[pile].append(example(0x13, pile, salt=i)["tradeSeq"])
        records_sent: dict[str, list[str]] = {p: [] for p in PILES}
        for pile, link in links.items():
            trade = example(0x3B, pile, salt=1)["tradeSeq"]
            link.send(0x3B, example(0x3B, pile, salt=1))
            records_sent[pile].append(trade)
        confirmed: dict[str, list[str]] = {p: [] for p in PILES}
        for pile, link in links.items():
            got = yield link.expect(0x40)
            confirmed[pile].append(got.fields["tradeSeq"])
        # Mid-stream: more records and frames in flight while the process is killed.
        for i in range(2, 6):
            for pile, link in links.items():
                link.send(0x3B, example(0x3B, pile, salt=i))
                records_sent[pile].append(example(0x3B, pile, salt=i)["tradeSeq"])
                link.send(0x13, example(0x13, pile, salt=100 + i))
        first.transport.signalProcess(signal.SIGKILL)
        yield first.ended
        yield settle(0.05)
        for pile, link in links.items():
            for got in link.received:
                if got.code == 0x40 and got.fields["tradeSeq"] not in confirmed[pile]:
                    confirmed[pile].append(got.fields["tradeSeq"])
        # Restart on the same data directory; the consumer is healthy now.
        consumer.answer = lambda post: 200
        second = spawn_proxy(self, url, data_dir)
        pile_port, _ = yield second.ready
        # The piles log in again and resend every record not confirmed (as the spec's retry does).
        for pile in PILES:
            link = yield connect(pile_port, pile)
            for trade_salt, trade in enumerate(records_sent[pile], start=1):
                if trade not in confirmed[pile]:
                    link.send(0x3B, example(0x3B, pile, salt=trade_salt))
                    got = yield link.expect(0x40)
                    confirmed[pile].append(got.fields["tradeSeq"])
            links[pile] = link

        def all_in(posts: list) -> bool:
            frames = {(p.body.get("id"), p.body.get("tradeSeq")) for p in posts if p.path == "/13"}
            records = {(p.body.get("id"), p.body.get("tradeSeq")) for p in posts if p.path == "/3b"}
            return all(
                all((pile, t) in frames for t in phase1[pile])
                and all((pile, t) in records for t in records_sent[pile])
                for pile in PILES
            )

        yield consumer.wait_for(all_in, timeout=30)
        # Every frame of phase 1 and every record, in per-pile order of first delivery.
        for pile in PILES:
            seen: list[str] = []
            for post in consumer.posts:
                if post.body.get("id") == pile and post.path == "/13":
                    trade = post.body["tradeSeq"]
                    if trade in phase1[pile] and trade not in seen:
                        seen.append(trade)
            self.assertEqual(seen, phase1[pile], pile)
            delivered_records = {p.body["tradeSeq"] for p in consumer.of("3b") if p.body["id"] == pile}
            self.assertEqual(set(confirmed[pile]) - delivered_records, set(), "a confirmed record was lost")
            self.assertEqual(set(records_sent[pile]) - delivered_records, set())
            ids = {p.headers["x-message-id"] for p in consumer.of("3b") if p.body["id"] == pile}
            self.assertEqual(ids, {f"{pile}-3b-{t}" for t in records_sent[pile]})
        for link in links.values():
            link.transport.loseConnection()
            yield link.lost
