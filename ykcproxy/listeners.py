"""The listening ports: Twisted endpoint services that say which option failed.

A :class:`Listener` is a ``StreamServerEndpointService`` that logs the
address it is bound to (read from ``listen()``'s result) and turns a failure
to listen into :class:`CannotListen`: one line naming the option and the
address, which ends ``twistd`` with a non-zero status and no traceback.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


class CannotListen(SystemExit):
    """A listener could not bind; the message names the option and the address."""


def describe_address(port: IListeningPort) -> str:
    """``host:port`` (or the path) a listening port is bound to."""
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is not None:
        shown = f"[{host}]" if ":" in host else host
        return f"{shown}:{address.port}"  # type: ignore[attr-defined]
    return str(getattr(address, "name", address))


def _reason(error: BaseException) -> str:
    if isinstance(error, CannotListenError):
        socket_error = error.socketError
        text = getattr(socket_error, "strerror", None) or str(socket_error)
        return str(text).lower()
    return str(error) or type(error).__name__


class Listener(StreamServerEndpointService):
    """Listens on an endpoint while running.

    :param label: what listens, for the log ("pile port", "REST API").
    :param option: the option that chose the address, for errors.
    :param description: the endpoint description (``tcp:27600:interface=0.0.0.0``).
    """

    _raiseSynchronously = True

    def __init__(self, label: str, option: str, description: str, factory: Any, reactor: Any) -> None:
        super().__init__(serverFromString(reactor, description), factory)
        self.label = label
        self.option = option
        self.description = description
        self._reactor = reactor
        #: The bound port, once listening.
        self.port: IListeningPort | None = None

    def _failed(self, error: BaseException) -> CannotListen:
        return CannotListen(
            f"ykcproxy: --{self.option}: {self.label} cannot listen on {self.description}: {_reason(error)}"
        )

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except Exception as e:  # noqa: BLE001 - any listen failure ends the start with one line
            raise self._failed(e) from None
        assert self._waitingForPort is not None
        self._waitingForPort.addCallbacks(self._bound, self._late_failure)

    def _bound(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        log.info(
            "{label} listening on {address} ({option})",
            label=self.label,
            address=describe_address(port),
            option=self.option,
        )
        return port

    def _late_failure(self, failure: Failure) -> None:
        """An endpoint that fails after start (asynchronously): log one line and stop."""
        error = failure.value if failure.value is not None else Exception(str(failure))
        log.critical("{error}", error=str(self._failed(error)))
        self._reactor.stop()

    def stopService(self) -> Deferred[None] | None:
        if self._waitingForPort is None:
            self.running = False
            return None
        self.port = None
        return super().stopService()  # type: ignore[no-any-return]
