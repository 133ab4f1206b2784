"""Run ``twistd`` on a chosen reactor, optionally without a part of the proxy.

    run_proxy.py --reactor uvloop [--without tracker] -- -n ykcproxy ...

twistd installs the default (epoll) reactor unless told otherwise; uvloop
needs its loop handed to Twisted's asyncio reactor before twistd starts,
which ``twistd -r asyncio`` cannot do.  This wrapper installs the reactor,
then runs twistd with the remaining arguments.

``--without tracker`` runs the proxy with its charging-session tracker reading
no frame (the reference run the tracker's cost is measured against; the
product has no switch for it, the session rules are always on).  The frame
history has its own option, ``--frameHistory 0``.
"""

from __future__ import annotations

import sys


def leave_out(part: str) -> None:
    """Make one part of the proxy observe no frame (``tracker``)."""
    if part != "tracker":
        raise SystemExit(f"--without: unknown part {part!r} (known: tracker)")
    from ykcproxy.sessions.tracker import SessionTracker

    nothing = property(lambda self: frozenset())
    SessionTracker.up_types = nothing  # type: ignore[assignment, method-assign]
    SessionTracker.down_types = nothing  # type: ignore[assignment, method-assign]


def main() -> None:
    """Install the reactor named by ``--reactor``, then run twistd."""
    argv = sys.argv[1:]
    reactor = "default"
    if argv[:1] == ["--reactor"]:
        reactor, argv = argv[1], argv[2:]
    if argv[:1] == ["--without"]:
        for part in argv[1].split(","):
            leave_out(part)
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    from ykcproxy.sim.cli import install_reactor

    install_reactor(reactor)
    sys.argv = ["twistd", *argv]
    from twisted.scripts.twistd import run

    run()


if __name__ == "__main__":
    main()
