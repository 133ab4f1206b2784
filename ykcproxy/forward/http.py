"""HTTP webhooks: ``POST <endpoint>/<ft>`` with treq, keep-alive, failover."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from hyperlink import EncodedURL
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IConsumer, IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.web.client import URI, Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from ykcproxy.forward.base import IBatchPublisher, Message, PublishError

log = Logger()


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs, errors and /healthz)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    user = userinfo.split(":", 1)[0]
    shown = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    return f"{scheme}{sep}{shown}{slash}{path}"


def split_credentials(endpoint: str) -> tuple[str, bytes | None]:
    """The endpoint without user info, and the ``Authorization: Basic`` value it carried (if any)."""
    scheme, sep, rest = endpoint.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return endpoint, None
    userinfo, _, host = authority.rpartition("@")
    from urllib.parse import unquote

    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return f"{scheme}{sep}{host}{slash}{path}", f"Basic {token}".encode()


def signature(key: bytes, timestamp: int, body: bytes) -> bytes:
    """The ``X-Ykcproxy-Signature`` value: ``t=<unix s>,v1=<hex HMAC-SHA256(key, "<t>." + body)>``."""
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}".encode()


def normalize_endpoint(endpoint: str) -> str:
    """An endpoint URL prefix with a scheme and without a trailing slash."""
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        endpoint = "http://" + endpoint
    return endpoint.rstrip("/")


@implementer(IBodyProducer)
class BytesBody:
    """A request body already in memory, written in one go.

    treq turns ``data=bytes`` into a ``FileBodyProducer``, which writes through
    the cooperator a few reactor turns later; this writes at once.
    """

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IAgentEndpointFactory)
class ReusedEndpoints:
    """The endpoint of each (scheme, host, port), made once and reused.

    Agent's own factory builds a new ``HostnameEndpoint`` for every request,
    even when the pool then reuses a kept-alive connection, and IDNA-encodes
    the host each time (about a tenth of a POST's CPU here).
    """

    def __init__(self, reactor: Any, connect_timeout: float = 30.0, trust_root: Any = None) -> None:
        self._reactor = reactor
        self._connect_timeout = connect_timeout
        self._policy = BrowserLikePolicyForHTTPS(trustRoot=trust_root)
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = HostnameEndpoint(
                self._reactor, uri.host.decode("ascii"), uri.port, timeout=self._connect_timeout
            )
            if uri.scheme == b"https":
                endpoint = wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port), endpoint)
            elif uri.scheme != b"http":
                raise SchemeNotSupported(f"unsupported scheme {uri.scheme!r}")
            self._endpoints[key] = endpoint
        return endpoint


class PreparedURL(EncodedURL):  # type: ignore[misc]
    """A webhook URL whose URI form is computed once.

    treq converts the URL of every request with ``to_uri()``, which IDNA-encodes
    the host again each time; the endpoints of a publisher never change.
    """

    _uri: EncodedURL

    @classmethod
    def prepare(cls, text: str) -> PreparedURL:
        """Parse ``text`` and compute its URI form."""
        url = cls.from_text(text)
        assert isinstance(url, PreparedURL)
        url._uri = EncodedURL.from_text(text).to_uri()
        return url

    def to_uri(self) -> EncodedURL:
        uri = getattr(self, "_uri", None)  # absent on copies made by replace()
        return uri if uri is not None else super().to_uri()


def webhook_client(
    reactor: Any, pool: HTTPConnectionPool, connect_timeout: float = 30.0, trust_root: Any = None
) -> Any:
    """The treq client the publisher uses: over ``pool``, endpoints reused, bodies written at once.

    ``trust_root`` (a ``twisted.internet.ssl.Certificate``) replaces the system CAs
    (``--httpCaFile``); certificates are always verified.
    """
    from treq.client import HTTPClient

    endpoints = ReusedEndpoints(reactor, connect_timeout, trust_root)
    agent = Agent.usingEndpointFactory(reactor, endpoints, pool=pool)
    return HTTPClient(agent, data_to_body_producer=BytesBody)


@implementer(IBatchPublisher)
class HttpPublisher:
    """POSTs each message to ``<endpoint>/<ft>``.

    The endpoints are replicas of one consumer: a message goes to the current
    one, and on failure the next ones are tried in turn; the one that worked
    stays current.  A 2xx answer means delivered.
    """

    name = "http"
    #: In batch mode even a lone message goes to ``<endpoint>/batch`` (one consumer route).
    lone_via_publish = False

    def __init__(
        self,
        endpoints: Sequence[str],
        reactor: IReactorTime,
        timeout: float = 10.0,
        max_connections: int = 64,
        client: Any = None,
        headers: Sequence[tuple[str, str]] = (),
        signing_key: bytes | None = None,
        trust_root: Any = None,
    ) -> None:
        """``headers`` are added to every POST; ``signing_key`` signs every body.

        User info in an endpoint (``https://user:pass@host/...``) becomes HTTP
        Basic auth and is never shown (logs and health show the URL without it).
        """
        if not endpoints:
            raise ValueError("HttpPublisher needs at least one endpoint")
        split = [split_credentials(normalize_endpoint(e)) for e in endpoints]
        self.endpoints = [url for url, _ in split]
        self._basic = [auth for _, auth in split]
        self._extra = [(name.encode(), [value.encode()]) for name, value in headers]
        self._signing_key = signing_key
        self.timeout = timeout
        self._reactor = reactor
        self._current = 0
        self._ok = True
        self._last_error = ""
        self._pool: HTTPConnectionPool | None = None
        self._in_flight: set[Deferred[None]] = set()
        if client is None:
            self._pool = HTTPConnectionPool(reactor, persistent=True)
            self._pool.maxPersistentPerHost = max_connections
            self._pool.retryAutomatically = False
            client = webhook_client(reactor, self._pool, connect_timeout=timeout, trust_root=trust_root)
        self._client = client
        #: (endpoint index, path) → the URL parsed once, and its text for messages.
        self._urls: dict[tuple[int, str], tuple[PreparedURL, str]] = {}

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        """Let the POSTs in flight finish (up to the timeout), then close the connections."""
        pending = DeferredList(list(self._in_flight), consumeErrors=True)
        pending.addTimeout(self.timeout, self._reactor)  # type: ignore[arg-type]

        def close(_: object) -> Deferred[None]:
            if self._pool is not None:
                return self._pool.closeCachedConnections()
            return succeed(None)

        return pending.addBoth(close)

    def health(self) -> dict[str, Any]:
        return {
            "ok": self._ok,
            "endpoint": self.endpoints[self._current],
            "endpoints": self.endpoints,
            "lastError": self._last_error,
        }

    def publish(self, message: Message) -> Deferred[None]:
        """POST one message to ``<endpoint>/<ft>``."""
        headers = {b"Content-Type": [b"application/json"], b"X-Message-Id": [message.message_id.encode()]}
        return self._track(
            self._attempt(message.ft, message.payload, headers, self._current, len(self.endpoints))
        )

    def publish_batch(self, messages: Sequence[Message]) -> Deferred[None]:
        """POST several messages as one JSON array to ``<endpoint>/batch`` (opt-in batch mode)."""
        body = b"[" + b",".join(m.payload for m in messages) + b"]"
        headers = {b"Content-Type": [b"application/json"], b"X-Message-Count": [str(len(messages)).encode()]}
        return self._track(self._attempt("batch", body, headers, self._current, len(self.endpoints)))

    def _headers(
        self, index: int, headers: dict[bytes, list[bytes]], body: bytes
    ) -> dict[bytes, list[bytes]]:
        """``headers`` with the configured ones, the endpoint's Basic auth and the signature."""
        basic = self._basic[index]
        if not self._extra and basic is None and self._signing_key is None:
            return headers
        sent = dict(headers)
        for name, value in self._extra:
            sent[name] = value
        if basic is not None:
            sent[b"Authorization"] = [basic]
        if self._signing_key is not None:
            now = int(self._reactor.seconds())
            sent[b"X-Ykcproxy-Signature"] = [signature(self._signing_key, now, body)]
        return sent

    def _track(self, d: Deferred[None]) -> Deferred[None]:
        self._in_flight.add(d)

        def done(result: object) -> object:
            self._in_flight.discard(d)
            return result

        return d.addBoth(done)

    def _attempt(
        self, path: str, body: bytes, headers: dict[bytes, list[bytes]], index: int, left: int
    ) -> Deferred[None]:
        prepared = self._urls.get((index, path))
        if prepared is None:
            text = f"{self.endpoints[index]}/{path}"
            prepared = self._urls[index, path] = (PreparedURL.prepare(text), text)
        parsed, url = prepared
        sent = self._headers(index, headers, body)
        d = self._client.post(
            parsed, data=body, headers=sent, timeout=self.timeout, allow_redirects=False, unbuffered=True
        )

        def answered(response: Any) -> Any:
            code = response.code
            done = response.content() if hasattr(response, "content") else succeed(b"")

            def check(_: object) -> None:
                if not 200 <= code < 300:
                    raise PublishError(f"POST {url} answered {code}")

            return done.addCallback(check)

        def failed(failure: Any) -> Deferred[None]:
            self._last_error = failure.getErrorMessage()
            if left > 1:
                nxt = (index + 1) % len(self.endpoints)
                log.info(
                    "endpoint {url} failed ({error}); trying {next}",
                    url=url,
                    error=self._last_error,
                    next=self.endpoints[nxt],
                )
                return self._attempt(path, body, headers, nxt, left - 1)
            self._ok = False
            raise PublishError(f"POST {url}: {self._last_error}")

        def delivered(_: object) -> None:
            self._current = index
            self._ok = True

        d.addCallback(answered)
        d.addCallbacks(delivered, failed)
        return d
