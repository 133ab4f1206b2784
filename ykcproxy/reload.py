"""What SIGHUP reloads: a registry of named reload functions.

A part that can take new settings without a restart registers a function
that re-reads them and returns a short description of what it loaded (or
``None``)::

    service.reloads.register("allowList", allow_list.reload)

:meth:`Reloads.reload_all` calls every registered function in registration
order, logs what each reloaded, and keeps going when one fails (its error is
logged, the old settings stay).  :func:`install_sighup` makes SIGHUP call it
on the reactor thread.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

log = Logger()

#: A reload function: re-reads its settings, returns what it loaded (for the log) or None.
Reload = Callable[[], "str | None"]


class Reloads:
    """Named reload functions, called in registration order on SIGHUP."""

    def __init__(self) -> None:
        self._items: dict[str, Reload] = {}

    def register(self, name: str, reload: Reload) -> Callable[[], None]:
        """Register ``reload`` under ``name`` (replacing one of that name); returns an unregister function."""
        self._items[name] = reload

        def unregister() -> None:
            if self._items.get(name) is reload:
                del self._items[name]

        return unregister

    @property
    def names(self) -> list[str]:
        """The registered names, in order."""
        return list(self._items)

    def reload_all(self) -> dict[str, str | None]:
        """Call every reload function; returns name -> what it loaded (failed ones are left out)."""
        done: dict[str, str | None] = {}
        for name, reload in list(self._items.items()):
            try:
                what = reload()
            except Exception as e:  # noqa: BLE001 - one bad reload must not stop the others
                log.error("reload of {name} failed, the old settings stay: {error}", name=name, error=e)
                continue
            done[name] = what
            log.info("reloaded {name}: {what}", name=name, what=what if what is not None else "done")
        log.info(
            "SIGHUP: reloaded {count} of {total} ({names})",
            count=len(done),
            total=len(self._items),
            names=", ".join(done) or "nothing",
        )
        return done


def install_sighup(reloads: Reloads, reactor: Any) -> Callable[[], None]:
    """Make SIGHUP run ``reloads.reload_all()`` on the reactor thread; returns the uninstaller.

    The signal handler itself only schedules the work (``callFromThread`` is
    safe from a signal handler; the reload runs between reactor events).
    """
    if not hasattr(signal, "SIGHUP"):
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        reactor.callFromThread(reloads.reload_all)

    previous = signal.signal(signal.SIGHUP, handler)

    def uninstall() -> None:
        if signal.getsignal(signal.SIGHUP) is handler:
            signal.signal(signal.SIGHUP, previous)

    return uninstall
