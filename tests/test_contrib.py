"""contrib/: the example config parses with the real parser; the systemd unit verifies, names real options."""

from __future__ import annotations

import os
import re
import shutil
import tomllib

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from tests.daemon import ROOT, command
from ykcproxy.cli import translate
from ykcproxy.options import BY_NAME
from ykcproxy.options.config_file import read_config_file

EXAMPLE = os.path.join(ROOT, "contrib", "ykcproxy.toml")
UNIT = os.path.join(ROOT, "contrib", "systemd", "ykcproxy.service")
ENV_NAMES = {variable for option in BY_NAME.values() for variable in option.variables}


def unit_text() -> str:
    with open(UNIT, encoding="utf-8") as f:
        return f.read()


class ExampleConfig(TestCase):
    def test_every_key_is_an_option_with_a_valid_value(self):
        values = read_config_file(EXAMPLE, BY_NAME)
        self.assertIn("dataDir", values)
        self.assertEqual(values["dataDir"], "/var/lib/ykcproxy")  # the unit's StateDirectory

    def test_commented_settings_are_options_too(self):
        with open(EXAMPLE, encoding="utf-8") as f:
            lines = [line[2:] for line in f if re.match(r"# \w+ = ", line)]
        self.assertTrue(lines)
        for line in lines:
            document = tomllib.loads(line)
            for key, value in document.items():
                self.assertIn(key, BY_NAME, line)
                BY_NAME[key].kind.from_toml(value)


class SystemdUnit(TestCase):
    def test_exec_start_runs_the_command_with_the_example_config(self):
        exec_start = re.search(r"^ExecStart=(.*)$", unit_text(), re.M)
        assert exec_start is not None
        argv = exec_start.group(1).split()
        self.assertEqual(argv[0], "ykcproxy")
        self.assertEqual(translate(argv[1:]), ["--config=/etc/ykcproxy/ykcproxy.toml"])

    def test_every_variable_it_names_is_an_option(self):
        named = set(re.findall(r"\bYKCPROXY_[A-Z_]+", unit_text()))
        self.assertTrue(named)
        self.assertEqual(named - ENV_NAMES, set())

    def test_required_settings(self):
        text = unit_text()
        for line in (
            "Type=simple",
            "Restart=on-failure",
            "StateDirectory=ykcproxy",
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=\n",
            "SystemCallFilter=@system-service",
        ):
            self.assertIn(line, text)
        self.assertRegex(text, r"(?m)^LimitNOFILE=\d+$")
        self.assertRegex(text, r"(?m)^RestrictAddressFamilies=AF_INET AF_INET6")
        timeout = re.search(r"(?m)^TimeoutStopSec=(\d+)$", text)
        assert timeout is not None
        self.assertGreater(int(timeout.group(1)), BY_NAME["shutdownTimeout"].default)

    @inlineCallbacks
    def test_systemd_analyze_verify(self):
        tool = shutil.which("systemd-analyze")
        if tool is None:
            raise SkipTest("systemd-analyze is not installed (.ci/run installs systemd)")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        copy = os.path.join(directory, "ykcproxy.service")
        text = re.sub(r"(?m)^ExecStart=ykcproxy ", f"ExecStart={command('ykcproxy')} ", unit_text())
        with open(copy, "w", encoding="utf-8") as f:
            f.write(text)
        out, err, code = yield getProcessOutputAndValue(tool, ["verify", copy], env=dict(os.environ))
        self.assertEqual(code, 0, (out + err).decode())
        self.assertEqual((out + err).decode().strip(), "")


class Containerfile(TestCase):
    """The container image's settings are real options the parser accepts (no image is built here)."""

    def test_environment_and_entrypoint_parse(self):
        from ykcproxy.options.command_line import Options

        with open(os.path.join(ROOT, "contrib", "Containerfile"), encoding="utf-8") as f:
            text = f.read()
        environ = dict(re.findall(r"\b(YKCPROXY_[A-Z]+)=(\S+)", text))
        self.assertEqual(set(environ) - ENV_NAMES, set())
        token = self.mktemp()
        with open(token, "w") as f:
            f.write("a-long-enough-secret-token-for-tests\n")
        environ["YKCPROXY_APITOKENFILE"] = token
        entry = re.search(r"^ENTRYPOINT \[(.*)\]$", text, re.M)
        assert entry is not None
        argv = [a.strip().strip('"') for a in entry.group(1).split(",")]
        self.assertEqual(argv[0], "ykcproxy")
        config_file = self.mktemp()
        open(config_file, "w").close()  # the image ships an empty one
        args = [a.replace("/etc/ykcproxy/ykcproxy.toml", config_file) for a in translate(argv[1:])]
        options = Options(environ=environ)
        options.parseOptions(args)
        self.assertEqual(options.config.api_host, "0.0.0.0")
        self.assertEqual(options.config.data_dir, "/var/lib/ykcproxy")
