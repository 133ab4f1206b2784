"""Every option of ykcproxy, declared once.

The ``usage.Options`` class of ``twistd ykcproxy`` and ``ykcproxy``, their
``--help``, the environment variables, the config file's keys and
``doc/configuration.md`` are all made from :data:`OPTIONS`.  Adding an option
is one entry here plus its typed field on :class:`~ykcproxy.config.ProxyConfig`
(a test checks the two agree).
"""

from __future__ import annotations

from ykcproxy.config import CrcMode, LogFormat, LogLevelName, MessagingType
from ykcproxy.options.declaration import Option
from ykcproxy.options.kinds import Choice, Flag, Header, Items, Port, Seconds, Text, Whole, Zone
from ykcproxy.wire.fields import SHANGHAI

PILE = "Pile port"
API = "REST API"
ANSWERS = "Automatic answers"
FORWARD = "Forwarding"
DELIVERY = "Durable delivery"
PROTOCOL = "Protocol"
GENERAL = "General"
SESSIONS = "Charging sessions"
CLUSTER = "Cluster"

#: The groups, in the order ``doc/configuration.md`` lists them.
GROUPS = (GENERAL, PILE, PROTOCOL, ANSWERS, SESSIONS, FORWARD, DELIVERY, API, CLUSTER)

