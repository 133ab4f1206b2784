"""``?wait=`` on StubTreq and a Clock: the reply decoded; 504 when the clock runs out, 502 if the pile goes"""

from __future__ import annotations

from typing import Any

from tests.rest_helpers import CODEC, DOWNLINK, OTHER, PILE, StubTest, command_body, expected_fields
from tests.stub_api import StubApi
from tests.support import Http
from ykcproxy.sim.link import Received
from ykcproxy.wire.examples import example
from ykcproxy.wire.frames import CATALOGUE


class Waiting(StubTest):
    """``?wait=``: the reply comes back decoded; 504 on timeout, 502 when the pile goes away."""

    def setUp(self) -> None:
        self.stub = StubApi(forward=True)
        self.pile = self.stub.pile(PILE)

    def waiters(self) -> dict[str, Any]:
        return dict(self.stub.piles.waiters.by_pile)

    def wait_for(self, code: int, body: dict[str, Any], wait: float = 5) -> tuple[Any, Received]:
        """POST /proxy/<code>?wait=: the pending call and the frame the pile got."""
        d = self.waiting(self.stub, "POST", f"/proxy/{code:02x}?wait={wait}", body)
        return d, self.one_frame(self.pile, code)

    def posts(self) -> list[str]:
        """The paths the webhook consumer was sent so far."""
        self.stub.flush()
        return [p.path for p in self.stub.consumer.posts]

    def test_every_command_gets_its_reply(self) -> None:
        for code in DOWNLINK:
            frame = CATALOGUE[code]
            if frame.reply is None:
                continue
            body = command_body(code)
            pending, got = self.wait_for(code, body)
            checked = CODEC.check(code, body)
            reply = example(frame.reply, PILE, **{k: checked[k] for k in frame.match})
            self.pile.send(frame.reply, seq=got.seq, **reply)
            answer: Http = self.answered(self.stub, pending)
            self.assertEqual(answer.code, 200, answer.body)
            self.assertEqual(answer.body["reply"], expected_fields(frame.reply, reply), f"0x{code:02x}")
            self.assertEqual((answer.body["seq"], answer.body["frame"]), (got.seq, got.raw.hex()))
        self.assertEqual(self.waiters(), {})
        # Every reply was forwarded as well (after the login and the online event).
        replies = [f"/{CATALOGUE[c].reply:02x}" for c in DOWNLINK if CATALOGUE[c].reply]
        self.assertEqual(len(replies), 14)
        self.assertEqual(self.posts(), ["/01", "/online", *replies])

    def test_timeout_is_504_and_says_the_frame_was_sent(self) -> None:
        pending, got = self.wait_for(0x92, {"id": PILE, "control": 1}, wait=0.2)
        self.stub.clock.advance(0.19)
        self.stub.flush()
        self.assertNoResult(pending)
        self.stub.clock.advance(0.02)
        answer = self.answered(self.stub, pending)
        self.assertEqual(answer.code, 504)
        self.assertEqual(
            answer.body,
            {
                "message": f"no 0x91 reply from pile {PILE} within 0.2 s; the 0x92 frame was sent (seq 0)",
                "seq": 0,
                "frame": got.raw.hex(),
            },
        )
        self.assertEqual(self.waiters(), {})
        # A late reply is still forwarded.
        self.pile.send(0x91)
        self.assertEqual(self.posts()[-1], "/91")

    def test_disconnect_is_502_at_once(self) -> None:
        pending, got = self.wait_for(0x36, {"id": PILE, "gunId": "01"}, wait=20)
        self.pile.lose()
        answer = self.answered(self.stub, pending)  # no clock time has passed
        self.assertEqual(answer.code, 502)
        self.assertEqual(
            answer.body,
            {
                "message": f"pile {PILE} went offline (closed) while waiting for its 0x35 reply; "
                "the 0x36 frame was sent (seq 0)",
                "seq": 0,
                "frame": got.raw.hex(),
            },
        )
        self.assertEqual(self.waiters(), {})

    def test_replies_are_matched_by_trade_and_gun_not_by_order(self) -> None:
        trade_1 = PILE + "01" + "250102030405" + "0001"
        trade_2 = PILE + "02" + "250102030405" + "0002"
        first, _ = self.wait_for(0x34, command_body(0x34, tradeSeq=trade_1, gunId="01"))
        second, _ = self.wait_for(0x34, command_body(0x34, tradeSeq=trade_2, gunId="02"))
        # Not matching either: same gun, other trade; and the other pile's reply.
        self.pile.send(0x33, tradeSeq=PILE + "01" + "250102030405" + "0009", gunId="01")
        self.pile.send(0x33, tradeSeq=trade_2, gunId="02", result=False, reason=2)
        self.pile.send(0x33, tradeSeq=trade_1, gunId="01", result=True, reason=0)
        answer_1 = self.answered(self.stub, first)
        answer_2 = self.answered(self.stub, second)
        self.assertEqual(
            (answer_1.body["reply"]["tradeSeq"], answer_1.body["reply"]["result"]), (trade_1, True)
        )
        self.assertEqual((answer_2.body["reply"]["tradeSeq"], answer_2.body["reply"]["reason"]), (trade_2, 2))

    def test_replies_from_other_piles_or_guns_do_not_count(self) -> None:
        other = self.stub.pile(OTHER)
        pending, _ = self.wait_for(0x36, {"id": PILE, "gunId": "01"})
        other.send(0x35, gunId="01")
        self.pile.send(0x35, gunId="02")
        self.stub.flush()
        self.assertNoResult(pending)
        self.pile.send(0x35, gunId="01", reason=0)
        answer = self.answered(self.stub, pending)
        self.assertEqual(answer.body["reply"], {"id": PILE, "gunId": "01", "result": True, "reason": 0})

    def test_without_wait_it_is_fire_and_forget(self) -> None:
        answer, _ = self.sent(self.stub, self.pile, 0x12, {"id": PILE, "gunId": "01"})
        self.assertNotIn("reply", answer.body)
        self.assertEqual(self.waiters(), {})

    def test_a_failed_send_cancels_the_wait(self) -> None:
        def broken(*args: Any) -> Any:
            raise RuntimeError("transport exploded")

        self.patch(self.stub.piles, "command", broken)
        answer = self.answer(self.stub, "POST", "/proxy/92?wait=5", {"id": PILE, "control": 1})
        self.assertEqual((answer.code, answer.body), (500, {"message": "internal error (logged)"}))
        self.assertEqual(self.waiters(), {})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
