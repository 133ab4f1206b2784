"""The proxy's settings, as one frozen value built from the command line."""

from __future__ import annotations

import datetime
import enum

import attrs

from ykcproxy.wire.crc import CrcOrder


def _escape(value: str) -> str:
    """``value`` quoted for an endpoint description (IPv6 addresses have colons)."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


class MessagingType(enum.Enum):
    """Where decoded frames go."""

    HTTP = "http"
    NATS = "nats"
    NONE = "none"


class LogFormat(enum.Enum):
    """How log events are written."""

    TEXT = "text"  #: twistd's classic lines
    JSON = "json"  #: one JSON object per line, for log shippers


class LogLevelName(enum.Enum):
    """The least severe log level written."""

    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class CrcMode(enum.Enum):
    """Which CRC byte orders the pile side accepts."""

    AUTO = "auto"  #: accept both, answer each pile in its own order
    LOW_FIRST = "low-first"  #: the spec's order only
    HIGH_FIRST = "high-first"  #: the appendix C code's order only

    @property
    def orders(self) -> tuple[CrcOrder, ...]:
        if self is CrcMode.AUTO:
            return (CrcOrder.LOW_FIRST, CrcOrder.HIGH_FIRST)
        return (CrcOrder(self.value),)


@attrs.frozen(kw_only=True)
class ProxyConfig:
    """Everything the pile side, the forwarder and the REST API are told.

    The defaults live with the option declarations
    (:mod:`ykcproxy.options.table`); build one with
    :func:`ykcproxy.options.default_config` or from parsed options.
    """

    host: str
    tcp_port: int
    pile_endpoint: str
    listen_backlog: int
    login_timeout: float
    max_connections: int
    max_connections_per_address: int
    max_frame_rate: float
    error_budget: int
    max_output_buffer: int
    allow_list: str
    heartbeat_interval: float
    heartbeat_misses: int
    crc_mode: CrcMode
    tz: datetime.tzinfo
    auto_verification: bool
    auto_heartbeat_response: bool
    auto_billing_model_verify: bool
    auto_transaction_record_confirm: bool
    auto_time_sync: bool
    session_start_timeout: float
    session_record_timeout: float
    session_stop_grace: float
    messaging: MessagingType
    servers: tuple[str, ...]
    username: str
    password: str
    subject_prefix: str
    nats_jetstream: bool
    http_timeout: float
    http_concurrency: int
    http_batch: int
    http_headers: tuple[tuple[str, str], ...]
    http_signing_key_file: str
    http_ca_file: str
    data_dir: str
    retention_days: float
    dead_letter_after: float
    retry_max: float
    outbox_limit: int
    api_host: str
    http_port: int
    api_endpoint: str
    api_token: str
    metrics_public: bool
    cors_origin: str
    frame_history: int
    max_body_bytes: int
    log_format: LogFormat
    log_level: LogLevelName
    shutdown_timeout: float
    gc_freeze_interval: float
    cluster: str
    instance_id: str
    cluster_ttl: float
    nats_commands: bool
    command_subject_prefix: str
    #: The read-only token (from ``--apiReadTokenFile``; not an option of its own).
    api_read_token: str = ""
    #: First wait between delivery retries (not an option: min(0.5, retry_max)).
    retry_first: float = 0.5
    #: Names of the options set explicitly (command line, environment or config file).
    explicit: frozenset[str] = frozenset()

    @property
    def pile_endpoint_description(self) -> str:
        """The pile port as a Twisted endpoint description."""
        if self.pile_endpoint:
            return self.pile_endpoint
        return f"tcp:{self.tcp_port}:interface={_escape(self.host)}:backlog={self.listen_backlog}"

    @property
    def api_endpoint_description(self) -> str:
        """The REST API as a Twisted endpoint description."""
        if self.api_endpoint:
            return self.api_endpoint
        return f"tcp:{self.http_port}:interface={_escape(self.api_host)}"

    @property
    def instance_name(self) -> str:
        """This instance's name in the cluster: ``--instanceId``, else host name and pile port."""
        if self.instance_id:
            return self.instance_id
        import socket

        return f"{socket.gethostname()}:{self.tcp_port}"

    @property
    def standalone(self) -> bool:
        """No consumer configured: frames are answered here and nothing is queued."""
        return not self.forwarding

    @property
    def silence_timeout(self) -> float:
        """Seconds of silence after which a pile is disconnected."""
        return self.heartbeat_interval * self.heartbeat_misses

    @property
    def durable(self) -> bool:
        """Whether messages go through the durable outbox (``--dataDir ''`` turns it off)."""
        return self.forwarding and bool(self.data_dir)

    @property
    def forwarding(self) -> bool:
        """Whether any consumer is configured."""
        if self.messaging is MessagingType.NONE:
            return False
        return bool(self.servers) or self.messaging is MessagingType.NATS
