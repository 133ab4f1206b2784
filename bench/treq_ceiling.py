"""treq's own ceiling: POST one realistic message after another, as fast as treq can.

Same client setup as the proxy's HTTP publisher (treq over a persistent
HTTPConnectionPool, ``--concurrency`` POSTs in flight, keep-alive), same
consumer, no proxy.  Prints ``{"posts": n, "seconds": s, "perSecond": r}``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def main() -> None:
    """Run for ``--seconds`` and print the rate."""
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="endpoint prefix, e.g. http://127.0.0.1:8080")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--reactor", default="default")
    args = p.parse_args()
    from ykcproxy.sim.cli import install_reactor

    install_reactor(args.reactor)
    import treq
    from twisted.internet import reactor as _reactor
    from twisted.web.client import Agent, HTTPConnectionPool

    from ykcproxy.wire.codec import Codec, encode_frame
    from ykcproxy.wire.examples import example

    reactor: Any = _reactor
    codec = Codec()
    fields = codec.check(0x13, example(0x13))
    body = codec.encode_body(0x13, fields)
    raw = encode_frame(0x13, 1, body)
    header = {"length": raw[1], "seq": 1, "encrypted": False, "frameId": "13", "messageId": "x-1",
              "receivedAt": 1763900000000, "raw": raw.hex()}  # fmt: skip
    payload = json.dumps({"header": header, **codec.decode_body(0x13, body)}, separators=(",", ":")).encode()
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = args.concurrency
    pool.retryAutomatically = False
    client = treq.client.HTTPClient(Agent(reactor, pool=pool))
    url = args.url.rstrip("/") + "/13"
    state = {"posts": 0, "counting": False, "t0": 0.0}
    headers = {b"Content-Type": [b"application/json"], b"X-Message-Id": [b"x-1"]}

    def one(_: object = None) -> Any:
        d = client.post(url, data=payload, headers=headers, timeout=10)
        d.addCallback(lambda r: r.content())

        def done(_: object) -> Any:
            if state["counting"]:
                state["posts"] += 1
            if reactor.running and not state.get("stop"):
                return one()
            return None

        return d.addCallback(done)

    def start_counting() -> None:
        state["counting"], state["t0"] = True, time.monotonic()

    def finish() -> None:
        seconds = time.monotonic() - state["t0"]
        state["stop"] = True
        print(
            json.dumps({"posts": state["posts"], "seconds": seconds, "perSecond": state["posts"] / seconds})
        )
        reactor.stop()

    for _ in range(args.concurrency):
        one()
    reactor.callLater(args.warmup, start_counting)
    reactor.callLater(args.warmup + args.seconds, finish)
    reactor.run()


if __name__ == "__main__":
    main()
