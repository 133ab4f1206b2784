"""twistd ykcproxy's options: the seed's names, defaults, both boolean forms, clear usage errors."""

from __future__ import annotations

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import TestCase

from ykcproxy.config import CrcMode, MessagingType, ProxyConfig
from ykcproxy.service import Options


def parse(*argv: str) -> ProxyConfig:
    options = Options()
    options.parseOptions(list(argv))
    return options.config


class Defaults(TestCase):
    def test_interface_defaults(self):
        config = parse("--dataDir", self.mktemp())
        self.assertEqual((config.host, config.tcp_port, config.http_port), ("0.0.0.0", 27600, 9556))
        self.assertFalse(config.auto_verification)
        self.assertTrue(config.auto_heartbeat_response)
        self.assertFalse(config.auto_billing_model_verify)
        self.assertFalse(config.auto_transaction_record_confirm)
        self.assertIs(config.messaging, MessagingType.HTTP)
        self.assertEqual(config.servers, ())
        self.assertIs(config.crc_mode, CrcMode.AUTO)
        self.assertEqual(config.silence_timeout, 30.0)

    def test_plugin_is_found(self):
        names = [p.tapname for p in getPlugins(IServiceMaker)]
        self.assertIn("ykcproxy", names)


class Values(TestCase):
    def test_boolean_forms(self):
        d = self.mktemp()
        self.assertTrue(parse("--autoVerification", "true", "--dataDir", d).auto_verification)
        self.assertTrue(parse("--autoVerification=true", "--dataDir", d).auto_verification)
        self.assertFalse(parse("--autoHeartbeatResponse=false", "--dataDir", d).auto_heartbeat_response)

    def test_servers_and_broker(self):
        config = parse(
            "--messagingServerType",
            "nats",
            "--servers",
            "nats://a:4222, nats://b:4222",
            "--username",
            "u",
            "--password",
            "p",
            "--dataDir",
            self.mktemp(),
        )
        self.assertEqual(config.servers, ("nats://a:4222", "nats://b:4222"))
        self.assertEqual((config.username, config.password), ("u", "p"))

    def test_usage_errors_name_the_option(self):
        d = self.mktemp()
        cases = [
            (["--autoVerification", "maybe"], "--autoVerification"),
            (["--tcpPort", "70000"], "--tcpPort"),
            (["--httpPort", "x"], "--httpPort"),
            (["--messagingServerType", "kafka"], "--messagingServerType"),
            (["--heartbeatInterval", "-1"], "--heartbeatInterval"),
            (["--timezone", "Mars/Olympus"], "--timezone"),
            (["--messagingServerType", "nats", "--servers", "http://x"], "--servers"),
            (["--servers", "localhost:80a"], "--servers"),
            (["--tcpPort", "9000", "--httpPort", "9000"], "--tcpPort"),
        ]
        for argv, name in cases:
            error = self.assertRaises(usage.UsageError, parse, *argv, "--dataDir", d)
            self.assertIn(name, str(error), argv)
