"""Run ``twistd`` on a chosen reactor: ``run_proxy.py --reactor uvloop -- -n ykcproxy ...``.

twistd installs the default (epoll) reactor unless told otherwise; uvloop
needs its loop handed to Twisted's asyncio reactor before twistd starts,
which ``twistd -r asyncio`` cannot do.  This wrapper installs the reactor,
then runs twistd with the remaining arguments.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Install the reactor named by ``--reactor``, then run twistd."""
    argv = sys.argv[1:]
    reactor = "default"
    if argv[:1] == ["--reactor"]:
        reactor, argv = argv[1], argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    from ykcproxy.sim.cli import install_reactor

    install_reactor(reactor)
    sys.argv = ["twistd", *argv]
    from twisted.scripts.twistd import run

    run()


if __name__ == "__main__":
    main()
