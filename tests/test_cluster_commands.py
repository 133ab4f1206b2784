"""Commands as NATS requests (``--natsCommands``), against a real nats-server and proxy."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
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


class CommandsOverNats(TestCase):
    """A real nats-server and a proxy answering commands over NATS on it."""

    timeout = 60

    def connection(self, url: str) -> dict[str, Any]:
        """The proxy's settings of the connection the commands use (``url``: the server)."""
        raise NotImplementedError

    @inlineCallbacks
    def setUp(self) -> Any:
        self.nats = NatsServer(reactor)
        self.addCleanup(self.nats.cleanup)
        yield self.nats.start()
        settings = self.connection(self.nats.url)
        self.proxy = yield start_proxy(self, nats_commands=True, auto_verification=True, **settings)
        yield self.proxy.nats_commands.commands._started

    @inlineCallbacks
    def ask(self, ft: str, body: Any) -> Any:
        """The answer to a request on the command subject of ``ft`` (over a new client)."""
        client = yield connect_client(self.nats.port)
        try:
            msg = yield client.request(f"charge.command.ykc.{ft}", json.dumps(body).encode())
        finally:
            client.transport.loseConnection()
        return json.loads(msg.payload)

    @inlineCallbacks
    def command(self, link: Any) -> Any:
        """A 0x92 with ``wait`` the pile answers: a 200 with the frame written (and the answer)."""
        d = self.ask("92", {"id": PILE, "control": 1, "wait": 5})
        got = yield link.expect(0x92)
        link.send(0x91, example(0x91, PILE), seq=got.seq)
        answer = yield d
        self.assertEqual(answer["status"], 200)
        self.assertEqual(answer["frame"], got.raw.hex())
        return answer


class OverNats(CommandsOverNats):
    def connection(self, url: str) -> dict[str, Any]:
        return {"messaging": MessagingType.NONE, "cluster": f"{url},{url}"}  # a list, as for a NATS cluster

    @inlineCallbacks
    def test_command_with_wait_and_errors(self) -> Any:
        link = yield login(self, self.proxy, PILE)
        answer = yield self.command(link)
        self.assertIn("reply", answer)
        missing = yield self.ask("92", {"id": "32010200000009", "control": 1})
        self.assertEqual(missing["status"], 404)
        bad = yield self.ask("92", {"id": PILE, "control": 1, "wait": 0})
        self.assertEqual(bad["status"], 400)
        self.assertIn("wait: must be more than 0", bad["message"])
        late = yield self.ask("92", {"id": PILE, "control": 1, "wait": 0.2})
        self.assertEqual(late["status"], 504)


class OverTheForwardingConnection(CommandsOverNats):
    """Without ``--cluster``, the commands subscribe on the forwarding publisher's connection."""

    def connection(self, url: str) -> dict[str, Any]:
        return {"messaging": MessagingType.NATS, "servers": url}

    @inlineCallbacks
    def test_commands_and_forwarding_share_one_connection(self) -> Any:
        self.assertIs(self.proxy.nats_commands.commands.connection, self.proxy.publisher.shared)
        watcher = yield connect_client(self.nats.port)
        self.addCleanup(watcher.transport.loseConnection)
        sid = watcher.subscribe("charge.proxy.ykc.01")
        yield watcher.ping()
        link = yield login(self, self.proxy, PILE)
        (forwarded,) = yield watcher.wait_for(sid, 1)
        self.assertEqual(json.loads(forwarded.payload)["id"], PILE)
        yield self.command(link)

    @inlineCallbacks
    def test_the_subscription_survives_a_nats_restart(self) -> Any:
        link = yield login(self, self.proxy, PILE)
        yield self.command(link)
        yield self.nats.restart()
        # The publisher's client reconnects by itself and renews the subscription: ask until answered.
        probe = b'{"id": "32010200000009", "control": 1}'
        for _ in range(100):
            client = yield connect_client(self.nats.port)
            try:
                msg = yield client.request("charge.command.ykc.92", probe, 0.5)
            except Exception:  # noqa: BLE001 - not subscribed again yet
                continue
            finally:
                client.transport.loseConnection()
            if not msg.payload:  # the server's "no responders": not subscribed again yet
                yield deferLater(reactor, 0.1, lambda: None)
                continue
            self.assertEqual(json.loads(msg.payload)["status"], 404)
            break
        else:
            self.fail("no answer over NATS after the server restarted")
        yield self.command(link)
