"""The daemon's operations: log filters, the SIGHUP reload, and a stop bounded in time.

:class:`OperationsService` is the first child of the proxy's service tree
(so it stops last).  When the service runs as a daemon (``ykcproxy`` or
``twistd ykcproxy``: :meth:`OperationsService.activate`), its start puts the
log filters in place and installs the SIGHUP handler; tests that build a
:class:`~ykcproxy.service.ProxyService` directly leave both alone.

:func:`stop_within` stops a ``MultiService``'s children like
``MultiService.stopService`` does, but fires after ``timeout`` seconds at the
latest, logging which parts had not finished.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ykcproxy import logs
from ykcproxy.config import LogLevelName, ProxyConfig
from ykcproxy.reload import Reloads, install_sighup

log = Logger()


class OperationsService(Service):
    """Log filters and SIGHUP while running; :attr:`reloads` is the SIGHUP registry."""

    name = "operations"

    def __init__(self, config: ProxyConfig, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.reloads = Reloads()
        #: The config file (``--config``) re-read on SIGHUP ('' : none).
        self.config_file = ""
        #: Where each explicitly set option came from ("command line", "environment", the file).
        self.sources: dict[str, str] = {}
        self.active = False
        self._uninstall = lambda: None

    def activate(self, config_file: str = "", sources: dict[str, str] | None = None) -> None:
        """Run as the daemon: filters on the process's log, SIGHUP reloads (call before start)."""
        self.active = True
        self.config_file = config_file
        self.sources = dict(sources or {})
        logs.configure(self.config)
        self.reloads.register("logLevel", self.reload_log_level)

    def startService(self) -> None:
        super().startService()
        if not self.active:
            return
        logs.install_filters()
        self._uninstall = install_sighup(self.reloads, self.reactor)
        log.info(
            "running (pid {pid}, log level {logLevel}); SIGHUP reloads: {names}",
            pid=os.getpid(),
            logLevel=logs.control.level.value,
            names=", ".join(self.reloads.names),
        )

    def stopService(self) -> None:
        super().stopService()
        self._uninstall()
        self._uninstall = lambda: None

    def reload_log_level(self) -> str:
        """Re-read ``logLevel`` from the config file (the command line and environment still win)."""
        before = logs.control.level
        source = self.sources.get("logLevel")
        if source in ("command line", "environment"):
            return f"logLevel stays {before.value} (set on the {source})"
        if not self.config_file:
            return f"logLevel stays {before.value} (no --config file)"
        from ykcproxy.options.config_file import read_config_file
        from ykcproxy.options.table import BY_NAME

        values = read_config_file(self.config_file, BY_NAME)
        level: LogLevelName = values.get("logLevel", BY_NAME["logLevel"].default)
        logs.set_level(level)
        if level is before:
            return f"logLevel {level.value} (unchanged)"
        return f"logLevel {before.value} -> {level.value}"


def _label(service: IService) -> str:
    return str(getattr(service, "label", None) or service.name or type(service).__name__)


def stop_within(parent: MultiService, timeout: float, clock: Any) -> Deferred[None]:
    """Stop ``parent`` and its children (in reverse order); fires within ``timeout`` seconds.

    If some children have not finished by then, their names are logged and
    the Deferred fires anyway: the process exits with what is done.
    """
    Service.stopService(parent)
    children: Iterable[IService] = reversed(list(parent))
    pending: dict[int, str] = {}
    stops = []
    for index, child in enumerate(children):
        pending[index] = _label(child)
        d = maybeDeferred(child.stopService)

        def done(result: Any, index: int = index) -> None:
            name = pending.pop(index, "?")
            if isinstance(result, Failure):
                log.failure("shutdown: stopping {part} failed", result, part=name)

        stops.append(d.addBoth(done))
    finished: Deferred[None] = Deferred()

    def all_done(_: Any) -> None:
        if call.active():
            call.cancel()
        if not finished.called:
            finished.callback(None)

    def too_late() -> None:
        log.warn(
            "shutdown: not finished after {timeout:g} s (--shutdownTimeout), stopping anyway; "
            "still pending: {pending}",
            timeout=timeout,
            pending=", ".join(pending.values()),
        )
        finished.callback(None)

    call = clock.callLater(timeout, too_late)
    DeferredList(stops, consumeErrors=True).addCallback(all_done)
    return finished