OPTIONS: tuple[Option, ...] = (
    Option(
        "config",
        Text(),
        "",
        "A TOML file of settings (keys are option names); the command line and environment override it.",
        GENERAL,
        field=None,
    ),
    # The pile side.
    Option("host", Text(), "0.0.0.0", "Bind address of the pile port.", PILE, "host"),
    Option("tcpPort", Port(), 27600, "Pile (YKC) TCP port; 0 picks a free one.", PILE, "tcp_port"),
    Option(
        "pileEndpoint",
        Text(),
        "",
        "Twisted server endpoint of the pile port (tcp:..., ssl:..., systemd:...); "
        "wins over --host/--tcpPort.",
        PILE,
        "pile_endpoint",
        shown="tcp:<tcpPort>:interface=<host>:backlog=<listenBacklog>",
    ),
    Option(
        "listenBacklog",
        Whole(lo=1),
        4096,
        "Pending connections the pile port queues (reconnect storms).",
        PILE,
        "listen_backlog",
    ),
    Option(
        "loginTimeout",
        Seconds(zero_ok=True),
        30.0,
        "Seconds a connection may stay without an accepted login (0: no limit).",
        PILE,
        "login_timeout",
    ),
    Option(
        "maxConnections",
        Whole(lo=0),
        20000,
        "Pile connections open at most (0: no limit).",
        PILE,
        "max_connections",
    ),
    Option(
        "maxConnectionsPerAddress",
        Whole(lo=0),
        0,
        "Connections from one remote address at most (0: off; piles behind a carrier NAT share one).",
        PILE,
        "max_connections_per_address",
    ),
    Option(
        "maxFrameRate",
        Seconds(zero_ok=True),
        50.0,
        "Frames per second per logged-in pile on a link; more are dropped (0: no limit).",
        PILE,
        "max_frame_rate",
    ),
    Option(
        "errorBudget",
        Whole(lo=0),
        20,
        "Bad frames per minute after which a link is closed (0: no limit).",
        PILE,
        "error_budget",
    ),
    Option(
        "maxOutputBuffer",
        Whole(lo=0),
        1048576,
        "Bytes queued to a pile that does not read before it is closed (0: no limit).",
        PILE,
        "max_output_buffer",
    ),
    Option(
        "allowList",
        Text(),
        "",
        "File of allowed pile ids, one a line (# comments); reloaded on SIGHUP. Empty: any pile.",
        PILE,
        "allow_list",
    ),
    Option(
        "heartbeatInterval",
        Seconds(),
        10.0,
        "Seconds between a pile's heartbeats.",
        PROTOCOL,
        "heartbeat_interval",
    ),
    Option(
        "heartbeatMisses",
        Whole(lo=1),
        3,
        "Missed heartbeats after which a pile is disconnected.",
        PROTOCOL,
        "heartbeat_misses",
    ),
    Option(
        "crcOrder",
        Choice(enum_type=CrcMode),
        CrcMode.AUTO,
        "CRC byte order: auto, low-first or high-first.",
        PROTOCOL,
        "crc_mode",
    ),
    Option("timezone", Zone(), SHANGHAI, "Time zone of the pile clocks (CP56Time2a).", PROTOCOL, "tz"),
    # Automatic answers.
    Option(
        "autoVerification",
        Flag(),
        False,
        "Answer login (0x01) with 0x02 success (default true when no consumer is configured).",
        ANSWERS,
        "auto_verification",
    ),
    Option(
        "autoHeartbeatResponse",
        Flag(),
        True,
        "Answer heartbeat (0x03) with 0x04.",
        ANSWERS,
        "auto_heartbeat_response",
    ),
    Option(
        "autoBillingModelVerify",
        Flag(),
        False,
        'Answer 0x05 with 0x06 "consistent" (default true when no consumer is configured).',
        ANSWERS,
        "auto_billing_model_verify",
    ),
    Option(
        "autoTransactionRecordConfirm",
        Flag(),
        False,
        "Answer 0x3B with 0x40 once the record is safely stored.",
        ANSWERS,
        "auto_transaction_record_confirm",
    ),
    Option(
        "autoTimeSync",
        Flag(),
        False,
        "Send 0x56 after each accepted login and then daily.",
        ANSWERS,
        "auto_time_sync",
    ),
    # Charging sessions (spec 13.3).
    Option(
        "sessionStartTimeout",
        Seconds(),
        90.0,
        "Seconds a start may take: its successful 0x33/0xA3 and first charging 0x13 (rule 1).",
        SESSIONS,
        "session_start_timeout",
    ),
    Option(
        "sessionRecordTimeout",
        Seconds(),
        30.0,
        "Seconds from the end of charging, or from unplugging, to the 0x3B record (rules 5, 7).",
        SESSIONS,
        "session_record_timeout",
    ),
    Option(
        "sessionStopGrace",
        Seconds(),
        30.0,
        "Seconds a pile may go on charging after a stop command 0x36 (rule 3).",
        SESSIONS,
        "session_stop_grace",
    ),
    # Forwarding.
    Option(
        "messagingServerType",
        Choice(enum_type=MessagingType),
        MessagingType.HTTP,
        "Where frames go: http, nats or none.",
        FORWARD,
        "messaging",
    ),
    Option(
        "servers",
        Items(),
        (),
        "Comma-separated consumers: HTTP URL prefixes, or NATS addresses "
        "(nats:// or tls://; NATS default nats://127.0.0.1:4222). Empty with http: standalone.",
        FORWARD,
        "servers",
    ),
    Option("username", Text(), "", "User name for the message broker.", FORWARD, "username"),
    Option(
        "password",
        Text(),
        "",
        "Password for the message broker (prefer --passwordFile or YKCPROXY_PASSWORD: "
        "the command line is visible in ps).",
        FORWARD,
        "password",
        secret=True,
    ),
    Option(
        "passwordFile",
        Text(),
        "",
        "A file holding the broker password (one trailing newline is stripped).",
        FORWARD,
        field=None,
    ),
    Option(
        "subjectPrefix",
        Text(),
        "charge.proxy.ykc",
        "NATS subject prefix (subject: <prefix>.<ft>).",
        FORWARD,
        "subject_prefix",
    ),
    Option("natsJetStream", Flag(), False, "Publish to NATS with JetStream acks.", FORWARD, "nats_jetstream"),
    Option("httpTimeout", Seconds(), 10.0, "Seconds a webhook POST may take.", FORWARD, "http_timeout"),
    Option(
        "httpConcurrency", Whole(lo=1), 64, "Webhook POSTs in flight at most.", FORWARD, "http_concurrency"
    ),
    Option(
        "httpBatch",
        Whole(lo=0),
        0,
        "Batch mode: POST up to this many messages as one JSON array to <endpoint>/batch (0: off).",
        FORWARD,
        "http_batch",
    ),
    Option(
        "httpHeader",
        Header(),
        (),
        "'Name: value' added to every webhook POST (repeatable; e.g. 'Authorization: Bearer ...').",
        FORWARD,
        "http_headers",
        secret=True,
    ),
    Option(
        "httpSigningKeyFile",
        Text(),
        "",
        "A file whose bytes sign every webhook POST: X-Ykcproxy-Signature: t=<unix s>,v1=<HMAC-SHA256 hex>.",
        FORWARD,
        "http_signing_key_file",
    ),
    Option(
        "httpCaFile",
        Text(),
        "",
        "CA certificates (PEM) that webhook TLS certificates are checked against instead of the system's.",
        FORWARD,
        "http_ca_file",
    ),
    # Durable delivery.
    Option(
        "dataDir",
        Text(),
        "./ykcproxy-data",
        "Directory of the durable outbox ('' keeps messages in memory only).",
        DELIVERY,
        "data_dir",
    ),
    Option(
        "retentionDays",
        Seconds(),
        7.0,
        "Days delivered 0x3B records are kept for GET /transactions.",
        DELIVERY,
        "retention_days",
    ),
    Option(
        "deadLetterAfter",
        Seconds(),
        86400.0,
        "Seconds a message may keep failing before it is a dead letter.",
        DELIVERY,
        "dead_letter_after",
    ),
    Option(
        "retryMaxDelay",
        Seconds(),
        30.0,
        "Longest wait between delivery retries, in seconds.",
        DELIVERY,
        "retry_max",
    ),
    Option(
        "outboxLimit",
        Whole(lo=1),
        100_000,
        "Undelivered messages at which reading from piles pauses.",
        DELIVERY,
        "outbox_limit",
    ),
    # The REST API.
    Option(
        "apiHost",
        Text(),
        "127.0.0.1",
        "Bind address of the REST API (beyond loopback, set a token).",
        API,
        "api_host",
    ),
    Option("httpPort", Port(), 9556, "REST API port; 0 picks a free one.", API, "http_port"),
    Option(
        "apiEndpoint",
        Text(),
        "",
        "Twisted server endpoint of the REST API (tcp:..., ssl:..., unix:...); "
        "wins over --apiHost/--httpPort.",
        API,
        "api_endpoint",
        shown="tcp:<httpPort>:interface=<apiHost>",
    ),
    Option(
        "apiToken",
        Text(),
        "",
        "If set, REST calls need 'Authorization: Bearer <token>' "
        "(prefer --apiTokenFile or YKCPROXY_API_TOKEN).",
        API,
        "api_token",
        aliases=("YKCPROXY_API_TOKEN",),
        secret=True,
    ),
    Option(
        "apiTokenFile",
        Text(),
        "",
        "A file holding the REST API token (one trailing newline is stripped).",
        API,
        field=None,
    ),
    Option(
        "apiReadTokenFile",
        Text(),
        "",
        "A file holding a second, read-only token: GET routes and the event stream only.",
        API,
        field=None,
    ),
    Option(
        "metricsPublic",
        Flag(),
        False,
        "Serve /metrics without a token (for a scraper on a trusted network).",
        API,
        "metrics_public",
    ),
    Option(
        "corsOrigin",
        Text(),
        "",
        "Origin allowed to call the API from a browser (CORS); empty: CORS off. '*' allows any.",
        API,
        "cors_origin",
    ),
    Option(
        "frameHistory",
        Whole(lo=0),
        200,
        "Frames kept per pile for the console and GET /piles/<id>/frames (0: off).",
        API,
        "frame_history",
    ),
    Option("maxBodyBytes", Whole(lo=1), 65536, "Largest REST request body accepted.", API, "max_body_bytes"),
    # Cluster mode and commands over NATS.
    Option(
        "cluster",
        Text(),
        "",
        "NATS address (nats:// or tls://; comma-separated, the servers of one NATS cluster) of the shared "
        "engine: JetStream KV of who holds which pile, and request/reply between instances; "
        "--username/--password as for forwarding. Empty: off.",
        CLUSTER,
        "cluster",
    ),
    Option(
        "instanceId",
        Text(),
        "",
        "This instance's name in the cluster (no spaces, '.', '*' or '>').",
        CLUSTER,
        "instance_id",
        shown="<host name>:<tcpPort>",
    ),
    Option(
        "clusterTtl",
        Seconds(),
        15.0,
        "Seconds an instance and its piles stay in the cluster's view without its heartbeat"
        " (written every third of it).",
        CLUSTER,
        "cluster_ttl",
    ),
    Option(
        "natsCommands",
        Flag(),
        False,
        "Take commands as NATS requests on <commandSubjectPrefix>.<ft> "
        "(over the --cluster servers, else the forwarding NATS servers).",
        CLUSTER,
        "nats_commands",
    ),
    Option(
        "commandSubjectPrefix",
        Text(),
        "charge.command.ykc",
        "NATS subject prefix of the commands (subject: <prefix>.<ft>).",
        CLUSTER,
        "command_subject_prefix",
    ),
    # Operations.
    Option(
        "logFormat",
        Choice(enum_type=LogFormat),
        LogFormat.TEXT,
        "Log format: text (twistd's lines) or json (one JSON object per line, for log shippers).",
        GENERAL,
        "log_format",
    ),
    Option(
        "logLevel",
        Choice(enum_type=LogLevelName),
        LogLevelName.INFO,
        "Least severe log level written: debug, info, warn or error (re-read from --config on SIGHUP).",
        GENERAL,
        "log_level",
    ),
    Option(
        "shutdownTimeout",
        Seconds(),
        10.0,
        "Seconds SIGTERM may take: piles go offline, queued messages are delivered for up to 70% of it "
        "(the rest stays in the outbox for the next start), then the process exits anyway.",
        GENERAL,
        "shutdown_timeout",
    ),
    Option(
        "gcFreezeInterval",
        Seconds(zero_ok=True),
        300.0,
        "Seconds between moves of the objects alive (piles' sessions, connections, orders) out of "
        "the garbage collector's reach, so that its full collections do not stall the piles; every "
        "12th time they are given back to it instead, and collected once. 0 = Python's default.",
        GENERAL,
        "gc_freeze_interval",
    ),
)

#: The options by name.
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
