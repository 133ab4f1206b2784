"""Checks across options, and values derived from several of them: the one place for both."""

from __future__ import annotations

import os
from typing import Any

from ykcproxy.config import MessagingType


class SettingsError(ValueError):
    """Settings that cannot work together; the message names the option."""


def read_secret_file(option: str, path: str) -> str:
    """The secret in ``path`` (one trailing newline stripped)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SettingsError(f"--{option}: cannot read {path!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"--{option}: {path!r} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    if not text:
        raise SettingsError(f"--{option}: {path!r} is empty")
    return text


def load_ca_file(path: str) -> Any:
    """The CA certificates of ``path`` as a Twisted trust root."""
    from twisted.internet import ssl

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SettingsError(f"--httpCaFile: cannot read {path!r}: {e.strerror}") from None
    try:
        certificates = [
            ssl.Certificate.loadPEM(b"-----BEGIN CERTIFICATE-----" + part)
            for part in data.split(b"-----BEGIN CERTIFICATE-----")[1:]
        ]
    except Exception:  # noqa: BLE001 - pyOpenSSL raises its own errors for bad PEM
        raise SettingsError(f"--httpCaFile: {path!r} holds a certificate that is not valid PEM") from None
    if not certificates:
        raise SettingsError(f"--httpCaFile: {path!r} holds no PEM certificate")
    if len(certificates) == 1:
        return certificates[0]
    return ssl.trustRootFromCertificates(certificates)


def _check_http_servers(servers: tuple[str, ...]) -> None:
    import hyperlink

    from ykcproxy.forward.http import normalize_endpoint, redact_url

    for server in servers:
        shown = redact_url(server)
        try:
            url = hyperlink.parse(normalize_endpoint(server)).to_uri()
        except Exception:  # noqa: BLE001 - hyperlink/idna raise various errors (which may quote the URL)
            raise SettingsError(f"--servers: {shown!r} is not an HTTP URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise SettingsError(f"--servers: {shown!r} is not an http:// or https:// URL")


def _check_nats(servers: tuple[str, ...], prefix: str) -> tuple[str, ...]:
    from ykcproxy.forward.nats import check_subject_prefix, normalize_server

    try:
        normalized = tuple(normalize_server(s) for s in servers)
    except ValueError as e:
        raise SettingsError(f"--servers: {e}") from None
    try:
        check_subject_prefix(prefix)
    except ValueError as e:
        raise SettingsError(f"--subjectPrefix: {e}") from None
    return normalized


def _check_data_dir(path: str) -> None:
    """The outbox directory must be usable; it is made at start, not here."""
    if not path:
        return
    probe = os.path.abspath(path)
    if os.path.exists(probe):
        if not os.path.isdir(probe):
            raise SettingsError(f"--dataDir: {path!r} is not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise SettingsError(f"--dataDir: {path!r} is not writable")
        return
    parent = os.path.dirname(probe)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise SettingsError(f"--dataDir: {path!r} cannot be created ({parent!r} is not writable)")


#: The NATS server used when ``--servers`` is empty (NATS always has a consumer).
DEFAULT_NATS_SERVER = "nats://127.0.0.1:4222"

#: Auto answers that default to on when no consumer is configured.
STANDALONE_ANSWERS = ("autoVerification", "autoHeartbeatResponse", "autoBillingModelVerify")


def derive(values: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """Check ``values`` (option name -> value) together and return them completed.

    Reads the secret files, validates the consumers, turns on the standalone
    auto answers not set explicitly, and computes derived settings.
    """
    values = dict(values)
    if values["passwordFile"]:
        if "password" in explicit:
            raise SettingsError("--password and --passwordFile: give only one")
        values["password"] = read_secret_file("passwordFile", values["passwordFile"])
    if values["apiTokenFile"]:
        if "apiToken" in explicit:
            raise SettingsError("--apiToken and --apiTokenFile: give only one")
        values["apiToken"] = read_secret_file("apiTokenFile", values["apiTokenFile"])
    values["apiReadToken"] = ""
    if values["apiReadTokenFile"]:
        if not values["apiToken"]:
            raise SettingsError(
                "--apiReadTokenFile needs --apiToken (or --apiTokenFile) for the other routes"
            )
        values["apiReadToken"] = read_secret_file("apiReadTokenFile", values["apiReadTokenFile"])
        if values["apiReadToken"] == values["apiToken"]:
            raise SettingsError("--apiReadTokenFile: the read-only token must differ from the API token")
    messaging = values["messagingServerType"]
    if messaging is MessagingType.HTTP:
        _check_http_servers(values["servers"])
    elif messaging is MessagingType.NATS:
        servers = values["servers"] or (DEFAULT_NATS_SERVER,)
        values["servers"] = _check_nats(servers, values["subjectPrefix"])
    values["subjectPrefix"] = values["subjectPrefix"].strip(".")
    uses_tcp = not values["pileEndpoint"] and not values["apiEndpoint"]
    if uses_tcp and values["tcpPort"] and values["tcpPort"] == values["httpPort"]:
        if values["host"] == values["apiHost"] or "0.0.0.0" in (values["host"], values["apiHost"]):
            raise SettingsError("--tcpPort and --httpPort must differ")
    forwarding = messaging is MessagingType.NATS or (messaging is MessagingType.HTTP and values["servers"])
    _check_data_dir(values["dataDir"])
    if not forwarding:
        for name in STANDALONE_ANSWERS:
            if name not in explicit:
                values[name] = True
    if values["httpSigningKeyFile"]:
        read_secret_file("httpSigningKeyFile", values["httpSigningKeyFile"])
    if values["httpCaFile"]:
        load_ca_file(values["httpCaFile"])
    if values["allowList"]:
        from ykcproxy.pile.allowlist import AllowList, AllowListError

        try:
            AllowList.load(values["allowList"])
        except AllowListError as e:
            raise SettingsError(f"--allowList: {e}") from None
    for name in ("pileEndpoint", "apiEndpoint"):
        if values[name]:
            _check_endpoint(name, values[name])
    _check_cluster(values, messaging)
    return values


def _check_cluster(values: dict[str, Any], messaging: MessagingType) -> None:
    """The cluster address, the instance name, and a connection for the NATS commands."""
    from ykcproxy.forward.nats import check_subject_prefix, normalize_server

    if values["cluster"]:
        try:
            servers = [s for s in values["cluster"].split(",") if s.strip()]
            values["cluster"] = ",".join(normalize_server(s) for s in servers)
        except ValueError as e:
            raise SettingsError(f"--cluster: {e}") from None
    if _BAD_INSTANCE_CHARS & set(values["instanceId"]):
        raise SettingsError(f"--instanceId: {values['instanceId']!r} may not hold spaces, '.', '*' or '>'")
    try:
        values["commandSubjectPrefix"] = check_subject_prefix(values["commandSubjectPrefix"])
    except ValueError as e:
        raise SettingsError(f"--commandSubjectPrefix: {e}") from None
    if values["natsCommands"] and not values["cluster"] and messaging is not MessagingType.NATS:
        raise SettingsError(
            "--natsCommands needs a NATS connection: --cluster, or --messagingServerType nats"
        )


#: Characters an instance name may not hold (it is one token of a NATS subject and a KV key).
_BAD_INSTANCE_CHARS = frozenset(" \t.*>")


def _check_endpoint(option: str, description: str) -> None:
    """The endpoint description must parse and its files load (nothing is bound here)."""
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(_NO_REACTOR, description)
    except Exception as e:  # noqa: BLE001 - endpoint parsers raise many kinds (ValueError, KeyError, SSL)
        raise SettingsError(
            f"--{option}: {description!r} is not a usable endpoint description: {e}"
        ) from None


#: Endpoints are made only to check them here; they are never listened on.
_NO_REACTOR: Any = object()
