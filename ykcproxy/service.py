"""``twistd ykcproxy``: the service tree.

The service is a MultiService of, in start order: the forwarder (publisher
and delivery queues), the pile listener and the REST listener.  Stopping
runs in reverse: the REST API closes, every pile goes offline with reason
``shutdown`` (the events are queued), then the forwarder flushes and stops.
The options are declared in :mod:`ykcproxy.options`; the listeners are
:class:`ykcproxy.listeners.Listener` services over Twisted endpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ykcproxy import __version__
from ykcproxy.api.site import QuietSite
from ykcproxy.collector import CollectorPolicy
from ykcproxy.config import MessagingType, ProxyConfig
from ykcproxy.console.events import EventHub
from ykcproxy.console.history import Entry, FrameHistory
from ykcproxy.forward.base import IPublisher, Message
from ykcproxy.forward.delivery import Backoff, Delivery
from ykcproxy.forward.envelope import Envelope
from ykcproxy.forward.outbox import SqliteOutbox
from ykcproxy.forward.records import RecordStore, RecordStoreService
from ykcproxy.forward.service import ForwarderService, PeriodicService
from ykcproxy.listeners import Listener
from ykcproxy.metrics import Metrics
from ykcproxy.operations import OperationsService, stop_within
from ykcproxy.options import Options
from ykcproxy.pile.observers import FrameObserver, FrameRecorder
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.sessions import SessionTracker
from ykcproxy.sessions.persist import SessionStoreService
from ykcproxy.sessions.store import SessionStore
from ykcproxy.wire.codec import Codec
from ykcproxy.wire.fields import Context

__all__ = ["Options", "ProxyService", "makeService"]

log = Logger()


class PileListener(Listener):
    """The pile port; on stop every pile goes offline with reason ``shutdown``."""

    def stopService(self) -> Deferred[None] | None:
        self.factory.close_all("shutdown")
        return super().stopService()


def make_publisher(config: ProxyConfig, reactor: Any) -> IPublisher | None:
    """The publisher for ``config.messaging`` (None: nothing is forwarded)."""
    if not config.forwarding:
        return None
    if config.messaging is MessagingType.HTTP:
        from ykcproxy.forward.http import HttpPublisher
        from ykcproxy.options.checks import load_ca_file, read_secret_file

        key = None
        if config.http_signing_key_file:
            key = read_secret_file("httpSigningKeyFile", config.http_signing_key_file).encode()
        return HttpPublisher(
            config.servers,
            reactor,
            timeout=config.http_timeout,
            max_connections=config.http_concurrency,
            headers=config.http_headers,
            signing_key=key,
            trust_root=load_ca_file(config.http_ca_file) if config.http_ca_file else None,
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


#: Batch POSTs in flight at once in HTTP batch mode (fewer, larger batches).
BATCHES_IN_FLIGHT = 4

#: NATS publishes go in groups of up to this many (each pile's in order, on one
#: connection), so a busy pile is not limited to one message per round trip.
NATS_GROUP = 64
NATS_GROUPS_IN_FLIGHT = 64


def _batch_size(config: ProxyConfig) -> int:
    if config.messaging is MessagingType.NATS:
        return NATS_GROUP
    return config.http_batch


def _max_in_flight(config: ProxyConfig) -> int:
    if config.messaging is not MessagingType.HTTP:
        return NATS_GROUPS_IN_FLIGHT
    if config.http_batch:
        return min(config.http_concurrency, BATCHES_IN_FLIGHT)
    return config.http_concurrency


@attrs.frozen
class Forwarding:
    """The forward side: publisher, delivery queue, durable outbox and their service."""

    publisher: IPublisher
    delivery: Delivery
    outbox: SqliteOutbox | None
    service: ForwarderService


def build_forwarding(
    config: ProxyConfig, reactor: Any, metrics: Metrics, on_pressure: Callable[[bool], None]
) -> Forwarding | None:
    """The forward side for ``config`` (None in standalone mode: nothing is queued)."""
    publisher = make_publisher(config, reactor)
    if publisher is None:
        return None
    outbox = None
    if config.durable:
        outbox = SqliteOutbox(config.data_dir, reactor, retention=config.retention_days * 86400, start=False)
        log.info("durable outbox at {path}", path=outbox.path)
    else:
        log.warn("--dataDir is empty: undelivered messages are kept in memory only and lost on a crash")
    delivery = Delivery(
        publisher,
        reactor,
        store=outbox,
        max_in_flight=_max_in_flight(config),
        batch_size=_batch_size(config),
        on_delivered=lambda m, latency: metrics.delivered(m.ft, latency),
        on_failed=lambda m, f: metrics.forward_failed.inc(),
        backoff=Backoff(config.retry_first, config.retry_max),
        dead_letter_after=config.dead_letter_after,
        high_water=config.outbox_limit,
        on_pressure=on_pressure,
    )
    metrics.gauge_function(metrics.outbox_depth, lambda: delivery.depth)
    metrics.gauge_function(metrics.outbox_oldest, delivery.oldest_age)
    metrics.gauge_function(metrics.reading_paused, lambda: float(delivery.pressure))
    if outbox is not None:
        store = outbox
        metrics.gauge_function(metrics.dead_letters, lambda: store.dead_count)
    return Forwarding(
        publisher,
        delivery,
        outbox,
        ForwarderService(publisher, delivery, outbox, reactor, drain_timeout=config.shutdown_timeout * 0.7),
    )


class StopsWithService(Service):
    """Calls ``stops`` when the service stops (timers of the tracker, the console's streams)."""

    def __init__(self, *stops: Callable[[], None]) -> None:
        self.stops = stops

    def stopService(self) -> None:
        super().stopService()
        for stop in self.stops:
            stop()


@attrs.frozen
class Console:
    """The console's server side: the frame history and the event hub."""

    history: FrameHistory
    hub: EventHub


def build_console(config: ProxyConfig, reactor: Any) -> Console:
    """The frame history (``--frameHistory``) and the event hub; watched piles' frames are streamed."""

    def stream(pile_id: str, entry: Entry) -> None:
        hub.publish("frame", {"id": pile_id, **history.describe(entry)}, pile_id)

    history = FrameHistory(reactor, config.frame_history, Codec(ctx=Context(tz=config.tz)), on_entry=stream)
    hub = EventHub(reactor, on_watch=history.watch)
    return Console(history, hub)


def build_remote_watches(console: Console, cluster: Any, reactor: Any) -> Any:
    """Cluster mode: the console's watched piles relayed from (and streamed to) other instances."""
    from ykcproxy.cluster.watch import RemoteWatches

    history, hub = console.history, console.hub
    watches = RemoteWatches(
        reactor,
        cluster.directory,
        cluster.link,
        history.watch,
        lambda pile_id, event: hub.publish("frame", event, pile_id),
    )
    hub.on_watch = watches.local_watch

    def stream(pile_id: str, entry: Entry) -> None:
        event = {"id": pile_id, **history.describe(entry)}
        hub.publish("frame", event, pile_id)
        watches.frame(pile_id, event)

    history.on_entry = stream
    return watches


def build_sessions(
    config: ProxyConfig,
    reactor: Any,
    envelope: Envelope,
    submit: Callable[[Message], Any] | None,
    hub: EventHub,
) -> SessionTracker:
    """The charging-session tracker; its ``session`` messages go to ``submit`` (when forwarding)."""

    def emit(body: dict[str, Any], key: str) -> None:
        hub.publish("session", body)
        if submit is not None:
            submit(envelope.session(body, key))

    return SessionTracker(
        reactor,
        emit,
        start_timeout=config.session_start_timeout,
        record_timeout=config.session_record_timeout,
        stop_grace=config.session_stop_grace,
    )


def build_pile_side(
    config: ProxyConfig,
    reactor: Any,
    delivery: Delivery | None,
    metrics: Metrics,
    envelope: Envelope,
    observers: Sequence[FrameObserver] = (),
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    records: RecordStore | None = None,
    recorder: FrameRecorder | None = None,
) -> tuple[PileServerFactory, PileListener]:
    """The pile protocol factory and the listener of the pile port."""
    codec = Codec(ctx=Context(tz=config.tz))
    piles = PileServerFactory(
        config,
        reactor,
        delivery,
        metrics,
        codec,
        observers=observers,
        envelope=envelope,
        on_event=on_event,
        records=records,
        recorder=recorder,
    )
    option = "pileEndpoint" if config.pile_endpoint else "tcpPort"
    listener = PileListener("pile port", option, config.pile_endpoint_description, piles, reactor)
    return piles, listener


def build_api(
    config: ProxyConfig,
    reactor: Any,
    piles: PileServerFactory,
    metrics: Metrics,
    health: Callable[[], dict[str, Any]],
    forwarding: Forwarding | None,
    sessions: SessionTracker,
    console: Console,
    records: SqliteOutbox | None = None,
    session_store: SessionStore | None = None,
) -> tuple[Any, Listener]:
    """The REST application and the listener of the API port."""
    from ykcproxy.api.app import ControlApi
    from ykcproxy.api.outbox_handlers import OutboxHandlers
    from ykcproxy.api.session_handlers import SessionHandlers
    from ykcproxy.console.handlers import ConsoleHandlers

    delivery = forwarding.delivery if forwarding else None
    outbox = forwarding.outbox if forwarding else records
    handlers = [
        OutboxHandlers(delivery, outbox, config.max_body_bytes),
        SessionHandlers(sessions, session_store),
        ConsoleHandlers(console.history, console.hub),
    ]
    api = ControlApi(piles, metrics, health, config, handlers=handlers)
    site = QuietSite(api.resource())
    option = "apiEndpoint" if config.api_endpoint else "httpPort"
    return api, Listener("REST API", option, config.api_endpoint_description, site, reactor)


def warn_about(config: ProxyConfig) -> None:
    """Log what an operator must know about these settings at start."""
    if config.standalone:
        log.warn(
            "no consumer configured (--messagingServerType {type}, --servers empty): standalone mode. "
            "Frames are neither stored nor forwarded; logins, heartbeats and billing-model checks are "
            "answered here (autoVerification={v}, autoHeartbeatResponse={h}, autoBillingModelVerify={b}); "
            "0x3B records are kept for GET /transactions (with --dataDir) and confirmed only with "
            "--autoTransactionRecordConfirm true",
            type=config.messaging.value,
            v=config.auto_verification,
            h=config.auto_heartbeat_response,
            b=config.auto_billing_model_verify,
        )
    if not config.api_token and not config.api_endpoint and not _is_loopback(config.api_host):
        log.warn(
            "the REST API listens on {host} without a token: anyone who can reach it can control piles "
            "(set --apiTokenFile or YKCPROXY_API_TOKEN, or --apiHost 127.0.0.1)",
            host=config.api_host,
        )


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: The NATS queue group of the command subjects: one instance of a cluster answers each request.
COMMAND_QUEUE = "ykcproxy-commands"


def build_nats_commands(config: ProxyConfig, reactor: Any, runner: Any, connection: Any) -> Any:
    """The NATS command responder (``--natsCommands``) on ``connection``: the ``--cluster``
    link's, else the forwarding publisher's (None without ``--natsCommands``)."""
    if not config.nats_commands:
        return None
    from ykcproxy.cluster.commands import NatsCommands, NatsCommandsService

    if connection is None:
        raise ValueError("--natsCommands needs a NATS connection: --cluster, or --messagingServerType nats")
    commands = NatsCommands(
        runner,
        reactor,
        connection,
        config.command_subject_prefix,
        server=config.cluster or ",".join(config.servers),
        queue=COMMAND_QUEUE,
    )
    return NatsCommandsService(commands)


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
        self.operations = OperationsService(config, reactor)
        self.operations.setServiceParent(self)
        self.reloads = self.operations.reloads
        warn_about(config)
        forwarding = build_forwarding(
            config, reactor, self.metrics, lambda paused: self.piles.pause_reading(paused)
        )
        self.forwarding = forwarding
        self.publisher = forwarding.publisher if forwarding else None
        self.delivery = forwarding.delivery if forwarding else None
        self.outbox = forwarding.outbox if forwarding else None
        self.forwarder = forwarding.service if forwarding else None
        if self.forwarder is not None:
            self.forwarder.setServiceParent(self)
        #: Standalone mode: 0x3B records kept for GET /transactions (nothing else is stored).
        self.records: SqliteOutbox | None = None
        record_store = None
        if forwarding is None and config.data_dir:
            self.records = SqliteOutbox(
                config.data_dir, reactor, retention=config.retention_days * 86400, start=False
            )
            RecordStoreService(self.records, reactor).setServiceParent(self)
            record_store = RecordStore(self.records)
            log.info("standalone: 0x3B records kept in {path}", path=self.records.path)
        envelope = Envelope(reactor)
        self.console = build_console(config, reactor)
        submit = self.delivery.submit if self.delivery is not None else None
        self.sessions = build_sessions(config, reactor, envelope, submit, self.console.hub)
        from ykcproxy.sessions import metrics as session_metrics

        session_metrics.register(self.sessions, self.metrics.registry)
        StopsWithService(self.sessions.stop, self.console.hub.stop).setServiceParent(self)
        if config.gc_freeze_interval > 0:
            policy = CollectorPolicy()
            PeriodicService(
                "collector freeze", config.gc_freeze_interval, policy.tick, reactor
            ).setServiceParent(self)
        #: The orders on disk (None with --dataDir '': in memory only).
        self.session_store: SessionStore | None = None
        if config.data_dir:
            retention = config.retention_days * 86400
            self.session_store = SessionStore(config.data_dir, reactor, retention=retention)
            # Added after the tracker's stop: it stops first, and writes the timers still running.
            SessionStoreService(self.sessions, self.session_store, reactor).setServiceParent(self)
        else:
            log.warn("--dataDir is empty: charging sessions are kept in memory only and lost on a restart")
        self.piles, self.pile_listener = build_pile_side(
            config,
            reactor,
            self.delivery,
            self.metrics,
            envelope,
            observers=[self.sessions, self.console.history],
            on_event=self.console.hub.publish,
            records=record_store,
            recorder=self.console.history if config.frame_history else None,
        )
        self.cluster: Any = None
        if config.cluster:
            from ykcproxy.cluster.service import ClusterService

            # Before the pile port: it stops after it, so the piles closed at a clean stop
            # leave the bucket too.
            self.cluster = ClusterService(config, reactor, self.piles)
            self.cluster.setServiceParent(self)
        self.pile_listener.setServiceParent(self)
        if self.piles.allow_list is not None:
            self.reloads.register("allowList", self._reload_allow_list)
        self.api, self.rest_listener = build_api(
            config,
            reactor,
            self.piles,
            self.metrics,
            self.health,
            forwarding,
            self.sessions,
            self.console,
            self.records,
            self.session_store,
        )
        self.rest_listener.setServiceParent(self)
        if self.cluster is not None:
            from ykcproxy.api.session_handlers import SessionHandlers
            from ykcproxy.cluster.commands import NatsCommands, NatsCommandsService
            from ykcproxy.cluster.registry_kv import route_prefix
            from ykcproxy.cluster.service import FRAMES_LOOKUP, SESSION_LIST, SESSION_LOOKUP
            from ykcproxy.cluster.watch import WATCH_REQUEST
            from ykcproxy.console.handlers import ConsoleHandlers

            self.api.cluster_view = self.cluster.view
            self.api.cluster_piles = self.cluster.other_piles
            self.api.instance = self.cluster.me
            self.api.runner.elsewhere = self.cluster.route
            # Commands routed here by the other instances: the NATS command protocol on our subject.
            routed = NatsCommands(
                self.api.runner,
                reactor,
                self.cluster.link.shared,
                route_prefix(config.instance_name),
                server=config.cluster,
            )
            # GET /sessions/<tradeSeq> asks the other instances for an order not seen here.
            sessions = self.api.handler(SessionHandlers)
            sessions.elsewhere = self.cluster.find_session
            self.cluster.local_session = sessions.local_session
            routed.lookups[SESSION_LOOKUP] = self.cluster.answer_session
            # GET /sessions (the list) merges the pages of every instance.
            sessions.elsewhere_list = self.cluster.list_sessions
            self.cluster.local_list = sessions.local_list
            routed.lookups[SESSION_LIST] = self.cluster.answer_session_list
            # GET /piles/<id>/frames of a pile held elsewhere: the holder's frames.
            frames = self.api.handler(ConsoleHandlers)
            frames.elsewhere_frames = self.cluster.frames_elsewhere
            self.cluster.local_frames = frames.local_frames
            routed.lookups[FRAMES_LOOKUP] = self.cluster.answer_frames
            # A console here watching a pile held elsewhere: its frames relayed from the holder.
            self.cluster.watches = build_remote_watches(self.console, self.cluster, reactor)
            routed.lookups[WATCH_REQUEST] = self.cluster.watches.answer_watch
            self.routed_commands = NatsCommandsService(routed)
            self.routed_commands.setServiceParent(self)
        connection = self.cluster.link.shared if self.cluster is not None else None
        if connection is None and self.publisher is not None:
            connection = getattr(self.publisher, "shared", None)
        self.nats_commands = build_nats_commands(config, reactor, self.api.runner, connection)
        if self.nats_commands is not None:
            self.nats_commands.setServiceParent(self)

    def _reload_allow_list(self) -> str | None:
        """SIGHUP: the allow-list file again (a bad file keeps the old list)."""
        allow = self.piles.allow_list
        if not self.piles.reload_allow_list() or allow is None:
            return None
        return f"{len(allow.ids)} pile ids from {allow.path}"

    def health(self) -> dict[str, Any]:
        """What /healthz reports: listening, and whether the forwarder is usable."""
        parts: dict[str, Any] = {
            "version": __version__,
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

    def stopService(self) -> Deferred[None]:
        """Stop the parts in reverse order, within ``--shutdownTimeout`` seconds."""
        return stop_within(self, self.config.shutdown_timeout, self.reactor)

    @property
    def tcp_port(self) -> int:
        """The bound pile port (after start, on TCP)."""
        assert self.pile_listener.port is not None
        return int(self.pile_listener.port.getHost().port)  # type: ignore[attr-defined]

    @property
    def http_port(self) -> int:
        """The bound REST port (after start, on TCP)."""
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


def makeService(options: Options, reactor: Any = None) -> IService:
    """Build the proxy service from parsed options (for the twistd plugin)."""
    limit = raise_open_file_limit()
    log.info("open-file limit: {limit} (about as many piles)", limit=limit)
    service = ProxyService(options.config, reactor)
    service.operations.activate(options["config"] or "", options.sources)
    return service
