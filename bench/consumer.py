"""A fast webhook consumer for the HTTP benchmarks: answers every POST 200 at once.

A bare asyncio (uvloop when installed) HTTP/1.1 server with keep-alive: it
parses just enough (request line, Content-Length) to count the messages,
so that it is not the bottleneck.  ``POST <prefix>/batch`` bodies are JSON
arrays and count as one message per element.  ``GET /stats`` answers
``{"posts": n, "messages": m, "bytes": b}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json

COUNTS = {"posts": 0, "messages": 0, "bytes": 0, "batches": 0}
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Consumer(asyncio.Protocol):
    """One keep-alive connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buf[:end])
            length = 0
            lower = head.lower()
            i = lower.find(b"content-length:")
            if i >= 0:
                length = int(lower[i + 15 : lower.find(b"\r\n", i) if lower.find(b"\r\n", i) > 0 else None])
            if len(buf) < end + 4 + length:
                break
            body = bytes(buf[end + 4 : end + 4 + length])
            del buf[: end + 4 + length]
            line = head.split(b"\r\n", 1)[0]
            method, path = line.split(b" ", 2)[:2]
            if method == b"GET":
                payload = json.dumps(COUNTS).encode()
                out.append(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
                continue
            COUNTS["posts"] += 1
            COUNTS["bytes"] += length
            if path.endswith(b"/batch"):
                COUNTS["batches"] += 1
                COUNTS["messages"] += len(json.loads(body))
            else:
                COUNTS["messages"] += 1
            out.append(OK)
        if out:
            self.transport.write(b"".join(out))


def main() -> None:
    """Serve until killed."""
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Consumer, "127.0.0.1", args.port, backlog=1024)
        await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
