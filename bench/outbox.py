"""The durable outbox on its own: messages/s and CPU per message, append then delete.

Two cases, in one run: the consumer acknowledges before the writer's commit
(the insert and delete cancel out, only the commit is paid), and it acknowledges
after (every message is inserted and deleted on disk).

    python bench/outbox.py [--messages 50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.internet.defer import inlineCallbacks  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from bench.common import print_machine  # noqa: E402
from ykcproxy.forward.base import Message  # noqa: E402
from ykcproxy.forward.outbox import SqliteOutbox  # noqa: E402

reactor: Any = _reactor
PAYLOAD = b"x" * 900  # about a forwarded 0x13


@inlineCallbacks
def one_run(messages: int, early_ack: bool) -> Any:
    """(messages/s, CPU µs per message, commits) of one run."""
    outbox = SqliteOutbox(tempfile.mkdtemp(prefix="ykc-outbox-bench-"), reactor)
    wall, cpu = time.perf_counter(), time.process_time()
    keys = []
    for i in range(messages):
        key, _ = outbox.append(Message("13", f"p{i % 100}", f"m{i}", PAYLOAD), confirm=False)
        if early_ack:
            outbox.delivered(key)
        else:
            keys.append(key)
        if i % 1000 == 999:  # let the reactor turn, as it would between reads
            yield deferLater(reactor, 0.001, lambda: None)
    yield outbox.dead_letters()  # a read: waits for everything before it
    for key in keys:
        outbox.delivered(key)
    yield outbox.dead_letters()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    commits = outbox.commits
    yield outbox.close()
    return messages / wall, cpu / messages * 1e6, commits


@inlineCallbacks
def main(args: argparse.Namespace) -> Any:
    print_machine()
    for early_ack, label in ((True, "acknowledged before commit"), (False, "acknowledged after commit")):
        runs = []
        for _ in range(args.repeat):
            result = yield one_run(args.messages, early_ack)
            runs.append(result)
        rate = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        commits = statistics.median(r[2] for r in runs)
        print(f"{label:28} {rate:9.0f} msg/s  {cpu:5.1f} µs CPU/msg  {commits:4.0f} commits (medians)")
    reactor.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=3)
    reactor.callWhenRunning(main, parser.parse_args())
    reactor.run()
