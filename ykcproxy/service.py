"""``twistd ykcproxy``: command-line options and the service tree.

The service is a MultiService of, in start order: the forwarder (publisher
and delivery queues), the pile listener and the REST listener.  Stopping
runs in reverse: the REST API closes, every pile goes offline with reason
``shutdown`` (the events are queued), then the forwarder flushes and stops.
"""

from __future__ import annotations

import os
import zoneinfo
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from ykcproxy.config import CrcMode, MessagingType, ProxyConfig
from ykcproxy.forward.base import IPublisher
from ykcproxy.forward.delivery import Backoff, Delivery
from ykcproxy.forward.outbox import SqliteOutbox
from ykcproxy.forward.service import ForwarderService
from ykcproxy.metrics import Metrics
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.wire.codec import Codec
from ykcproxy.wire.fields import Context

log = Logger()

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _named(name: str, coerce: Any) -> Any:
    def named(value: str) -> Any:
        try:
            return coerce(value)
        except ValueError as e:
            raise ValueError(f"--{name}: {e}") from None

    named.coerceDoc = getattr(coerce, "coerceDoc", "")  # type: ignore[attr-defined]
    return named


def _bool(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (0-65535; 0 picks a free one)")
    return port


def _int_from(lo: int) -> Callable[[str], int]:
    """A coercer of whole numbers of at least ``lo``."""

    def coerce(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if number < lo:
            raise ValueError(f"{value!r} must be at least {lo}")
        return number

    return coerce


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not number > 0:
        raise ValueError(f"{value!r} must be greater than 0")
    return number


_count = _int_from(1)
_whole = _int_from(0)


def _messaging(value: str) -> MessagingType:
    try:
        return MessagingType(value.strip().lower())
    except ValueError:
        raise ValueError(f"{value!r} is not one of http, nats, none") from None


def _crc_mode(value: str) -> CrcMode:
    try:
        return CrcMode(value.strip().lower())
    except ValueError:
        raise ValueError(f"{value!r} is not one of auto, low-first, high-first") from None


def _zone(value: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone name (e.g. Asia/Shanghai)") from None


class Options(usage.Options):
    """Options of ``twistd ykcproxy``; the seed's flag names are kept."""

    synopsis = "[options]"
    longdesc = "A protocol server for EV charging piles speaking YKC V1.6."

    optParameters: list[list[Any]] = [
        ["host", None, "0.0.0.0", "Bind address for both listeners."],
        ["tcpPort", None, 27600, "Pile (YKC) TCP port; 0 picks a free one.", _port],
        ["httpPort", None, 9556, "REST API port; 0 picks a free one.", _port],
        ["autoVerification", None, "false", "Answer login (0x01) with 0x02 success.", _bool],
        ["autoHeartbeatResponse", None, "true", "Answer heartbeat (0x03) with 0x04.", _bool],
        ["autoBillingModelVerify", None, "false", 'Answer 0x05 with 0x06 "consistent".', _bool],
        [
            "autoTransactionRecordConfirm",
            None,
            "false",
            "Answer 0x3B with 0x40 once the record is safely stored.",
            _bool,
        ],
        ["autoTimeSync", None, "false", "Send 0x56 after each accepted login and then daily.", _bool],
        ["messagingServerType", None, "http", "http, nats or none.", _messaging],
        ["servers", None, "", "Comma-separated endpoints (HTTP URL prefixes, or nats://host:port)."],
        ["username", None, "", "User name for the message broker."],
        ["password", None, "", "Password for the message broker."],
        ["subjectPrefix", None, "charge.proxy.ykc", "NATS subject prefix (subject: <prefix>.<ft>)."],
        ["natsJetStream", None, "false", "Publish to NATS with JetStream acks.", _bool],
        ["heartbeatInterval", None, 10.0, "Seconds between a pile's heartbeats.", _positive],
        ["heartbeatMisses", None, 3, "Missed heartbeats after which a pile is disconnected.", _count],
        ["crcOrder", None, "auto", "CRC byte order: auto, low-first or high-first.", _crc_mode],
        ["timezone", None, "Asia/Shanghai", "Time zone of the pile clocks (CP56Time2a).", _zone],
        ["httpTimeout", None, 10.0, "Seconds a webhook POST may take.", _positive],
        ["httpConcurrency", None, 64, "Webhook POSTs in flight at most.", _count],
        [
            "httpBatch",
            None,
            0,
            "Batch mode: POST up to this many messages as one JSON array to <endpoint>/batch (0: off).",
            _whole,
        ],
        ["listenBacklog", None, 4096, "Pending connections the pile port queues (reconnect storms).", _count],
        ["maxBodyBytes", None, 65536, "Largest REST request body accepted.", _count],
        ["apiToken", None, "", "If set, REST calls need 'Authorization: Bearer <token>'."],
        [
            "dataDir",
            None,
            "./ykcproxy-data",
            "Directory of the durable outbox ('' keeps messages in memory only).",
        ],
        [
            "retentionDays",
            None,
            7.0,
            "Days delivered 0x3B records are kept for GET /transactions.",
            _positive,
        ],
        [
            "deadLetterAfter",
            None,
            86400.0,
            "Seconds a message may keep failing before it is a dead letter.",
            _positive,
        ],
        ["retryMaxDelay", None, 30.0, "Longest wait between delivery retries, in seconds.", _positive],
        ["outboxLimit", None, 100000, "Undelivered messages at which reading from piles pauses.", _count],
    ]

    def __init__(self) -> None:
        super().__init__()
        # Name the option in coercion errors ("--tcpPort: 70000 is not a port ...").
        for param in self.optParameters:
            if len(param) == 5 and param[4] is not None:
                self._dispatch[param[0]].coerce = _named(param[0], param[4])  # type: ignore[attr-defined]

    def postOptions(self) -> None:
        # Defaults are given as text (so --help shows them as typed); coerce them too.
        for name, _, _default, _, coerce in (p + [None] * (5 - len(p)) for p in self.optParameters):
            if coerce is not None and isinstance(self[name], str):
                try:
                    self[name] = coerce(self[name])
                except ValueError as e:
                    raise usage.UsageError(f"--{name}: {e}") from None  # defaults are sane; env may not be
        tz = self["timezone"]
        servers = tuple(s.strip() for s in self["servers"].split(",") if s.strip())
        messaging = self["messagingServerType"]
        if messaging is MessagingType.HTTP:
            import hyperlink

            from ykcproxy.forward.http import normalize_endpoint

            for server in servers:
                try:
                    url = hyperlink.parse(normalize_endpoint(server)).to_uri()
                except Exception as e:  # noqa: BLE001 - hyperlink/idna raise various errors
                    raise usage.UsageError(f"--servers: {server!r} is not an HTTP URL: {e}") from None
                if url.scheme not in ("http", "https") or not url.host:
                    raise usage.UsageError(f"--servers: {server!r} is not an http:// or https:// URL")
        if self["dataDir"]:
            try:
                os.makedirs(self["dataDir"], exist_ok=True)
            except OSError as e:
                raise usage.UsageError(f"--dataDir: cannot use {self['dataDir']!r}: {e.strerror}") from None
            if not os.access(self["dataDir"], os.W_OK):
                raise usage.UsageError(f"--dataDir: {self['dataDir']!r} is not writable")
        if self["tcpPort"] and self["tcpPort"] == self["httpPort"]:
            raise usage.UsageError("--tcpPort and --httpPort must differ")
        if messaging is MessagingType.NATS:
            for server in servers:
                if "://" in server and not server.startswith(("nats://", "tls://")):
                    raise usage.UsageError(f"--servers: {server!r} is not a nats:// address")
        self.config = ProxyConfig(
            host=self["host"],
            tcp_port=self["tcpPort"],
            http_port=self["httpPort"],
            auto_verification=self["autoVerification"],
            auto_heartbeat_response=self["autoHeartbeatResponse"],
            auto_billing_model_verify=self["autoBillingModelVerify"],
            auto_transaction_record_confirm=self["autoTransactionRecordConfirm"],
            auto_time_sync=self["autoTimeSync"],
            messaging=messaging,
            servers=servers,
            username=self["username"],
            password=self["password"],
            subject_prefix=self["subjectPrefix"].rstrip("."),
            nats_jetstream=self["natsJetStream"],
            heartbeat_interval=self["heartbeatInterval"],
            heartbeat_misses=self["heartbeatMisses"],
            crc_mode=self["crcOrder"],
            tz=tz,
            http_timeout=self["httpTimeout"],
            http_concurrency=self["httpConcurrency"],
            http_batch=self["httpBatch"],
            max_body_bytes=self["maxBodyBytes"],
            listen_backlog=self["listenBacklog"],
            api_token=self["apiToken"],
            data_dir=self["dataDir"],
            retention_days=self["retentionDays"],
            dead_letter_after=self["deadLetterAfter"],
            outbox_limit=self["outboxLimit"],
            retry_max=self["retryMaxDelay"],
            retry_first=min(0.5, self["retryMaxDelay"]),
        )


class ListenerService(Service):
    """Listens on a TCP port while running (binds in privilegedStartService)."""

    def __init__(
        self, label: str, reactor: Any, host: str, port: int, factory: Any, backlog: int = 50
    ) -> None:
        self.label = label
        self._backlog = backlog
        self._reactor = reactor
        self._host = host
        self._port_number = port
        self._factory = factory
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        self.port = self._reactor.listenTCP(
            self._port_number, self._factory, backlog=self._backlog, interface=self._host
        )
        super().privilegedStartService()

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        assert self.port is not None
        address = self.port.getHost()
        log.info(
            "{label} listening on {host}:{port}",
            label=self.label,
            host=address.host,  # type: ignore[attr-defined]
            port=address.port,  # type: ignore[attr-defined]
        )
        super().startService()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.port is None:
            return None
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening)  # type: ignore[call-overload]


class PileListenerService(ListenerService):
    """The pile port; on stop every pile goes offline with reason ``shutdown``."""

    def stopService(self) -> Deferred[None] | None:
        self._factory.close_all("shutdown")
        return super().stopService()


def make_publisher(config: ProxyConfig, reactor: Any) -> IPublisher | None:
    """The publisher for ``config.messaging`` (None: nothing is forwarded)."""
    if not config.forwarding:
        return None
    if config.messaging is MessagingType.HTTP:
        from ykcproxy.forward.http import HttpPublisher

        return HttpPublisher(
            config.servers, reactor, timeout=config.http_timeout, max_connections=config.http_concurrency
        )
    from ykcproxy.forward.nats import NatsPublisher

    return NatsPublisher(
        servers=list(config.servers) or ["nats://127.0.0.1:4222"],
        username=config.username or None,
        password=config.password or None,
        subject_prefix=config.subject_prefix,
        jetstream=config.nats_jetstream,
        reactor=reactor,
    )


class ProxyService(MultiService):
    """The whole proxy; its parts are attributes so tests can reach them."""

    def __init__(self, config: ProxyConfig, reactor: Any = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.config = config
        self.reactor = reactor
        self.metrics = Metrics()
        self.publisher = make_publisher(config, reactor)
        self.delivery: Delivery | None = None
        self.outbox: SqliteOutbox | None = None
        self.forwarder: ForwarderService | None = None
        if self.publisher is None:
            log.warn(
                "no consumer configured (--messagingServerType {type}, --servers empty): "
                "frames are neither stored nor forwarded, and 0x3B records are not confirmed automatically",
                type=config.messaging.value,
            )
        else:
            if config.durable:
                self.outbox = SqliteOutbox(
                    config.data_dir, reactor, retention=config.retention_days * 86400, start=False
                )
                log.info("durable outbox at {path}", path=self.outbox.path)
            else:
                log.warn(
                    "--dataDir is empty: undelivered messages are kept in memory only and lost on a crash"
                )
            self.delivery = Delivery(
                self.publisher,
                reactor,
                store=self.outbox,
                max_in_flight=self._max_in_flight(config),
                batch_size=self._batch_size(config),
                on_delivered=lambda m, latency: self.metrics.delivered(m.ft, latency),
                on_failed=lambda m, f: self.metrics.forward_failed.inc(),
                backoff=Backoff(config.retry_first, config.retry_max),
                dead_letter_after=config.dead_letter_after,
                high_water=config.outbox_limit,
                on_pressure=lambda paused: self.piles.pause_reading(paused),
            )
            delivery = self.delivery
            self.metrics.gauge_function(self.metrics.outbox_depth, lambda: delivery.depth)
            self.metrics.gauge_function(self.metrics.outbox_oldest, delivery.oldest_age)
            self.metrics.gauge_function(self.metrics.reading_paused, lambda: float(delivery.pressure))
            if self.outbox is not None:
                outbox = self.outbox
                self.metrics.gauge_function(self.metrics.dead_letters, lambda: outbox.dead_count)
            self.forwarder = ForwarderService(self.publisher, self.delivery, self.outbox, reactor)
            self.forwarder.setServiceParent(self)
        codec = Codec(ctx=Context(tz=config.tz))
        self.piles = PileServerFactory(config, reactor, self.delivery, self.metrics, codec)
        self.pile_listener = PileListenerService(
            "pile port", reactor, config.host, config.tcp_port, self.piles, backlog=config.listen_backlog
        )
        self.pile_listener.setServiceParent(self)
        from ykcproxy.api import outbox_routes
        from ykcproxy.api.app import ControlApi

        self.api = ControlApi(
            self.piles,
            self.metrics,
            self.health,
            config,
            extra_routes=lambda api: outbox_routes.install(api, self.delivery, self.outbox),
        )
        site = Site(self.api.app.resource())
        site.noisy = False
        self.rest_listener = ListenerService("REST API", reactor, config.host, config.http_port, site)
        self.rest_listener.setServiceParent(self)

    #: Batch POSTs in flight at once in HTTP batch mode (fewer, larger batches).
    BATCHES_IN_FLIGHT = 4

    #: NATS publishes go in groups of up to this many (each pile's in order, on one
    #: connection), so a busy pile is not limited to one message per round trip.
    NATS_GROUP = 64
    NATS_GROUPS_IN_FLIGHT = 64

    @classmethod
    def _batch_size(cls, config: ProxyConfig) -> int:
        if config.messaging is MessagingType.NATS:
            return cls.NATS_GROUP
        return config.http_batch

    @classmethod
    def _max_in_flight(cls, config: ProxyConfig) -> int:
        if config.messaging is not MessagingType.HTTP:
            return cls.NATS_GROUPS_IN_FLIGHT
        if config.http_batch:
            return min(config.http_concurrency, cls.BATCHES_IN_FLIGHT)
        return config.http_concurrency

    def health(self) -> dict[str, Any]:
        """What /healthz reports: listening, and whether the forwarder is usable."""
        parts: dict[str, Any] = {
            "pilePort": self.pile_listener.port is not None,
            "restPort": self.rest_listener.port is not None,
        }
        ok = parts["pilePort"] and parts["restPort"]
        degraded = []
        if self.forwarder is not None and self.delivery is not None:
            forwarder = self.forwarder.health()
            parts["forwarder"] = forwarder
            if not forwarder.get("ok", True):
                degraded.append("forwarder")
            if self.delivery.pressure:
                degraded.append("reading paused: outbox over its limit")
            if self.outbox is not None:
                forwarder["deadLetters"] = self.outbox.dead_count
        else:
            parts["forwarder"] = {"ok": True, "type": "none"}
        parts["piles"] = len(self.piles.registry)
        parts["ok"] = ok and not degraded
        parts["degraded"] = degraded
        return parts

    @property
    def tcp_port(self) -> int:
        """The bound pile port (after start)."""
        assert self.pile_listener.port is not None
        return int(self.pile_listener.port.getHost().port)  # type: ignore[attr-defined]

    @property
    def http_port(self) -> int:
        """The bound REST port (after start)."""
        assert self.rest_listener.port is not None
        return int(self.rest_listener.port.getHost().port)  # type: ignore[attr-defined]


def raise_open_file_limit() -> int:
    """Raise the soft limit of open files to the hard limit (each pile is a socket)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            log.warn(
                "could not raise the open-file limit from {soft} to {hard}: {e}", soft=soft, hard=hard, e=e
            )
            return soft
    return hard


def makeService(options: Options) -> IService:
    """Build the proxy service from parsed options (for the twistd plugin)."""
    limit = raise_open_file_limit()
    log.info("open-file limit: {limit} (about as many piles)", limit=limit)
    return ProxyService(options.config)
