"""Commands as NATS requests (``--natsCommands``), against a real nats-server and proxy."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.nats_server import NatsServer, connect_client
from tests.support import login, reactor, start_proxy
from ykcproxy.cluster.commands import decode_request
from ykcproxy.config import MessagingType
from ykcproxy.wire.examples import example

PILE = "32010200000001"


class Decoding(TestCase):
    def test_wait_is_taken_out_of_the_body(self) -> None:
        self.assertEqual(decode_request(b'{"id": "1", "wait": 2}'), ({"id": "1"}, 2))
        self.assertEqual(decode_request(b"[1]"), ([1], None))
        self.assertEqual(decode_request(b"{bad"), (None, None))


class OverNats(TestCase):
    timeout = 30

    @inlineCallbacks
    def setUp(self) -> Any:
        self.nats = NatsServer(reactor)
        self.addCleanup(self.nats.cleanup)
        yield self.nats.start()
        self.proxy = yield start_proxy(
            self,
            messaging=MessagingType.NONE,
            cluster=f"{self.nats.url},{self.nats.url}",  # a list, as for a NATS cluster
            nats_commands=True,
            auto_verification=True,
        )
        yield self.proxy.nats_commands.commands._started
        self.client = yield connect_client(self.nats.port)
        self.addCleanup(self.client.transport.loseConnection)

    @inlineCallbacks
    def ask(self, ft: str, body: Any) -> Any:
        msg = yield self.client.request(f"charge.command.ykc.{ft}", json.dumps(body).encode())
        return json.loads(msg.payload)

    @inlineCallbacks
    def test_command_with_wait_and_errors(self) -> Any:
        link = yield login(self, self.proxy, PILE)
        d = self.ask("92", {"id": PILE, "control": 1, "wait": 5})
        got = yield link.expect(0x92)
        link.send(0x91, example(0x91, PILE), seq=got.seq)
        answer = yield d
        self.assertEqual(answer["status"], 200)
        self.assertEqual(answer["frame"], got.raw.hex())
        self.assertIn("reply", answer)
        missing = yield self.ask("92", {"id": "32010200000009", "control": 1})
        self.assertEqual(missing["status"], 404)
        bad = yield self.ask("92", {"id": PILE, "control": 1, "wait": 0})
        self.assertEqual(bad["status"], 400)
        self.assertIn("wait: must be more than 0", bad["message"])
        late = yield self.ask("92", {"id": PILE, "control": 1, "wait": 0.2})
        self.assertEqual(late["status"], 504)
