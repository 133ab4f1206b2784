"""doc/restapi.md is generated, current, and every example in it is what the proxy really does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

import tests
from tests.support import call, connect_pile, start_proxy
from tests.test_rest import barrier
from ykcproxy.docs.restapi import PILE, REQUEST_SEQ, command_examples, error_examples, render_restapi_md
from ykcproxy.wire.examples import example

RESTAPI_MD = Path(tests.__file__).resolve().parent.parent / "doc" / "restapi.md"


class Generated(TestCase):
    def test_restapi_md_is_current(self) -> None:
        self.assertTrue(
            RESTAPI_MD.exists(), f"{RESTAPI_MD} is missing: run `python -m ykcproxy.docs.restapi`"
        )
        self.assertTrue(
            RESTAPI_MD.read_text(encoding="utf-8") == render_restapi_md(),
            f"{RESTAPI_MD} is stale: run `python -m ykcproxy.docs.restapi` and commit the result",
        )

    def test_an_example_for_every_command(self) -> None:
        text = render_restapi_md()
        examples = command_examples()
        self.assertEqual(len(examples), 21)
        for ex in examples:
            self.assertIn(f"### 0x{ex.frame.code:02X} {ex.frame.name} — {ex.frame.title}", text)
            self.assertIn(f"Example: `POST {ex.path}`", text)
            self.assertIn(ex.response["frame"], text)
            self.assertEqual(ex.wait is not None, ex.frame.reply is not None)

    def test_error_examples_are_client_errors(self) -> None:
        for title, _code, _body, status, answer in error_examples():
            self.assertEqual(status, 400, title)
            self.assertTrue(answer["message"], title)


class Replayed(TestCase):
    """Each documented call, made against a running proxy by a raw-socket pile."""

    timeout = 20

    @inlineCallbacks
    def fresh_pile(self, proxy: Any, login_seq: int) -> Any:
        """A new connection whose login the REST API accepts (its session counts seq from 0)."""
        link = yield connect_pile(self, proxy)
        link.send(0x01, example(0x01, PILE), seq=login_seq)
        yield barrier_login(proxy)
        return link

    @inlineCallbacks
    def test_every_example(self) -> None:
        proxy = start_proxy(self)  # no automatic answers: the examples do the answering
        for ex in command_examples():
            ft = ex.frame.ft
            if ex.frame.code == 0x02:
                link = yield self.fresh_pile(proxy, REQUEST_SEQ)
            else:
                link = yield self.fresh_pile(proxy, 0)
                accepted = yield call(proxy, "POST", "/proxy/02", {"id": PILE, "result": True})
                self.assertEqual(accepted.code, 200, accepted.body)
                yield link.expect(0x02)
                if ex.request is not None:
                    code, fields = ex.request
                    link.send(code, fields, seq=REQUEST_SEQ)
                    if code == 0x03:
                        yield link.expect(0x04)  # the automatic heartbeat answer
                    else:
                        yield barrier(link, PILE)
            pending = call(proxy, "POST", ex.path, ex.body)
            got = yield link.expect(ex.frame.code)
            self.assertEqual(got.raw.hex(), ex.response["frame"], f"0x{ft}")
            if ex.reply is not None:
                link.send(ex.reply[0], ex.reply[1], seq=got.seq)
            answer = yield pending
            self.assertEqual((answer.code, answer.body), (200, ex.response), f"0x{ft}")
            link.transport.loseConnection()
            yield link.lost

    @inlineCallbacks
    def test_error_examples(self) -> None:
        proxy = start_proxy(self)
        for title, code, body, status, answer in error_examples():
            got = yield call(proxy, "POST", f"/proxy/{code:02x}", raw=body.encode())
            self.assertEqual((got.code, got.body), (status, answer), title)


@inlineCallbacks
def barrier_login(proxy: Any) -> Any:
    """Wait until the proxy holds the pending login of PILE."""
    from tests.support import until

    yield until(
        lambda: proxy.piles.registry.find(PILE) is not None and not proxy.piles.registry.find(PILE).logged_in
    )
