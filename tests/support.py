"""Real components for integration tests: the proxy on ephemeral loopback ports,
a webhook consumer (a real twisted.web server), raw-socket piles and a REST client."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import treq
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ykcproxy.config import MessagingType
from ykcproxy.options import default_config
from ykcproxy.service import ProxyService
from ykcproxy.sim.link import PileLink
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.examples import example

reactor: Any = _reactor
_POOL = HTTPConnectionPool(reactor, persistent=False)


@attrs.define
class Post:
    """One webhook POST the consumer received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes = b""


class Consumer(Resource):
    """A webhook consumer: records every POST; ``answer`` picks the status code.

    ``posts`` are the frames and pile events; the ``session`` messages of the
    charging-session tracker are kept apart in ``sessions`` (the example frames
    start orders nobody saw start, which the tracker reports).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[Post] = []
        self.sessions: list[Post] = []
        self.answer: Callable[[Post], int] = lambda post: 200
        self.delay: float = 0.0
        self._waiters: list[tuple[Callable[[list[Post]], bool], Deferred[None]]] = []

    def render_POST(self, request: Any) -> Any:
        raw = request.content.read()
        body = json.loads(raw)
        headers = {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        post = Post(request.path.decode(), headers, body, raw)
        code = self.answer(post)
        if 200 <= code < 300:
            (self.sessions if post.path == "/session" else self.posts).append(post)
            self._check()
        request.setResponseCode(code)
        if self.delay:
            reactor.callLater(self.delay, lambda: (request.write(b"{}"), request.finish()))
            return NOT_DONE_YET
        return b"{}"

    def _check(self) -> None:
        for entry in list(self._waiters):
            predicate, d = entry
            if predicate(self.posts):
                self._waiters.remove(entry)
                d.callback(None)

    def wait_for(self, predicate: Callable[[list[Post]], bool], timeout: float = 10.0) -> Deferred[None]:
        """Fires once ``predicate(posts)`` holds (fails after ``timeout``)."""
        d: Deferred[None] = Deferred()
        if predicate(self.posts):
            d.callback(None)
            return d
        self._waiters.append((predicate, d))
        d.addTimeout(timeout, reactor)
        return d

    def count(self, n: int, timeout: float = 10.0) -> Deferred[None]:
        """Fires once ``n`` POSTs were received."""
        return self.wait_for(lambda posts: len(posts) >= n, timeout)

    def of(self, ft: str) -> list[Post]:
        """The POSTs to ``/<ft>``."""
        if ft == "session":
            return list(self.sessions)
        return [p for p in self.posts if p.path == f"/{ft}"]


def start_consumer(test: TestCase) -> tuple[Consumer, str]:
    """A running webhook consumer and its URL prefix (stopped at cleanup)."""
    consumer = Consumer()
    # Runs last: lets the consumer's side of closed keep-alive connections go away.
    test.addCleanup(settle, 0.05)
    site = Site(consumer)
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    return consumer, f"127.0.0.1:{port.getHost().port}"


def start_proxy(test: TestCase, **settings: Any) -> ProxyService:
    """Start the real proxy service on ephemeral loopback ports (stopped at cleanup)."""
    settings.setdefault("host", "127.0.0.1")
    settings.setdefault("tcp_port", 0)
    settings.setdefault("http_port", 0)
    settings.setdefault("data_dir", test.mktemp())
    if "servers" in settings and isinstance(settings["servers"], str):
        settings["servers"] = (settings["servers"],)
    if not settings.get("servers") and "messaging" not in settings:
        settings["messaging"] = MessagingType.NONE
    service = ProxyService(default_config(**settings), reactor)
    service.privilegedStartService()
    service.startService()
    test.addCleanup(service.stopService)
    return service


@inlineCallbacks
def connect_pile(test: TestCase, service: ProxyService, crc_order: CrcOrder = CrcOrder.LOW_FIRST) -> Any:
    """A raw-socket pile connected to the proxy's pile port (closed at cleanup)."""
    link = PileLink(crc_order=crc_order)
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", service.tcp_port), link)

    def close() -> Deferred[None]:
        if link.connected:
            assert link.transport is not None
            link.transport.loseConnection()
        return link.lost

    test.addCleanup(close)
    return link


@inlineCallbacks
def login(test: TestCase, service: ProxyService, pile_id: str, **kw: Any) -> Any:
    """Connect a pile and log it in (the proxy must auto-accept); returns the link."""
    link = yield connect_pile(test, service, **kw)
    link.send(0x01, example(0x01, pile_id))
    reply = yield link.expect(0x02)
    test.assertTrue(reply.fields["result"])
    return link


@attrs.frozen
class Http:
    """An answer of the REST API."""

    code: int
    body: Any
    headers: dict[str, str]


@inlineCallbacks
def call(
    proxy: Any,
    method: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[bytes, list[bytes]] | None = None,
) -> Any:
    """Call the proxy's REST API over loopback; returns an :class:`Http`."""
    url = f"http://127.0.0.1:{proxy.http_port}{path}"
    data, sent = request_parts(body, raw, headers)
    response = yield treq.request(method, url, data=data, headers=sent, pool=_POOL)
    content = yield response.content()
    return answer_of(response, content)


def request_parts(
    body: Any, raw: bytes | None, headers: dict[bytes, list[bytes]] | None
) -> tuple[bytes | None, dict[bytes, list[bytes]]]:
    """The body bytes (``raw``, or ``body`` as JSON) and the headers of a REST call."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    return data, {b"Content-Type": [b"application/json"], **(headers or {})}


def answer_of(response: Any, content: bytes) -> Http:
    """The :class:`Http` of a response and its body (JSON decoded when it is JSON)."""
    try:
        decoded = json.loads(content)
    except ValueError:
        decoded = content.decode()
    got = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
    return Http(response.code, decoded, got)


@inlineCallbacks
def rest(service: ProxyService, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
    """Call the REST API; returns (status code, decoded JSON or text)."""
    answer = yield call(service, method, path, body, raw)
    return answer.code, answer.body


@inlineCallbacks
def until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Let the real reactor run until ``predicate()`` holds (fails after ``timeout``)."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"still false after {timeout} s: {predicate}")
        yield settle(0.01)


def settle(seconds: float = 0.05) -> Deferred[None]:
    """Let the real reactor run a little (for asserting that nothing happens)."""
    return deferLater(reactor, seconds, lambda: None)


@inlineCallbacks
def command_with_wait(test: TestCase, proxy: Any, link: Any, pile_id: str) -> Any:
    """A 0x92 through ``proxy``'s REST with ``?wait=``, answered by the pile on ``link`` (200, reply)."""
    pending = call(proxy, "POST", "/proxy/92?wait=5", {"id": pile_id, "control": 1})
    got = yield link.expect(0x92)
    link.send(0x91, example(0x91, pile_id), seq=got.seq)
    answer = yield pending
    test.assertEqual(answer.code, 200, answer.body)
    test.assertEqual(answer.body["frame"], got.raw.hex())
    test.assertIn("reply", answer.body)
    return answer
