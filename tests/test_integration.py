"""End to end over loopback: raw-socket piles → the real proxy → a real webhook consumer."""

from __future__ import annotations

import random

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.support import connect_pile, login, rest, settle, start_consumer, start_proxy
from ykcproxy.wire.codec import Codec
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.examples import example
from ykcproxy.wire.frames import CATALOGUE, Direction

PILE = "32010200000001"
UPLINK = sorted(code for code, f in CATALOGUE.items() if f.direction is Direction.UP)
CODEC = Codec()


def expected_json(code: int, pile_id: str = PILE) -> dict:
    """What the consumer must receive for ``example(code)``: the checked, decoded fields."""
    checked = CODEC.check(code, example(code, pile_id))
    return CODEC.decode_body(code, CODEC.encode_body(code, checked))


class EveryUplinkFrame(TestCase):
    """A pile sends each of the 30 uplink types; the consumer gets each as JSON."""

    @inlineCallbacks
    def check_all(self, crc_order: CrcOrder, chunking: str) -> None:
        consumer, url = start_consumer(self)
        proxy = start_proxy(
            self,
            servers=url,
            auto_verification=True,
            auto_billing_model_verify=True,
            auto_transaction_record_confirm=True,
        )
        link = yield connect_pile(self, proxy, crc_order)
        data = link.frame(0x01, example(0x01, PILE))
        for code in UPLINK:
            if code != 0x01:
                data += link.frame(code, example(code, PILE))
        rnd = random.Random(7)
        if chunking == "merged":
            link.write(data)
        else:
            pos = 0
            while pos < len(data):
                step = rnd.randint(1, 9)
                link.write(data[pos : pos + step])
                pos += step
                if rnd.random() < 0.2:
                    yield settle(0.001)
        yield consumer.count(len(UPLINK) + 1)
        yield settle(0.05)
        paths = [p.path for p in consumer.posts]
        self.assertEqual(paths[:2], ["/01", "/online"])
        self.assertEqual(paths[2:], [f"/{code:02x}" for code in UPLINK if code != 0x01])
        for post in consumer.posts:
            ft = post.path[1:]
            header = post.body.pop("header")
            self.assertEqual(header["frameId"], ft)
            self.assertEqual(post.headers["x-message-id"], header["messageId"])
            self.assertEqual(post.headers["content-type"], "application/json")
            if ft == "online":
                self.assertEqual(post.body["id"], PILE)
                continue
            code = int(ft, 16)
            self.assertEqual(post.body, expected_json(code), f"frame 0x{ft}")
            self.assertEqual(header["raw"][:2], "68")
            self.assertFalse(header["encrypted"])
        # The auto answers, each echoing the seq of its request, in the pile's CRC order.
        answers = {got.code: got for got in link.received}
        self.assertEqual(sorted(answers), [0x02, 0x04, 0x06, 0x40])
        for got in link.received:
            self.assertIs(got.crc_order, crc_order)
        sent_seq = {code: i + 1 for i, code in enumerate(c for c in UPLINK if c != 0x01)}
        self.assertEqual(answers[0x02].seq, 0)
        self.assertEqual(answers[0x04].seq, sent_seq[0x03])
        self.assertEqual(answers[0x06].seq, sent_seq[0x05])
        self.assertEqual(answers[0x40].seq, sent_seq[0x3B])
        self.assertEqual(answers[0x40].fields, {"tradeSeq": example(0x3B, PILE)["tradeSeq"], "result": 0})
        record = consumer.of("3b")[0]
        self.assertEqual(record.headers["x-message-id"], f"{PILE}-3b-{example(0x3B, PILE)['tradeSeq']}")

    def test_merged_low_first(self):
        return self.check_all(CrcOrder.LOW_FIRST, "merged")

    def test_split_high_first(self):
        return self.check_all(CrcOrder.HIGH_FIRST, "split")


