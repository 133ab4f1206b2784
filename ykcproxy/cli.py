"""``ykcproxy``: the proxy in the foreground, like ``twistd -n ykcproxy`` (no pid file).

It also takes the command lines of the Go seed (``ykc-proxy-server``), so
that a script calling it keeps working with only the program name changed:

- every option as ``-flag v``, ``-flag=v``, ``--flag v`` or ``--flag=v``;
- a boolean (a ``Flag`` option) also bare, ``-flag`` meaning true, and as
  ``-flag true`` / ``-flag false``, read as meant (Go's own parser stops at
  the ``true`` and silently ignores every later flag).

An unknown flag is an error naming it.  Logs go to standard output, in the
``--logFormat`` chosen, from the first line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from twisted.python import usage

from ykcproxy.options.kinds import Flag
from ykcproxy.options.table import BY_NAME

#: Flags that are not options: they print something and exit.
_COMMANDS = {"help": "--help", "h": "--help", "version": "--version"}

PROGRAM = "ykcproxy"


class FlagError(usage.UsageError):
    """A command line that cannot be read; the message names the flag."""


def _is_boolean_word(text: str) -> bool:
    try:
        Flag().parse(text)
    except ValueError:
        return False
    return True


def translate(argv: Sequence[str]) -> list[str]:
    """``argv`` in the seed's forms, as ``--name=value`` arguments for :class:`~ykcproxy.options.Options`."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise FlagError(f"unexpected argument {arg!r} (options start with - or --; see --help)")
        body = arg[2:] if arg.startswith("--") else arg[1:]
        name, has_value, value = body.partition("=")
        if name in _COMMANDS and not has_value:
            out.append(_COMMANDS[name])
            continue
        option = BY_NAME.get(name)
        if option is None:
            close = [n for n in BY_NAME if n.lower() == name.lower()]
            hint = f" (did you mean -{close[0]}?)" if close else ""
            raise FlagError(f"unknown flag {arg.partition('=')[0]!r}{hint}; {PROGRAM} --help lists them")
        if not has_value:
            if isinstance(option.kind, Flag):
                if i < len(args) and _is_boolean_word(args[i]):
                    value = args[i]
                    i += 1
                else:
                    value = "true"
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                raise FlagError(f"flag {arg!r} needs a value")
        out.append(f"--{name}={value}")
    return out


def parse(argv: Sequence[str], environ: Any = None) -> Any:
    """The parsed :class:`~ykcproxy.options.Options` of a ``ykcproxy`` command line."""
    from ykcproxy.options.command_line import Options

    options = Options(environ=environ)
    options.synopsis = f"Usage: {PROGRAM} [options]"
    options.parseOptions(translate(argv))
    return options


def run(options: Any, reactor: Any = None) -> int:
    """Run the service of ``options`` until the reactor stops; returns the exit status."""
    from twisted.logger import Logger

    from ykcproxy import logs
    from ykcproxy.listeners import CannotListen
    from ykcproxy.service import makeService

    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    logs.configure(options.config)
    logs.begin()
    log = Logger(namespace="ykcproxy.cli")
    service: Any = makeService(options, reactor)
    try:
        service.privilegedStartService()
    except CannotListen as e:
        log.critical("{error}", error=str(e))
        return 1
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ykcproxy`` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        options = parse(args)
    except usage.UsageError as e:
        print(f"{PROGRAM}: {e}", file=sys.stderr)  # noqa: T201 - the command's output
        print(f"{PROGRAM}: try '{PROGRAM} --help' for the options", file=sys.stderr)  # noqa: T201
        return 2
    return run(options)


if __name__ == "__main__":
    raise SystemExit(main())
