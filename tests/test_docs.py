"""doc/messages.md is generated from the frame declarations and must be current."""

from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

import tests
from ykcproxy.docs.messages import render_messages_md
from ykcproxy.wire.frames import CATALOGUE

MESSAGES_MD = Path(tests.__file__).resolve().parent.parent / "doc" / "messages.md"


class MessagesDocTests(unittest.TestCase):
    def test_messages_md_is_current(self) -> None:
        self.assertTrue(
            MESSAGES_MD.exists(), f"{MESSAGES_MD} is missing: run `python -m ykcproxy.docs.messages`"
        )
        current = MESSAGES_MD.read_text(encoding="utf-8")
        self.assertTrue(
            current == render_messages_md(CATALOGUE),
            f"{MESSAGES_MD} is stale: run `python -m ykcproxy.docs.messages` and commit the result",
        )

    def test_every_frame_type_and_key_is_documented(self) -> None:
        text = render_messages_md(CATALOGUE)
        for frame in CATALOGUE.values():
            self.assertIn(f"### 0x{frame.code:02X} {frame.name} — {frame.title}", text)
            for key in frame.keys:
                self.assertIn(f"`{key}", text)
        self.assertIn("`cards[].logicCard`", text)
        self.assertIn("| | `chmTimeoutAA` | bits 2–3 (byte 1, bits 2–3) |", text)
