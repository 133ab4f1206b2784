"""twistd ykcproxy's options: the seed's names, defaults, both boolean forms, clear usage errors."""

from __future__ import annotations

import os

import attrs
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import TestCase

from ykcproxy.config import CrcMode, MessagingType, ProxyConfig
from ykcproxy.options import OPTIONS, default_config
from ykcproxy.service import Options


def parse(*argv: str) -> ProxyConfig:
    options = Options()
    options.parseOptions(list(argv))
    return options.config


class Defaults(TestCase):
    def test_interface_defaults(self):
        config = parse("--dataDir", self.mktemp(), "--servers", "http://127.0.0.1:9")
        self.assertEqual((config.host, config.tcp_port, config.http_port), ("0.0.0.0", 27600, 9556))
        self.assertFalse(config.auto_verification)
        self.assertTrue(config.auto_heartbeat_response)
        self.assertFalse(config.auto_billing_model_verify)
        self.assertFalse(config.auto_transaction_record_confirm)
        self.assertIs(config.messaging, MessagingType.HTTP)
        self.assertEqual(config.servers, ("http://127.0.0.1:9",))
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
            (["--cluster", "http://x"], "--cluster"),
            (["--instanceId", "a.b"], "--instanceId"),
            (["--commandSubjectPrefix", "a..b"], "--commandSubjectPrefix"),
            (["--natsCommands", "true"], "--natsCommands"),
        ]
        for argv, name in cases:
            error = self.assertRaises(usage.UsageError, parse, *argv, "--dataDir", d)
            self.assertIn(name, str(error), argv)


class Cluster(TestCase):
    """The cluster options and the connection the NATS commands use."""

    def test_defaults(self):
        config = parse("--dataDir", self.mktemp(), "--tcpPort", "27611")
        self.assertEqual(config.cluster, "")
        self.assertEqual(config.cluster_ttl, 15.0)
        self.assertFalse(config.nats_commands)
        self.assertEqual(config.command_subject_prefix, "charge.command.ykc")
        self.assertTrue(config.instance_name.endswith(":27611"))

    def test_cluster_address_and_commands(self):
        config = parse(
            "--cluster",
            "127.0.0.1:4222",
            "--instanceId",
            "a-1",
            "--natsCommands",
            "true",
            "--dataDir",
            self.mktemp(),
        )
        self.assertEqual(config.cluster, "nats://127.0.0.1:4222")
        self.assertEqual(config.instance_name, "a-1")
        self.assertTrue(config.nats_commands)

    def test_commands_over_the_forwarding_connection(self):
        config = parse("--messagingServerType", "nats", "--natsCommands", "true", "--dataDir", self.mktemp())
        self.assertTrue(config.nats_commands)

    def test_the_servers_of_a_nats_cluster(self):
        from ykcproxy.cluster import connect_options, redact_servers
        from ykcproxy.cluster.shared import SharedConnection
        from ykcproxy.service import build_nats_commands

        config = parse("--cluster", "n1:4222, nats://u:secret@n2:4222", "--dataDir", self.mktemp())
        self.assertEqual(config.cluster, "nats://n1:4222,nats://u:secret@n2:4222")
        options = connect_options(config.cluster, "", "")
        self.assertEqual(options["servers"], ["nats://n1:4222", "nats://u:secret@n2:4222"])
        self.assertEqual(redact_servers(config.cluster), "nats://n1:4222,nats://u:***@n2:4222")
        # Without --cluster, the commands connect to every forwarding server, not the first only.
        argv = ["--messagingServerType", "nats", "--servers", "a:4222,b:4222", "--natsCommands", "true"]
        forwarding = parse(*argv, "--dataDir", self.mktemp())
        commands = build_nats_commands(forwarding, None, None, SharedConnection()).commands
        self.assertEqual(commands.server, "nats://a:4222,nats://b:4222")
        with self.assertRaises(ValueError) as caught:
            build_nats_commands(forwarding, None, None, None)
        self.assertIn("--natsCommands needs a NATS connection", str(caught.exception))


def parse_with(argv: list[str], environ: dict[str, str] | None = None) -> Options:
    options = Options(environ=environ or {})
    options.parseOptions(argv)
    return options


