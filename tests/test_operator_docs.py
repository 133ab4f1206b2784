"""Operator docs: linked from the README, naming only real options and no internal issue numbers."""

from __future__ import annotations

import os
import re

from twisted.trial.unittest import TestCase

from tests.daemon import ROOT
from ykcproxy.options import BY_NAME

DOCS = ("doc/quickstart.md", "doc/troubleshooting.md", "doc/migration.md")
NOT_OPTIONS = {"help", "version", "flag"}


def read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


class OperatorDocs(TestCase):
    def test_linked_from_the_readme(self):
        readme = read("README.rst")
        for path in (*DOCS, "doc/configuration.md", "CHANGELOG.md", "contrib/ykcproxy.toml"):
            self.assertIn(path, readme)

    def test_every_option_named_exists(self):
        for path in (*DOCS, "README.rst", "CHANGELOG.md"):
            for name in set(re.findall(r"(?<![\w-])--?([a-z][A-Za-z]+)", read(path))):
                if name in BY_NAME or name in NOT_OPTIONS:
                    continue
                if name[0].islower() and any(c.isupper() for c in name):
                    self.fail(f"{path} names -{name}, which is not an option")

    def test_no_internal_issue_numbers(self):
        for path in (*DOCS, "CHANGELOG.md"):
            self.assertIsNone(re.search(r"(?i)\bissue\s*#?\d+|#\d+\b", read(path)), path)

    def test_troubleshooting_topics(self):
        text = read("doc/troubleshooting.md")
        for heading in (
            "## A pile never comes online",
            "## CRC byte order",
            "## BCD with hex nibbles",
            "## Heartbeat timeouts",
            "## Consumer errors",
            "## JetStream not enabled",
            "## Port in use",
        ):
            self.assertIn(heading, text)

    def test_migration_warns_about_the_go_pitfall(self):
        text = read("doc/migration.md")
        self.assertIn("-autoVerification true", text)
        self.assertIn("silently ignored", text)
        self.assertIn("--apiHost", text)
        self.assertIn("`Id` → `id`", text)