class Logins(TestCase):
    """Pending logins, acceptance by REST, refusal and replacement."""

    @inlineCallbacks
    def test_pending_until_rest_accepts(self):
        consumer, url = start_consumer(self)
        proxy = start_proxy(self, servers=url)
        link = yield connect_pile(self, proxy)
        link.send(0x01, example(0x01, PILE), seq=0x1234)
        link.send(0x03, example(0x03, PILE))  # not served before the login is accepted
        yield consumer.count(1)
        yield settle(0.05)
        self.assertEqual([p.path for p in consumer.posts], ["/01"])
        code, body = yield rest(proxy, "GET", "/piles")
        self.assertEqual((code, body), (200, []))
        code, body = yield rest(proxy, "POST", "/proxy/02", {"id": PILE, "result": True})
        self.assertEqual(code, 200, body)
        reply = yield link.expect(0x02)
        self.assertEqual(reply.seq, 0x1234)
        self.assertTrue(reply.fields["result"])
        yield consumer.count(2)
        self.assertEqual(consumer.posts[1].path, "/online")
        link.send(0x03, example(0x03, PILE))
        yield link.expect(0x04)
        yield consumer.count(3)
        code, body = yield rest(proxy, "GET", f"/piles/{PILE}")
        self.assertEqual(code, 200)
        self.assertTrue(body["loggedIn"])

    @inlineCallbacks
    def test_refused_login_closes(self):
        proxy = start_proxy(self)
        link = yield connect_pile(self, proxy)
        link.send(0x01, example(0x01, PILE))
        yield settle(0.05)
        code, body = yield rest(proxy, "POST", "/proxy/02", {"id": PILE, "result": False})
        self.assertEqual(code, 200, body)
        reply = yield link.expect(0x02)
        self.assertFalse(reply.fields["result"])
        yield link.lost

    @inlineCallbacks
    def test_second_login_replaces(self):
        consumer, url = start_consumer(self)
        proxy = start_proxy(self, servers=url, auto_verification=True)
        first = yield login(self, proxy, PILE)
        second = yield login(self, proxy, PILE)
        yield first.lost
        yield consumer.count(5)
        events = [(p.path, p.body.get("reason")) for p in consumer.posts]
        self.assertEqual(
            events,
            [("/01", None), ("/online", None), ("/01", None), ("/offline", "replaced"), ("/online", None)],
        )
        self.assertTrue(second.connected)
        code, body = yield rest(proxy, "GET", "/piles")
        self.assertEqual(len(body), 1)

    @inlineCallbacks
    def test_stranger_cannot_knock_off(self):
        proxy = start_proxy(self)  # no auto verification
        real = yield connect_pile(self, proxy)
        real.send(0x01, example(0x01, PILE))
        yield settle(0.05)
        yield rest(proxy, "POST", "/proxy/02", {"id": PILE, "result": True})
        yield real.expect(0x02)
        stranger = yield connect_pile(self, proxy)
        stranger.send(0x01, example(0x01, PILE))
        yield settle(0.1)
        self.assertTrue(real.connected)
        self.assertIs(
            proxy.piles.registry.get(PILE).connection.remote, proxy.piles.registry.get(PILE).connection.remote
        )
        real.send(0x03, example(0x03, PILE))
        yield real.expect(0x04)

    @inlineCallbacks
    def test_bad_frames_do_not_disturb(self):
        consumer, url = start_consumer(self)
        proxy = start_proxy(self, servers=url, auto_verification=True)
        link = yield login(self, proxy, PILE)
        good = link.frame(0x03, example(0x03, PILE))
        bad_crc = good[:-1] + bytes([good[-1] ^ 0xFF])
        short = link.frame(0x13, example(0x13, PILE))
        wrong_len = bytes([0x68, short[1] - 1]) + short[2:-3]
        from ykcproxy.wire.codec import encode_frame

        wrong_len = encode_frame(0x13, 9, short[6:-3])  # one byte short body, valid CRC
        unknown = encode_frame(0x7E, 10, b"\x00" * 5)
        link.write(b"\x00\x11garbage" + bad_crc + wrong_len + unknown + b"\x68\x02" + good)
        yield link.expect(0x04)
        yield consumer.count(3)
        errors = proxy.metrics.render().decode()
        for kind in ("garbage", "crc", "decode", "unknown_type", "length"):
            self.assertIn(f'ykc_frame_errors_total{{kind="{kind}"}}', errors)
        self.assertTrue(link.connected)


class BatchMode(TestCase):
    """Opt-in HTTP batch mode: JSON arrays POSTed to <endpoint>/batch, per-pile order kept."""

    @inlineCallbacks
    def test_batches_in_order(self):
        consumer, url = start_consumer(self)
        proxy = start_proxy(self, servers=url, auto_verification=True, http_batch=20)
        piles = [f"3201020000001{i}" for i in range(3)]
        links = []
        for pile in piles:
            link = yield login(self, proxy, pile)
            links.append(link)
        for i in range(30):
            for pile, link in zip(piles, links):
                link.send(0x13, example(0x13, pile, salt=i))
        yield consumer.wait_for(lambda posts: sum(len(p.body) for p in posts) >= 3 * 32)
        self.assertEqual({p.path for p in consumer.posts}, {"/batch"})
        self.assertGreater(max(len(p.body) for p in consumer.posts), 1)
        self.assertLessEqual(max(len(p.body) for p in consumer.posts), 20)
        messages = [m for p in consumer.posts for m in p.body]
        for pile in piles:
            trades = [
                m["tradeSeq"] for m in messages if m.get("id") == pile and m["header"]["frameId"] == "13"
            ]
            self.assertEqual(trades, [example(0x13, pile, salt=i)["tradeSeq"] for i in range(30)])


class Failover(TestCase):
    """Several --servers are replicas: a failing one is skipped, the one that works stays current."""

    @inlineCallbacks
    def test_next_endpoint_on_failure(self):
        down, down_url = start_consumer(self)
        down.answer = lambda post: 503
        up, up_url = start_consumer(self)
        proxy = start_proxy(self, servers=(down_url, "http://" + up_url + "/"), auto_verification=True)
        link = yield login(self, proxy, PILE)
        for i in range(5):
            link.send(0x13, example(0x13, PILE, salt=i))
        yield up.count(7)
        self.assertEqual([p.path for p in up.posts], ["/01", "/online"] + ["/13"] * 5)
        self.assertEqual(down.posts, [])
        self.assertEqual(proxy.publisher.health()["endpoint"], "http://" + up_url)
        self.assertEqual(proxy.delivery.retries, 0)  # failover within one attempt, no backoff
