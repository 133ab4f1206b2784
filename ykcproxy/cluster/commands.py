"""Commands as NATS requests: ``<commandSubjectPrefix>.<ft>`` with the REST body as payload.

nats-py runs in its own asyncio loop on a daemon thread (as the forwarding
publisher does); each request is handed to the reactor thread, run by the
transport-independent :class:`~ykcproxy.api.commands.CommandRunner`, and its
``{"status": <http status>, ...the REST answer}`` handed back to the loop as the
reply.  The reactor thread never blocks.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ykcproxy.api.commands import CommandRunner
from ykcproxy.cluster import connect_options, redact_servers

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
    """Answers command requests on ``<prefix>.<ft>`` from the piles of one runner."""

    log = Logger()

    def __init__(
        self,
        runner: CommandRunner,
        reactor: Any,
        server: str,
        prefix: str,
        username: str = "",
        password: str = "",
        connect_timeout: float = 10.0,
        queue: str = "",
    ) -> None:
        self.runner = runner
        #: The NATS queue group of the subscription ('' : none). The public command
        #: subjects use one, so that of several instances exactly one takes each request.
        self.queue = queue
        self.reactor = reactor
        self.server = server
        self.prefix = prefix
        self._credentials = (username, password)
        self.connect_timeout = connect_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._started: Deferred[None] | None = None
        #: Non-command requests answered on ``<prefix>.<name>`` (e.g. the cluster's session
        #: lookup): name -> a function of the payload giving ``(status, answer)``.
        self.lookups: dict[str, Callable[[bytes], Deferred[tuple[int, dict[str, Any]]]]] = {}

    # -- reactor thread ---------------------------------------------------------
    def start(self) -> Deferred[None]:
        """Start the loop thread, connect and subscribe; fires when subscribed."""
        self._loop = asyncio.new_event_loop()
        self._started = Deferred()
        self._thread = threading.Thread(target=self._thread_main, name="ykcproxy-nats-commands", daemon=True)
        self._thread.start()
        self.log.info(
            "NATS commands on {subject} via {server}",
            subject=f"{self.prefix}.<ft>",
            server=redact_servers(self.server),
        )
        return self._started

    def stop(self) -> Deferred[None]:
        """Drain the subscription and end the loop thread."""
        done: Deferred[None] = Deferred()
        loop = self._loop
        if loop is None or self._thread is None:
            done.callback(None)
            return done
        thread = self._thread

        def finished() -> None:
            self.reactor.callFromThread(done.callback, None)

        async def close() -> None:
            try:
                if self._nc is not None:
                    await self._nc.drain()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            loop.stop()

        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(close()))

        def join() -> None:
            thread.join(5)
            finished()

        threading.Thread(target=join, daemon=True).start()
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
            data = json.dumps({"status": status, **answer}, ensure_ascii=False).encode()
            if reply and self._loop is not None:
                self._loop.call_soon_threadsafe(self._publish, reply, data)

        d.addCallback(send)
        d.addErrback(lambda f: self.log.failure("NATS command {ft} failed", f, ft=ft))

    # -- loop thread ------------------------------------------------------------
    def _publish(self, subject: str, data: bytes) -> None:
        if self._nc is not None:
            asyncio.ensure_future(self._nc.publish(subject, data))

    def _thread_main(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.create_task(self._connect())
        self._loop.run_forever()
        self._loop.close()

    async def _connect(self) -> None:
        import nats

        options = connect_options(self.server, *self._credentials)
        try:
            self._nc = await nats.connect(**options, connect_timeout=self.connect_timeout)

            async def on_message(msg: Any) -> None:
                self.reactor.callFromThread(self._handle, msg.subject, msg.reply, msg.data)

            await self._nc.subscribe(f"{self.prefix}.*", queue=self.queue, cb=on_message)
            await self._nc.flush()
        except Exception as e:  # noqa: BLE001 - reported to the reactor
            message = str(e) or type(e).__name__
            self.reactor.callFromThread(self._fail, message)
            return
        self.reactor.callFromThread(self._ok)

    def _ok(self) -> None:
        if self._started is not None and not self._started.called:
            self._started.callback(None)

    def _fail(self, message: str) -> None:
        if self._started is not None and not self._started.called:
            self._started.errback(
                RuntimeError(f"NATS commands: cannot connect to {redact_servers(self.server)}: {message}")
            )


class NatsCommandsService(Service):
    """Starts :class:`NatsCommands` with the proxy and drains it at stop."""

    def __init__(self, commands: NatsCommands) -> None:
        self.commands = commands

    def startService(self) -> None:
        """Connect in the background; a failure is logged (the pile side keeps running)."""
        super().startService()
        d = self.commands.start()
        d.addErrback(lambda f: NatsCommands.log.error("{message}", message=f.getErrorMessage()))

    def stopService(self) -> Deferred[None]:
        """Drain the subscription."""
        super().stopService()
        return self.commands.stop()