class OneDeclaration(TestCase):
    """The option table drives the parser, the config value and the docs."""

    def test_no_arguments_give_the_default_configuration(self):
        consumer = ("--servers", "http://127.0.0.1:9")
        config = parse_with(list(consumer)).config
        self.assertEqual(
            attrs.evolve(config, explicit=frozenset()), default_config(servers=("http://127.0.0.1:9",))
        )

    def test_every_option_has_its_field(self):
        fields = {f.name for f in attrs.fields(ProxyConfig)} - {"retry_first", "explicit", "api_read_token"}
        declared = {o.field for o in OPTIONS if o.field is not None}
        self.assertEqual(fields, declared)
        config = default_config()
        for option in OPTIONS:
            if option.field is not None:
                self.assertEqual(getattr(config, option.field), option.default, option.name)

    def test_help_lists_every_option_with_its_variable(self):
        text = str(Options())
        for option in OPTIONS:
            self.assertIn(f"--{option.name}", text)
            self.assertIn(option.env, text)
        self.assertIn("nats://127.0.0.1:4222", text)

    def test_configuration_doc_is_current(self):
        from pathlib import Path

        from ykcproxy.docs.configuration import DEFAULT_PATH, render_configuration_md

        self.assertTrue(Path(DEFAULT_PATH).exists())
        self.assertEqual(
            Path(DEFAULT_PATH).read_text(encoding="utf-8"),
            render_configuration_md(),
            "doc/configuration.md is stale: run `python -m ykcproxy.docs.configuration`",
        )

    def test_parsing_creates_nothing(self):
        data = os.path.join(self.mktemp(), "deep", "data")
        os.makedirs(os.path.dirname(os.path.dirname(data)))
        parse_with(["--dataDir", data, "--servers", "http://127.0.0.1:9"])
        self.assertFalse(os.path.exists(data))
        self.assertRaises(
            usage.UsageError, parse_with, ["--dataDir", data, "--tcpPort", "5", "--httpPort", "5"]
        )
        self.assertFalse(os.path.exists(data))


class Standalone(TestCase):
    """No consumer: the routine answers default to on, unless set explicitly."""

    def test_answers_on_without_consumer(self):
        for argv in ([], ["--messagingServerType", "none"]):
            config = parse_with(argv).config
            self.assertTrue(config.standalone)
            self.assertTrue(config.auto_verification)
            self.assertTrue(config.auto_heartbeat_response)
            self.assertTrue(config.auto_billing_model_verify)
            self.assertFalse(config.auto_transaction_record_confirm)

    def test_explicit_setting_wins(self):
        config = parse_with(["--autoVerification", "false"]).config
        self.assertFalse(config.auto_verification)
        config = parse_with([], {"YKCPROXY_AUTOBILLINGMODELVERIFY": "false"}).config
        self.assertFalse(config.auto_billing_model_verify)

    def test_seed_defaults_with_a_consumer(self):
        config = parse_with(["--messagingServerType", "nats"]).config
        self.assertFalse(config.standalone)
        self.assertFalse(config.auto_verification)
        self.assertEqual(config.servers, ("nats://127.0.0.1:4222",))


