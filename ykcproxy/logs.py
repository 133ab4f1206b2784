"""Log output: the level filter, the noise filter and the text or JSON observers.

One process-wide :data:`control` holds the settings (``--logFormat``,
``--logLevel``); the level is read at every event, so a SIGHUP reload takes
effect at once.  The observers are installed in one of three ways:

- ``ykcproxy`` (the console script) begins logging with :func:`observer`;
- ``twistd --logger ykcproxy.logs.observer ykcproxy`` does the same under twistd;
- plain ``twistd -n ykcproxy``: at service start, :func:`install_filters` wraps
  the observers twistd installed (the few lines logged before the service
  started, such as the open-file limit, are already written as text).

Dropped whatever the level: the ``Starting factory`` / ``Stopping factory``
lines Twisted writes for every client connection (webhook POSTs).  The access
log lines of ``/metrics`` and ``/healthz`` are left out by
:class:`ykcproxy.api.site.QuietSite`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

import attrs
import orjson
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    PredicateResult,
    formatEvent,
    globalLogBeginner,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from zope.interface import provider

from ykcproxy.config import LogFormat, LogLevelName

LEVELS: dict[LogLevelName, LogLevel] = {
    LogLevelName.DEBUG: LogLevel.debug,
    LogLevelName.INFO: LogLevel.info,
    LogLevelName.WARN: LogLevel.warn,
    LogLevelName.ERROR: LogLevel.error,
}

#: Message formats of per-connection noise, dropped at every level.
NOISE = ("Starting factory ", "Stopping factory ")


@attrs.define
class LogControl:
    """The log settings of this process (one per process: logging is global)."""

    format: LogFormat = LogFormat.TEXT
    level: LogLevelName = LogLevelName.INFO
    #: Whether this module's filter is already between the publisher and the output.
    installed: bool = False


control = LogControl()


def configure(config: Any) -> None:
    """Take ``--logFormat`` and ``--logLevel`` from a :class:`~ykcproxy.config.ProxyConfig`."""
    control.format = config.log_format
    control.level = config.log_level


def level_predicate(event: dict[str, Any]) -> PredicateResult:
    """Drop events below the current level (read per event: SIGHUP can change it)."""
    level = event.get("log_level", LogLevel.info)
    if level is None or level >= LEVELS[control.level]:
        return PredicateResult.maybe
    return PredicateResult.no


def noise_predicate(event: dict[str, Any]) -> PredicateResult:
    """Drop Twisted's per-connection factory lines."""
    text = event.get("log_format")
    if isinstance(text, str) and text.startswith(NOISE):
        return PredicateResult.no
    return PredicateResult.maybe


PREDICATES = (level_predicate, noise_predicate)


def _plain(value: Any) -> Any:
    """A JSON-able stand-in for a field value orjson cannot encode."""
    return repr(value)


def event_as_json(event: dict[str, Any]) -> str:
    """One log event as a compact JSON object and a newline.

    The keys: ``time`` (ISO 8601, UTC), ``level``, ``namespace``, ``text`` (the
    formatted message), ``failure`` (the traceback, if any), and every
    structured field of the event (keys not starting with ``log_``).
    """
    stamp = event.get("log_time") or time.time()
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z",
        "level": level.name if level is not None else "info",
        "namespace": event.get("log_namespace", ""),
        "text": formatEvent(event),
    }
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        record["failure"] = failure.getTraceback()
    for key, value in event.items():
        if key.startswith("log_") or key in record or key in ("format", "message", "isError", "system"):
            continue
        if key == "why" and value is None:
            continue
        record[key] = value
    try:
        data = orjson.dumps(record, default=_plain, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        simple = (str, int, float, bool)
        data = orjson.dumps({str(k): v if isinstance(v, simple) else repr(v) for k, v in record.items()})
    return data.decode() + "\n"


def jsonFileLogObserver(out: IO[str]) -> FileLogObserver:  # noqa: N802 - twisted.logger's naming
    """An observer writing :func:`event_as_json` lines to ``out``."""
    return FileLogObserver(out, event_as_json)


def filtered(output: Callable[[dict[str, Any]], None]) -> ILogObserver:
    """``output`` behind the level and noise filters."""
    return FilteringLogObserver(output, PREDICATES)  # type: ignore[arg-type]


def output_observer(out: IO[str]) -> Callable[[dict[str, Any]], None]:
    """The text or JSON observer of ``out``, as ``--logFormat`` says."""
    if control.format is LogFormat.JSON:
        return jsonFileLogObserver(out)
    return textFileLogObserver(out)


@provider(ILogObserver)
def observer() -> ILogObserver:
    """The twistd ``--logger`` factory: standard output, filtered, in the chosen format."""
    control.installed = True
    return filtered(output_observer(sys.stdout))


def begin(out: IO[str] | None = None) -> None:
    """Begin logging to ``out`` (standard output) with the filters (for ``ykcproxy``)."""
    control.installed = True
    globalLogBeginner.beginLoggingTo([filtered(output_observer(out or sys.stdout))], redirectStandardIO=False)


def install_filters() -> None:
    """Put the filters in front of the observers someone else (twistd) installed.

    With ``--logFormat json``, a file observer of twistd's is replaced by a JSON
    observer on the same file.  Does nothing if :func:`begin` or
    :func:`observer` already installed the filters.
    """
    if control.installed:
        return
    control.installed = True
    for existing in list(globalLogPublisher._observers):  # noqa: SLF001 - no public list of observers
        replacement = existing
        out = getattr(existing, "_outFile", None)
        if control.format is LogFormat.JSON and isinstance(existing, FileLogObserver) and out is not None:
            replacement = jsonFileLogObserver(out)
        globalLogPublisher.removeObserver(existing)
        globalLogPublisher.addObserver(filtered(replacement))


def set_level(level: LogLevelName) -> None:
    """Change the level (a SIGHUP reload)."""
    control.level = level
