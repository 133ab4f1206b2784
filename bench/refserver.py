"""The reference: a minimal Twisted server that only splits frames and answers heartbeats.

It is the ceiling of this stack (Twisted's TCP transport plus the project's
framer: start byte, length, CRC check in either byte order) against which
the benchmarks compare the proxy.  It answers 0x01 with 0x02, 0x03 with
0x04 and 0x05 with 0x06 (so that simulated piles log in and heartbeat) by
copying the pile id and gun from the request; every other frame is only
counted.  ``GET http://127.0.0.1:<stats-port>/stats`` gives the counts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def main() -> None:
    """Run the reference server until SIGTERM."""
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stats-port", type=int, required=True)
    p.add_argument("--reactor", default="default")
    p.add_argument("--backlog", type=int, default=50, help="listen backlog (Twisted's default: 50)")
    args = p.parse_args()
    from ykcproxy.sim.cli import install_reactor, raise_open_file_limit

    raise_open_file_limit()
    install_reactor(args.reactor)
    from twisted.internet import reactor as _reactor
    from twisted.internet.protocol import Factory, Protocol
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from ykcproxy.wire.codec import encode_frame
    from ykcproxy.wire.framer import Framer, RawFrame

    reactor: Any = _reactor
    counts = {"frames": 0, "errors": 0, "connections": 0}
    # request code -> (reply code, bytes of the request body to copy, bytes appended)
    answers = {0x01: (0x02, 7, b"\x00"), 0x03: (0x04, 8, b"\x00"), 0x05: (0x06, 9, b"\x00")}

    class Reference(Protocol):
        def connectionMade(self) -> None:
            self.framer = Framer()
            counts["connections"] += 1

        def connectionLost(self, reason: Any = None) -> None:
            counts["connections"] -= 1

        def dataReceived(self, data: bytes) -> None:
            frames = 0
            for item in self.framer.feed(data):
                if item.__class__ is not RawFrame:
                    counts["errors"] += 1
                    continue
                frames += 1
                answer = answers.get(item.code)  # type: ignore[union-attr]
                if answer is not None:
                    code, keep, tail = answer
                    body = item.body[:keep] + tail  # type: ignore[union-attr]
                    self.transport.write(encode_frame(code, item.seq, body, item.crc_order))  # type: ignore[union-attr]
            counts["frames"] += frames

    class Stats(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(counts).encode()

    factory = Factory.forProtocol(Reference)
    factory.noisy = False
    reactor.listenTCP(args.port, factory, backlog=args.backlog, interface="127.0.0.1")
    site = Site(Stats())
    site.noisy = False
    reactor.listenTCP(args.stats_port, site, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
