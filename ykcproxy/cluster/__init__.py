"""Cluster mode and commands over NATS (see ``doc/deployment.md``)."""

from __future__ import annotations

from typing import Any


def connect_options(server: str, username: str, password: str) -> dict[str, Any]:
    """``nats.connect`` keywords for one server: user and password, or the password as a token."""
    options: dict[str, Any] = {"servers": [server], "max_reconnect_attempts": -1}
    if username:
        options.update(user=username, password=password)
    elif password:
        options["token"] = password
    return options
