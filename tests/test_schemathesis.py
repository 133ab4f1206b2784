"""The REST API under schemathesis: no 5xx, every answer matches /openapi.json (a bounded run)."""

from __future__ import annotations

import os
import shutil
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from tests.support import login, start_proxy

PILE = "32010200000001"


def st_command() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "st")
    found = here if os.path.exists(here) else shutil.which("st")
    if not found:
        raise SkipTest("schemathesis is not installed (pip install '.[test]')")
    return found


class Schemathesis(TestCase):
    timeout = 240

    @inlineCallbacks
    def test_no_server_error_and_every_answer_documented(self) -> None:
        st = st_command()
        proxy = start_proxy(self, auto_verification=True, data_dir="", api_token="fuzz-token")
        link = yield login(self, proxy, PILE)
        self.addCleanup(link.transport.loseConnection)
        url = f"http://127.0.0.1:{proxy.http_port}/openapi.json"
        argv = [
            "run",
            url,
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance",
            "--max-examples",
            "2",
            "--phases",
            "examples,fuzzing",
            "--seed",
            "1",
            "-H",
            "Authorization: Bearer fuzz-token",
            "--no-color",
        ]
        env = {**os.environ, "SCHEMATHESIS_TELEMETRY": "false"}
        out, err, code = yield getProcessOutputAndValue(st, argv, env=env)
        text = (out + err).decode(errors="replace")
        self.assertEqual(code, 0, text[-4000:])