class Precedence(TestCase):
    """Command line > environment > config file > default."""

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_layers(self):
        path = self.write(
            'tcpPort = 1001\nhttpPort = 1002\nheartbeatInterval = 5\nservers = ["http://a/x"]\n'
        )
        environ = {"YKCPROXY_HTTPPORT": "2002", "YKCPROXY_HEARTBEATINTERVAL": "7"}
        options = parse_with(["--config", path, "--heartbeatInterval", "9"], environ)
        config = options.config
        self.assertEqual((config.tcp_port, config.http_port, config.heartbeat_interval), (1001, 2002, 9.0))
        self.assertEqual(config.servers, ("http://a/x",))
        self.assertEqual(options.sources["tcpPort"], path)
        self.assertEqual(options.sources["httpPort"], "environment")
        self.assertEqual(options.sources["heartbeatInterval"], "command line")

    def test_config_from_environment(self):
        path = self.write("autoTimeSync = true\n")
        self.assertTrue(parse_with([], {"YKCPROXY_CONFIG": path}).config.auto_time_sync)

    def test_text_values_in_the_file(self):
        path = self.write('autoTimeSync = "yes"\nservers = "http://a, http://b"\ncrcOrder = "low-first"\n')
        config = parse_with(["--config", path]).config
        self.assertTrue(config.auto_time_sync)
        self.assertEqual(config.servers, ("http://a", "http://b"))
        self.assertIs(config.crc_mode, CrcMode.LOW_FIRST)

    def test_file_errors_name_file_and_key(self):
        cases = [
            ("tcpPrt = 1\n", "'tcpPrt'"),
            ("tcpPort = 70000\n", "tcpPort"),
            ("tcpPort = true\n", "tcpPort"),
            ("autoVerification = 3\n", "autoVerification"),
            ("heartbeatInterval = -1\n", "heartbeatInterval"),
            ("servers = [1, 2]\n", "servers"),
            ("tcpPort = \n", "not valid TOML"),
            ("config = 'x'\n", "'config'"),
        ]
        for text, key in cases:
            path = self.write(text)
            error = self.assertRaises(usage.UsageError, parse_with, ["--config", path])
            self.assertIn(path, str(error), text)
            self.assertIn(key, str(error), text)
        error = self.assertRaises(usage.UsageError, parse_with, ["--config", "/nonexistent/y.toml"])
        self.assertIn("/nonexistent/y.toml", str(error))

    def test_environment_errors_name_the_variable(self):
        error = self.assertRaises(usage.UsageError, parse_with, [], {"YKCPROXY_TCPPORT": "x"})
        self.assertIn("YKCPROXY_TCPPORT", str(error))


class Secrets(TestCase):
    def test_secret_files_and_variables(self):
        token = self.mktemp()
        with open(token, "w") as f:
            f.write("t0ken\n")
        config = parse_with(["--apiTokenFile", token], {"YKCPROXY_PASSWORD": "pw"}).config
        self.assertEqual((config.api_token, config.password), ("t0ken", "pw"))
        self.assertEqual(parse_with([], {"YKCPROXY_API_TOKEN": "x"}).config.api_token, "x")

    def test_secrets_are_not_shown_in_help(self):
        text = str(parse_with(["--apiToken", "sekrit-value", "--password", "pw-value"]))
        self.assertNotIn("sekrit-value", text)
        self.assertNotIn("pw-value", text)

    def test_two_sources_of_one_secret(self):
        token = self.mktemp()
        with open(token, "w") as f:
            f.write("a")
        error = self.assertRaises(usage.UsageError, parse_with, ["--apiTokenFile", token, "--apiToken", "b"])
        self.assertIn("--apiTokenFile", str(error))
        error = self.assertRaises(usage.UsageError, parse_with, ["--apiTokenFile", "/nonexistent"])
        self.assertIn("/nonexistent", str(error))


class ConsistentChecks(TestCase):
    """Regressions: values that passed parsing and failed later, or passed one check and not another."""

    def test_subject_prefix_with_a_space(self):
        error = self.assertRaises(
            usage.UsageError, parse_with, ["--messagingServerType", "nats", "--subjectPrefix", "a b"]
        )
        self.assertIn("--subjectPrefix", str(error))

    def test_websocket_nats_urls_are_refused_everywhere(self):
        from ykcproxy.forward.nats import normalize_server

        self.assertRaises(ValueError, normalize_server, "ws://host:80")
        error = self.assertRaises(
            usage.UsageError, parse_with, ["--messagingServerType", "nats", "--servers", "ws://host:80"]
        )
        self.assertIn("--servers", str(error))

    def test_endpoints(self):
        config = parse_with(["--pileEndpoint", "tcp:0:interface=127.0.0.1"]).config
        self.assertEqual(config.pile_endpoint_description, "tcp:0:interface=127.0.0.1")
        self.assertEqual(
            default_config(api_host="::1").api_endpoint_description, "tcp:9556:interface=\\:\\:1"
        )
        error = self.assertRaises(usage.UsageError, parse_with, ["--apiEndpoint", "bogus:1"])
        self.assertIn("--apiEndpoint", str(error))
        # Endpoints decide the addresses: equal shorthand ports do not matter then.
        parse_with(["--pileEndpoint", "tcp:0", "--tcpPort", "5", "--httpPort", "5"])
