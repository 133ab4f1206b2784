"""The ``ykcproxy`` command: the seed's flag forms, clear errors, --version (also in /healthz, /metrics)."""

from __future__ import annotations

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python import usage
from twisted.trial.unittest import TestCase

from tests.daemon import ROOT, command
from tests.support import rest, start_proxy
from ykcproxy import __version__
from ykcproxy.cli import FlagError, parse, translate
from ykcproxy.config import MessagingType


class SeedForms(TestCase):
    def config(self, *argv: str):
        return parse([*argv, "-dataDir", self.mktemp()], environ={}).config

    def test_every_value_form(self):
        for argv in (
            ["-servers", "http://a:1/x"],
            ["-servers=http://a:1/x"],
            ["--servers", "http://a:1/x"],
            ["--servers=http://a:1/x"],
        ):
            self.assertEqual(self.config(*argv).servers, ("http://a:1/x",), argv)

    def test_boolean_forms(self):
        cases = [
            (["-autoVerification"], True),
            (["--autoVerification"], True),
            (["-autoVerification=true"], True),
            (["-autoVerification=false"], False),
            (["-autoVerification", "true"], True),
            (["-autoVerification", "false"], False),
            (["--autoVerification", "false"], False),
        ]
        for argv, expected in cases:
            config = self.config(*argv, "-servers", "http://a:1")
            self.assertIs(config.auto_verification, expected, argv)

    def test_go_pitfall_later_flags_are_read(self):
        """Go's parser stops at ``true``; here every later flag still counts (the seed's README example)."""
        config = self.config(
            "-autoVerification",
            "true",
            "-messagingServerType",
            "nats",
            "-servers",
            "nats://127.0.0.1:4222",
            "-autoHeartbeatResponse",
            "-username=u",
        )
        self.assertTrue(config.auto_verification)
        self.assertTrue(config.auto_heartbeat_response)
        self.assertIs(config.messaging, MessagingType.NATS)
        self.assertEqual(config.servers, ("nats://127.0.0.1:4222",))
        self.assertEqual(config.username, "u")

    def test_bare_boolean_before_another_flag(self):
        config = self.config("-autoBillingModelVerify", "-tcpPort", "1234", "-servers", "http://a:1")
        self.assertTrue(config.auto_billing_model_verify)
        self.assertEqual(config.tcp_port, 1234)

    def test_translation(self):
        self.assertEqual(
            translate(["-tcpPort", "1", "-natsJetStream", "--host=x", "-h"]),
            ["--tcpPort=1", "--natsJetStream=true", "--host=x", "--help"],
        )

    def test_unknown_flag_is_named(self):
        error = self.assertRaises(FlagError, translate, ["-tcpPort", "1", "-bogus", "2"])
        self.assertIn("'-bogus'", str(error))
        error = self.assertRaises(FlagError, translate, ["--tcpport=1"])
        self.assertIn("'--tcpport'", str(error))
        self.assertIn("-tcpPort", str(error))

    def test_missing_value_and_stray_argument(self):
        self.assertIn("'-servers'", str(self.assertRaises(FlagError, translate, ["-servers"])))
        self.assertIn("'extra'", str(self.assertRaises(FlagError, translate, ["-tcpPort", "1", "extra"])))

    def test_bad_values_still_name_the_option(self):
        error = self.assertRaises(usage.UsageError, self.config, "-autoVerification=maybe")
        self.assertIn("--autoVerification", str(error))
        error = self.assertRaises(usage.UsageError, self.config, "-tcpPort", "x")
        self.assertIn("--tcpPort", str(error))


class Commands(TestCase):
    @inlineCallbacks
    def run_command(self, *argv: str):
        env = {"PATH": "/usr/bin"}
        out, err, code = yield getProcessOutputAndValue(argv[0], argv[1:], path=ROOT, env=env)
        return out.decode(), err.decode(), code

    @inlineCallbacks
    def test_versions(self):
        for name in ("ykcproxy", "ykcproxy-sim"):
            out, err, code = yield self.run_command(command(name), "--version")
            self.assertEqual((out.strip(), code), (f"{name} {__version__}", 0), err)
        out, err, code = yield self.run_command(command("ykcproxy"), "-version")
        self.assertEqual(out.strip(), f"ykcproxy {__version__}")

    @inlineCallbacks
    def test_unknown_flag_exits_2(self):
        out, err, code = yield self.run_command(command("ykcproxy"), "-tcpPort", "0", "-bogus", "x")
        self.assertEqual(code, 2)
        self.assertIn("unknown flag '-bogus'", err)
        self.assertNotIn("Traceback", err)

    @inlineCallbacks
    def test_help_names_the_command(self):
        out, err, code = yield self.run_command(command("ykcproxy"), "-help")
        self.assertEqual(code, 0, err)
        self.assertIn("Usage: ykcproxy [options]", out)
        self.assertIn("--autoVerification", out)


class VersionReported(TestCase):
    @inlineCallbacks
    def test_healthz_and_metrics(self):
        proxy = start_proxy(self)
        code, health = yield rest(proxy, "GET", "/healthz")
        self.assertEqual(health["version"], __version__)
        self.assertIn(f'ykc_build_info{{version="{__version__}"}} 1.0', proxy.metrics.render().decode())
