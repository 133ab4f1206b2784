"""Codec benchmark: decodes + JSON per second for each frame type, and encodes per second.

Runs in this process, on one core.  "decode+JSON" is what the proxy does
with every uplink frame it forwards: ``Codec.decode_body`` into a JSON-ready
dict, then the JSON text of ``{"header": …, **fields}`` as
``ykcproxy.pile.server`` builds it.  "encode" is ``Codec.encode_body`` of a
checked message plus ``encode_frame`` (length, seq, CRC).  The reference is
the bare framer (start byte, length, CRC check) splitting the same frames.

    python bench/codec.py [--seconds 0.3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_machine  # noqa: E402
from ykcproxy.jsonenc import dumps  # noqa: E402
from ykcproxy.wire.codec import Codec, encode_frame  # noqa: E402
from ykcproxy.wire.examples import example  # noqa: E402
from ykcproxy.wire.framer import Framer  # noqa: E402
from ykcproxy.wire.frames import CATALOGUE  # noqa: E402


def rate(fn: Callable[[], Any], seconds: float, batch: int = 200) -> float:
    """Calls of ``fn`` per second (best of 3 runs of ``seconds``)."""
    best = 0.0
    for _ in range(3):
        n = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while True:
            for _ in range(batch):
                fn()
            n += batch
            t = time.perf_counter()
            if t >= deadline:
                break
        best = max(best, n / (t - t0))
    return best


def main() -> None:
    """Print a table and optionally write JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=0.3)
    p.add_argument("--json", default="")
    p.add_argument("--codes", default="", help="only these frame types, hex, comma-separated (e.g. 13,3b)")
    args = p.parse_args()
    only = {int(c, 16) for c in args.codes.split(",") if c}
    m = print_machine()
    codec = Codec()
    rows = []
    print(
        f"{'ft':<3} {'name':<30} {'bytes':>5} {'decode/s':>10} {'decode+JSON/s':>14} "
        f"{'encode/s':>10} {'framer/s':>10} ratio"
    )
    for code in sorted(CATALOGUE):
        if only and code not in only:
            continue
        ft = CATALOGUE[code]
        msg = codec.check(code, example(code))
        body = codec.encode_body(code, msg)
        frame = encode_frame(code, 1, body)
        header = {"length": frame[1], "seq": 1, "encrypted": False, "frameId": ft.ft,
                  "messageId": "0123456789ab-1", "receivedAt": 1763900000000}  # fmt: skip

        def decode(code: int = code, body: bytes = body) -> Any:
            return codec.decode_body(code, body)

        def decode_json(
            code: int = code, body: bytes = body, frame: bytes = frame, header: dict[str, Any] = header
        ) -> Any:
            fields = codec.decode_body(code, body)
            return dumps({"header": {**header, "raw": frame.hex()}, **fields})

        def encode(code: int = code, msg: dict[str, Any] = msg) -> Any:
            return encode_frame(code, 1, codec.encode_body(code, msg))

        framer = Framer()
        blob = frame * 100

        def split(blob: bytes = blob, framer: Framer = framer) -> Any:
            return framer.feed(blob)

        row = {
            "ft": ft.ft,
            "name": ft.name,
            "bytes": len(frame),
            "decode": rate(decode, args.seconds),
            "decodeJson": rate(decode_json, args.seconds),
            "encode": rate(encode, args.seconds),
            "framer": rate(split, args.seconds, batch=2) * 100,
        }
        row["ratio"] = row["decodeJson"] / row["framer"]
        rows.append(row)
        print(
            f"{row['ft']:<3} {row['name']:<30} {row['bytes']:>5} {row['decode']:>10.0f} "
            f"{row['decodeJson']:>14.0f} {row['encode']:>10.0f} {row['framer']:>10.0f} {row['ratio']:.2f}"
        )
    r13 = next((r for r in rows if r["ft"] == "13"), None)
    if r13:
        print(
            f"0x13: {r13['decode']:.0f} decodes/s to a JSON-ready dict (target >= 100000: "
            f"{'met' if r13['decode'] >= 100_000 else 'NOT met'}), {r13['decodeJson']:.0f} decode+JSON/s"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": m, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
