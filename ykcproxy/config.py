"""The proxy's settings, as one frozen value built from the command line."""

from __future__ import annotations

import datetime
import enum

import attrs

from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.fields import SHANGHAI


class MessagingType(enum.Enum):
    """Where decoded frames go."""

    HTTP = "http"
    NATS = "nats"
    NONE = "none"


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


@attrs.frozen
class ProxyConfig:
    """Everything the pile side, the forwarder and the REST API are told."""

    host: str = "0.0.0.0"
    tcp_port: int = 27600
    http_port: int = 9556
    auto_verification: bool = False
    auto_heartbeat_response: bool = True
    auto_billing_model_verify: bool = False
    auto_transaction_record_confirm: bool = False
    auto_time_sync: bool = False
    messaging: MessagingType = MessagingType.HTTP
    servers: tuple[str, ...] = ()
    username: str = ""
    password: str = ""
    subject_prefix: str = "charge.proxy.ykc"
    nats_jetstream: bool = False
    heartbeat_interval: float = 10.0
    heartbeat_misses: int = 3
    crc_mode: CrcMode = CrcMode.AUTO
    tz: datetime.tzinfo = SHANGHAI
    http_timeout: float = 10.0
    http_concurrency: int = 64
    http_batch: int = 0
    listen_backlog: int = 4096
    max_body_bytes: int = 64 * 1024
    api_token: str = ""
    data_dir: str = "./ykcproxy-data"
    retention_days: float = 7.0
    dead_letter_after: float = 86400.0
    outbox_limit: int = 100_000
    retry_first: float = 0.5
    retry_max: float = 30.0
    #: Pile port limits, enforced by ``ykcproxy.pile`` (0 turns a limit off; ``allow_list`` is a path).
    login_timeout: float = 30.0
    max_connections: int = 20000
    max_connections_per_address: int = 0
    max_frame_rate: float = 50.0
    error_budget: int = 20
    max_output_buffer: int = 1048576
    allow_list: str = ""

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
