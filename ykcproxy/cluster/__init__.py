"""Cluster mode and commands over NATS (see ``doc/deployment.md``)."""

from __future__ import annotations

from typing import Any


def server_list(servers: str) -> list[str]:
    """The addresses of a comma-separated ``--cluster`` value (the servers of one NATS cluster)."""
    return [s.strip() for s in servers.split(",") if s.strip()]


def redact_servers(servers: str) -> str:
    """A comma-separated server list with any password in it replaced by ``***`` (for logs)."""
    from ykcproxy.forward.nats import redact_server

    return ",".join(redact_server(s) for s in server_list(servers))


def connect_options(server: str, username: str, password: str) -> dict[str, Any]:
    """``nats.connect`` keywords for a server (or a comma-separated list of the servers of one
    NATS cluster): user and password, or the password as a token."""
    options: dict[str, Any] = {"servers": server_list(server), "max_reconnect_attempts": -1}
    if username:
        options.update(user=username, password=password)
    elif password:
        options["token"] = password
    return options
