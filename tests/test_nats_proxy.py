"""The whole proxy forwarding to a real nats-server: every uplink frame on its subject,
and JetStream delivery across a broker restart with nothing lost."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.nats_server import NatsServer, connect_client
from tests.support import connect_pile, login, settle, start_proxy
from tests.test_integration import UPLINK, expected_json
from ykcproxy.config import MessagingType
from ykcproxy.wire.examples import example

PILE = "32010200000001"
PILES = ["51010200000001", "51010200000002"]


class NatsForwarding(TestCase):
    @inlineCallbacks
    def server(self, **kw: Any) -> Any:
        server = NatsServer(**kw)
        self.addCleanup(server.cleanup)
        yield server.start()
        return server

    @inlineCallbacks
    def test_every_uplink_frame_on_its_subject(self):
        server = yield self.server(user="ykc", password="s3cret")
        client = yield connect_client(server.port, "ykc", "s3cret")
        self.addCleanup(client.transport.loseConnection)
        sid = client.subscribe("charge.proxy.ykc.>")
        yield client.ping()
        proxy = start_proxy(
            self,
            messaging=MessagingType.NATS,
            servers=(server.url,),
            username="ykc",
            password="s3cret",
            auto_verification=True,
            auto_billing_model_verify=True,
        )
        yield proxy.forwarder.started
        link = yield connect_pile(self, proxy)
        data = link.frame(0x01, example(0x01, PILE))
        for code in UPLINK:
            if code != 0x01:
                data += link.frame(code, example(code, PILE))
        for i in range(0, len(data), 7):  # split across many reads
            link.write(data[i : i + 7])
        want = len(UPLINK) + 1
        got = yield client.wait_for(sid, want, timeout=10)
        # The tracker reports the orders the example frames start as ``session`` messages.
        while len([m for m in got if not m.subject.endswith(".session")]) < want:
            got = yield client.wait_for(sid, len(got) + 1, timeout=10)
        subjects = [m.subject for m in got if not m.subject.endswith(".session")]
        self.assertEqual(subjects[:2], ["charge.proxy.ykc.01", "charge.proxy.ykc.online"])
        self.assertEqual(subjects[2:], [f"charge.proxy.ykc.{c:02x}" for c in UPLINK if c != 0x01])
        for msg in got:
            body = json.loads(msg.payload)
            header = body.pop("header")
            ft = msg.subject.rsplit(".", 1)[1]
            self.assertEqual(header["frameId"], ft)
            if ft not in ("online", "session"):
                self.assertEqual(body, expected_json(int(ft, 16)), ft)


class JetStreamRestart(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_broker_restart_loses_nothing(self):
        server = NatsServer(jetstream=True)
        self.addCleanup(server.cleanup)
        yield server.start()
        admin = yield connect_client(server.port)
        yield admin.add_stream("YKC", ["charge.proxy.ykc.>"], storage="file")
        admin.transport.loseConnection()
        proxy = start_proxy(
            self,
            messaging=MessagingType.NATS,
            servers=(server.url,),
            nats_jetstream=True,
            auto_verification=True,
            auto_transaction_record_confirm=True,
            retry_first=0.05,
            retry_max=0.3,
        )
        yield proxy.forwarder.started
        links = {}
        for pile in PILES:
            links[pile] = yield login(self, proxy, pile)
        sent: dict[str, list[str]] = {p: [] for p in PILES}

        def send_round(i: int) -> None:
            for pile, link in links.items():
                link.send(0x13, example(0x13, pile, salt=i))
                sent[pile].append(("13", example(0x13, pile, salt=i)["tradeSeq"]))
                if i % 5 == 0:
                    link.send(0x3B, example(0x3B, pile, salt=1000 + i))
                    sent[pile].append(("3b", example(0x3B, pile, salt=1000 + i)["tradeSeq"]))

        for i in range(10):
            send_round(i)
        yield settle(0.2)
        yield server.stop()  # the broker goes away mid-stream
        for i in range(10, 25):
            send_round(i)
            yield settle(0.01)
        # Records are confirmed from the outbox while the broker is down.
        yield settle(0.3)
        confirmed_while_down = {
            p: [r.fields["tradeSeq"] for r in link.received if r.code == 0x40] for p, link in links.items()
        }
        yield server.start()
        for i in range(25, 30):
            send_round(i)

        @inlineCallbacks
        def stored() -> Any:
            client = yield connect_client(server.port)
            try:
                msgs = yield client.stream_messages("YKC")
            finally:
                client.transport.loseConnection()
            return msgs

        expected = sum(len(v) for v in sent.values())
        for _ in range(200):
            msgs = yield stored()
            frames = [json.loads(m.payload) for m in msgs if m.subject.endswith((".13", ".3b"))]
            if len({(f["id"], f["header"]["frameId"], f["tradeSeq"]) for f in frames}) >= expected:
                break
            yield settle(0.1)
        for pile in PILES:
            seen: list[tuple[str, str]] = []
            for f in frames:
                key = (f["header"]["frameId"], f["tradeSeq"])
                if f["id"] == pile and key not in seen:
                    seen.append(key)
            self.assertEqual(seen, sent[pile], f"pile {pile}: every frame, in order")
            records = {t for ft, t in seen if ft == "3b"}
            for trade in confirmed_while_down[pile]:
                self.assertIn(trade, records)
        self.assertTrue(any(confirmed_while_down.values()))


class JetStreamMissing(TestCase):
    @inlineCallbacks
    def test_healthz_degraded_when_the_server_has_no_jetstream(self):
        """--natsJetStream true against a server without -js: /healthz says so (503, with the reason)."""
        from tests.support import rest, until

        server = NatsServer()
        self.addCleanup(server.cleanup)
        yield server.start()
        proxy = start_proxy(self, messaging=MessagingType.NATS, servers=(server.url,), nats_jetstream=True)
        yield proxy.forwarder.started
        yield until(lambda: proxy.publisher.health()["jetstreamState"] == "unavailable")
        code, health = yield rest(proxy, "GET", "/healthz")
        self.assertEqual(code, 503, health)
        self.assertIn("forwarder", health["degraded"])
        self.assertIn("JetStream is not enabled", health["forwarder"]["reason"])
