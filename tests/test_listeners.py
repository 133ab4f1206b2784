"""The listeners: endpoints, the bound address in the log, one line when a port is taken."""

from __future__ import annotations

import os
import socket
import sys

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from ykcproxy.listeners import CannotListen, Listener
from ykcproxy.options import default_config
from ykcproxy.service import ProxyService


def _taken_port() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


class Endpoints(TestCase):
    def test_listens_on_the_description(self):
        memory = MemoryReactor()
        listener = Listener(
            "pile port", "pileEndpoint", "tcp:27601:interface=127.0.0.1:backlog=7", Factory(), memory
        )
        listener.privilegedStartService()
        listener.startService()
        ((port, _factory, backlog, interface),) = memory.tcpServers
        self.assertEqual((port, backlog, interface), (27601, 7, "127.0.0.1"))
        self.assertIsNotNone(listener.port)

    def test_stop_before_start(self):
        listener = Listener("REST API", "httpPort", "tcp:0", Factory(), MemoryReactor())
        self.assertIsNone(listener.stopService())

    @inlineCallbacks
    def test_bound_address_is_logged(self):
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        listener = Listener(
            "pile port", "tcpPort", "tcp:0:interface=127.0.0.1", Factory.forProtocol(Protocol), reactor
        )
        listener.startService()
        try:
            bound = listener.port.getHost().port
            shown = [e.get("address") for e in events if e.get("label") == "pile port"]
            self.assertEqual(shown, [f"127.0.0.1:{bound}"])
            self.assertNotEqual(bound, 0)
        finally:
            yield listener.stopService()


class PortInUse(TestCase):
    def test_one_line_naming_option_and_address(self):
        sock = _taken_port()
        self.addCleanup(sock.close)
        port = sock.getsockname()[1]
        config = default_config(host="127.0.0.1", tcp_port=port, http_port=0, data_dir="")
        proxy = ProxyService(config, reactor)
        error = self.assertRaises(CannotListen, proxy.privilegedStartService)
        text = str(error)
        self.assertIn("--tcpPort", text)
        self.assertIn("interface=127.0.0.1", text)
        self.assertIn(str(port), text)
        self.assertIn("in use", text)
        self.assertNotIn("\n", text)

    @inlineCallbacks
    def test_twistd_exits_non_zero_without_traceback(self):
        sock = _taken_port()
        self.addCleanup(sock.close)
        port = sock.getsockname()[1]
        workdir = self.mktemp()
        os.makedirs(workdir)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        argv = [twistd, "-n", "--pidfile=", "ykcproxy", "--httpPort", str(port), "--tcpPort", "0"]
        # The plugin is found through sys.path (an editable install does not add it).
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "PYTHONPATH": root}
        out, err, code = yield getProcessOutputAndValue(argv[0], argv[1:], env=env, path=workdir)
        self.assertNotEqual(code, 0)
        output = (out + err).decode()
        self.assertNotIn("Traceback", output)
        lines = [line for line in output.splitlines() if "cannot listen" in line]
        self.assertEqual(len(lines), 1, output)
        self.assertIn("--httpPort", lines[0])
