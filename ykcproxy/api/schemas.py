"""JSON schemas of the REST answers, shared by the route table's OpenAPI entries."""

from __future__ import annotations

from typing import Any

#: An error or a plain answer: ``{"message": ..., "errors": [...]}``.
MESSAGE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "description": "what happened or what is wrong, naming the field"},
        "errors": {
            "type": "array",
            "description": "400 for bad fields: one entry per field",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "rule": {"type": "string"}},
                "required": ["field", "rule"],
            },
        },
    },
    "required": ["message"],
}

#: A frame written to a pile.
SENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "seq": {
            "type": "integer",
            "minimum": 0,
            "maximum": 65535,
            "description": "the frame's sequence number",
        },
        "frame": {"type": "string", "description": "the whole frame written to the pile, in hex"},
    },
    "required": ["message", "seq", "frame"],
}

#: A frame written, and the pile's decoded reply when waited for.
SENT_WITH_REPLY: dict[str, Any] = {**SENT, "properties": {**SENT["properties"], "reply": {"type": "object"}}}

#: One pile in ``GET /piles``.
PILE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "pile id, 14 digits"},
        "remote": {"type": "string", "description": "the pile's address, ip:port"},
        "connectedAt": {"type": "integer", "description": "unix ms of the TCP connection"},
        "lastSeen": {"type": "integer", "description": "unix ms of the latest frame from the pile"},
        "loggedIn": {"type": "boolean"},
        "guns": {"type": ["integer", "null"], "description": "number of guns, from the login (0x01)"},
        "login": {"type": "object", "description": "the fields of the pile's 0x01 login"},
        "gunState": {
            "type": "object",
            "description": "gun → its latest state: gunStatus (0x03), status, plugged, tradeSeq (0x13)",
            "additionalProperties": {"type": "object"},
        },
    },
    "required": ["id", "remote", "connectedAt", "lastSeen", "loggedIn"],
}

#: A connection whose login awaits an answer (``GET /piles?state=pending``).
PENDING_LOGIN: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "the pile id of the 0x01"},
        "remote": {"type": "string", "description": "the connection's address, ip:port"},
        "since": {"type": "integer", "description": "unix ms of the login frame"},
    },
    "required": ["id", "remote", "since"],
}

#: The health report.
HEALTH: dict[str, Any] = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

#: ``GET /cluster``: this instance and every instance with its pile count and last refresh.
CLUSTER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean"},
        "instance": {"type": "string"},
        "instances": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "instance": {"type": "string"},
                    "piles": {"type": "integer"},
                    "refreshedAt": {"type": "integer", "description": "unix ms"},
                },
            },
        },
    },
    "required": ["enabled"],
}

#: Any JSON object.
OBJECT: dict[str, Any] = {"type": "object"}

#: The states of a charging session.
SESSION_STATES = ("starting", "charging", "stopping", "ended", "settled", "failed", "abnormal")

#: A charging session (the ``session`` message without its header).
SESSION: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tradeSeq": {"type": "string"},
        "id": {"type": "string", "description": "the pile"},
        "gunId": {"type": "string"},
        "state": {"type": "string", "enum": list(SESSION_STATES)},
        "startedAt": {"type": "integer", "description": "unix ms"},
        "endedAt": {"type": ["integer", "null"], "description": "unix ms; null while open"},
        "energy": {"type": "integer", "description": "raw, x10000 kWh as in 0x13"},
        "amount": {"type": "integer", "description": "raw, x10000 yuan as in 0x13"},
        "anomalies": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "rule": {"type": "integer", "minimum": 1, "maximum": 8},
                    "kind": {"type": "string"},
                    "at": {"type": "integer"},
                    "detail": {"type": "string"},
                },
                "required": ["rule", "kind", "at", "detail"],
            },
        },
    },
    "required": ["tradeSeq", "id", "gunId", "state", "startedAt", "endedAt", "energy", "amount", "anomalies"],
}

#: One frame of a pile's history.
FRAME: dict[str, Any] = {
    "type": "object",
    "properties": {
        "at": {"type": "integer", "description": "unix ms"},
        "dir": {"type": "string", "enum": ["up", "down"]},
        "code": {"type": ["string", "null"], "description": "frame type, 2 hex digits"},
        "name": {"type": ["string", "null"]},
        "seq": {"type": ["integer", "null"]},
        "fields": {"type": ["object", "null"], "description": "decoded fields (null for a bad frame)"},
        "raw": {"type": "string", "description": "the bytes in hex"},
        "error": {"type": ["string", "null"], "description": "what was wrong (crc, length, unknown type...)"},
        "spans": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "start": {"type": "integer"},
                    "end": {"type": "integer"},
                },
            },
        },
    },
    "required": ["at", "dir", "raw", "error"],
}

#: ``GET /piles/<id>/frames``.
FRAMES: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "frames": {"type": "array", "items": FRAME}},
    "required": ["id", "frames"],
}
