"""Loaded by every benchmark child when ``bench/gcprobe`` is on ``PYTHONPATH`` (``cluster.py --gc-log``).

Writes the garbage collector's pauses over 5 ms, one line each (``<unix time> gen<n> <ms>``),
to ``$YKC_GC_LOG_DIR/gc-<pid>.log`` (first line: the process's command line).  With
``$YKC_GC_FREEZE_AT``, a proxy (``bench/run_proxy.py``) collects and then calls
``gc.freeze()`` that many seconds after its start, so the objects alive then are no longer
scanned by later collections.
"""

import gc
import os
import sys
import threading
import time

_dir = os.environ.get("YKC_GC_LOG_DIR")
if _dir:
    _out = open(os.path.join(_dir, f"gc-{os.getpid()}.log"), "a", buffering=1)  # noqa: SIM115 - process-long
    _out.write(" ".join(sys.argv) + "\n")
    _started = [0.0]

    def _pause(phase: str, info: dict) -> None:
        if phase == "start":
            _started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - _started[0]) * 1000
        if ms > 5:
            _out.write(f"{time.time():.3f} gen{info['generation']} {ms:.1f}\n")

    gc.callbacks.append(_pause)

    _freeze_at = os.environ.get("YKC_GC_FREEZE_AT")
    if _freeze_at and any(a.endswith("run_proxy.py") for a in sys.argv):

        def _freeze() -> None:
            gc.collect()
            gc.freeze()
            _out.write(f"{time.time():.3f} frozen {gc.get_freeze_count()}\n")

        threading.Timer(float(_freeze_at), _freeze).start()
