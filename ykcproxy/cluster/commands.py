"""Commands as NATS requests: ``<commandSubjectPrefix>.<ft>`` with the REST body as payload.

The subscription is on a connection the proxy has anyway (the cluster link's,
else the forwarding publisher's: :mod:`ykcproxy.cluster.shared`), in that
connection's asyncio loop thread; each request is handed to the reactor thread, run by the
transport-independent :class:`~ykcproxy.api.commands.CommandRunner`, and its
``{"status": <http status>, ...the REST answer}`` handed back to the loop as the
reply.  The reactor thread never blocks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ykcproxy.api.commands import CommandRunner
from ykcproxy.cluster import redact_servers
from ykcproxy.cluster.shared import SharedConnection
from ykcproxy.jsonenc import dumps

__all__ = ["NatsCommands", "NatsCommandsService", "decode_request"]


def decode_request(payload: bytes) -> tuple[Any, object]:
    """The command body and its ``wait`` of a request payload (a non-object body is left to the checks)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None, None
    if isinstance(body, dict):
        body = dict(body)
        wait = body.pop("wait", None)
        return body, wait
    return body, None


class NatsCommands:
    """Answers command requests on ``<prefix>.<ft>`` from the piles of one runner.

    It opens no connection of its own: it subscribes on ``connection`` (the cluster
    link's, else the forwarding publisher's), on each new client of it.
    """

    log = Logger()

    def __init__(
        self,
        runner: CommandRunner,
        reactor: Any,
        connection: SharedConnection,
        prefix: str,
        server: str = "",
        queue: str = "",
        stop_timeout: float = 5.0,
    ) -> None:
        self.runner = runner
        #: The NATS queue group of the subscription ('' : none). The public command
        #: subjects use one, so that of several instances exactly one takes each request.
        self.queue = queue
        self.reactor = reactor
        self.connection = connection
        #: The servers of the connection (for the log only).
        self.server = server
        self.prefix = prefix
        self.stop_timeout = stop_timeout
        #: The client subscribed on and its subscription (loop thread).
        self._client: Any = None
        self._subscription: Any = None
        self._started: Deferred[None] = Deferred()
        #: Non-command requests answered on ``<prefix>.<name>`` (e.g. the cluster's session
        #: lookup): name -> a function of the payload giving ``(status, answer)``.
        self.lookups: dict[str, Callable[[bytes], Deferred[tuple[int, dict[str, Any]]]]] = {}

    # -- reactor thread ---------------------------------------------------------
    def start(self) -> Deferred[None]:
        """Subscribe on the shared connection; fires when subscribed the first time."""
        self.connection.attach(self._subscribe)
        self.log.info(
            "NATS commands on {subject} via {server}",
            subject=f"{self.prefix}.<ft>",
            server=redact_servers(self.server),
        )
        return self._started

    def stop(self) -> Deferred[None]:
        """Unsubscribe (the connection stays, its owner closes it); fires when done or after
        ``stop_timeout``."""
        self.connection.detach(self._subscribe)
        done: Deferred[None] = Deferred()
        timer: list[Any] = []

        def finished() -> None:
            for call in timer:
                if call.active():
                    call.cancel()
            if not done.called:
                done.callback(None)

        async def unsubscribe() -> None:
            subscription, self._subscription, self._client = self._subscription, None, None
            try:
                if subscription is not None:
                    await subscription.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection is closing anyway
                pass
            self.reactor.callFromThread(finished)

        if self.connection.run(unsubscribe):
            timer.append(self.reactor.callLater(self.stop_timeout, finished))
        else:
            finished()
        return done

    def _handle(self, subject: str, reply: str, payload: bytes) -> None:
        ft = subject[len(self.prefix) + 1 :]
        body, wait = decode_request(payload)
        lookup = self.lookups.get(ft)
        if lookup is not None:
            d: Deferred[Any] = lookup(payload)
        elif body is None and payload.strip() not in (b"null",):
            d = Deferred()
            d.callback((400, {"message": "body: must be a JSON object"}))
        else:
            d = self.runner.answer(ft, body, wait)

        def send(result: tuple[int, dict[str, Any]]) -> None:
            status, answer = result
            data = dumps({"status": status, **answer})
            if reply:
                self.connection.call(self._publish, reply, data)

        d.addCallback(send)
        d.addErrback(lambda f: self.log.failure("NATS command {ft} failed", f, ft=ft))

    # -- loop thread ------------------------------------------------------------
    def _publish(self, subject: str, data: bytes) -> None:
        client = self._client
        if client is None:
            return
        limit = getattr(client, "max_payload", 0)
        if limit and len(data) > limit:
            message = (
                f"the answer ({len(data)} bytes) is larger than the NATS server's max_payload "
                f"({limit} bytes): ask for less (e.g. a smaller limit)"
            )
            data = dumps({"status": 502, "message": message})
        asyncio.ensure_future(client.publish(subject, data))

    async def _subscribe(self, client: Any) -> None:
        if client is self._client:
            return
        self._client = client

        async def on_message(msg: Any) -> None:
            self.reactor.callFromThread(self._handle, msg.subject, msg.reply, msg.data)

        try:
            self._subscription = await client.subscribe(f"{self.prefix}.*", queue=self.queue, cb=on_message)
            await client.flush()
        except Exception as e:  # noqa: BLE001 - reported to the reactor
            message = str(e) or type(e).__name__
            self.reactor.callFromThread(self._fail, message)
            return
        self.reactor.callFromThread(self._ok)

    def _ok(self) -> None:
        if not self._started.called:
            self._started.callback(None)

    def _fail(self, message: str) -> None:
        text = f"NATS commands: cannot subscribe on {redact_servers(self.server)}: {message}"
        if not self._started.called:
            self._started.errback(RuntimeError(text))
        else:
            self.log.error("{message}", message=text)


class NatsCommandsService(Service):
    """Starts :class:`NatsCommands` with the proxy and unsubscribes it at stop."""

    def __init__(self, commands: NatsCommands) -> None:
        self.commands = commands

    def startService(self) -> None:
        """Subscribe in the background; a failure is logged (the pile side keeps running)."""
        super().startService()
        d = self.commands.start()
        d.addErrback(lambda f: NatsCommands.log.error("{message}", message=f.getErrorMessage()))

    def stopService(self) -> Deferred[None]:
        """Unsubscribe."""
        super().stopService()
        return self.commands.stop()
