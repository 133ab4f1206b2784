"""The OpenAPI 3.1 document, generated from the frame declarations.

Each ``POST /proxy/<ft>`` gets the request schema of its frame type, built
from the same field declarations the codec encodes with and
:meth:`Codec.check` validates with, and the example of ``doc/restapi.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ykcproxy import __version__
from ykcproxy.api.app import MAX_WAIT
from ykcproxy.wire.fields import ListOf
from ykcproxy.wire.frames import PILE_ID, Direction, FrameType

#: Routes that need the API token when one is configured.
_SECURED: list[dict[str, list[str]]] = [{}, {"token": []}]

_MESSAGE: dict[str, Any] = {
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
_SENT: dict[str, Any] = {
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
_PILE: dict[str, Any] = {
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


def _answer(description: str, schema: Mapping[str, Any] = _MESSAGE) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema)}}}


def request_schema(frame: FrameType) -> dict[str, Any]:
    """JSON schema of the REST body of ``POST /proxy/<ft>``, from the frame's declaration."""
    props: dict[str, Any] = {}
    required: list[str] = []
    if "id" not in frame.keys:
        props.update(PILE_ID.schemas())
        props["id"]["description"] = "the pile to send to (not part of the frame)"
        required.append("id")
    described: list[Any] = [s for s in frame.slots if hasattr(s, "schemas")]
    if frame.tail is not None:
        described.append(frame.tail)
    for slot in described:
        props.update(slot.schemas())
        required.extend(slot.required)
    props["header"] = {
        "type": "object",
        "properties": {
            "seq": {"type": "integer", "minimum": 0, "maximum": 65535},
            "encrypted": {"type": "boolean", "const": False},
        },
        "description": "optional: seq overrides the sequence number; encrypted must be false",
    }
    return {"type": "object", "properties": props, "required": required}


def _list_rule(tail: ListOf) -> str:
    return f"{tail.name}: {tail.lo} to {tail.hi} entries"


def _command(frame: FrameType, example: Mapping[str, Any] | None) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": _answer("frame written to the pile's connection", _SENT),
        "400": _answer("malformed JSON, missing field, wrong type or value out of range"),
        "401": _answer("an API token is configured and the request lacks it"),
        "404": _answer("no such pile connected"),
        "413": _answer("request body over the limit"),
    }
    summary = f"0x{frame.ft.upper()} {frame.name} ({frame.title}, spec {frame.section})"
    description = frame.doc
    if frame.tail is not None:
        description += f" ({_list_rule(frame.tail)}.)"
    if frame.answers is not None:
        description += (
            f" A reply to the pile's 0x{frame.answers:02x}: without header.seq it takes the seq of the "
            "pile's latest matching request (for 0x40: the 0x3b with that tradeSeq), else the next seq."
        )
    content: dict[str, Any] = {"schema": request_schema(frame)}
    if example is not None:
        content["example"] = dict(example)
    op: dict[str, Any] = {
        "operationId": f"proxy_{frame.ft}",
        "summary": summary,
        "description": description.strip(),
        "requestBody": {"required": True, "content": {"application/json": content}},
        "responses": responses,
        "security": _SECURED,
    }
    if frame.reply is not None:
        op["parameters"] = [
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": f"seconds to wait for the pile's 0x{frame.reply:02x} reply "
                + (f"(matched by {', '.join(frame.match)})" if frame.match else "(matched by pile and type)"),
                "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT},
            }
        ]
        responses["200"] = _answer(
            f"frame written; with wait, the decoded 0x{frame.reply:02x} reply is under 'reply'",
            {**_SENT, "properties": {**_SENT["properties"], "reply": {"type": "object"}}},
        )
        responses["502"] = _answer("the pile disconnected while waited on (the frame was sent)", _SENT)
        responses["504"] = _answer("no reply within wait (the frame was sent)", _SENT)
    return {"post": op}


def _get(op_id: str, summary: str, responses: Mapping[str, Any]) -> dict[str, Any]:
    return {"get": {"operationId": op_id, "summary": summary, "responses": dict(responses)}}


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def build_openapi(
    catalogue: Mapping[int, FrameType],
    extra_paths: Mapping[str, Any] | None = None,
    examples: Mapping[int, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole document: every REST path with its request schema and answers.

    ``extra_paths`` are the path items of routes added through
    ``ControlApi``'s ``extra_routes`` hook; ``examples`` (frame code → body)
    default to those of ``doc/restapi.md``.
    """
    if examples is None:
        from ykcproxy.api.restdoc import request_examples

        examples = request_examples()
    paths: dict[str, Any] = {}
    for frame in sorted(catalogue.values(), key=lambda f: f.code):
        if frame.direction is Direction.DOWN:
            paths[f"/proxy/{frame.ft}"] = _command(frame, examples.get(frame.code))
    unauthorized = _answer("an API token is configured and the request lacks it")
    paths["/piles"] = _get(
        "piles",
        "piles with an accepted login",
        {"200": _answer("the piles", {"type": "array", "items": _PILE}), "401": unauthorized},
    )
    paths["/piles/{pile_id}"] = _get(
        "pile",
        "one pile",
        {"200": _answer("the pile", _PILE), "401": unauthorized, "404": _answer("not connected")},
    )
    paths["/piles"]["get"]["security"] = _SECURED
    paths["/piles/{pile_id}"]["get"]["security"] = _SECURED
    paths["/piles/{pile_id}"]["get"]["parameters"] = [
        {"name": "pile_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    health = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    paths["/healthz"] = _get(
        "healthz",
        "health: listening, and whether the forwarder is usable",
        {"200": _answer("healthy", health), "503": _answer("degraded (the body says which part)", health)},
    )
    paths["/metrics"] = _get("metrics", "Prometheus metrics", {"200": _text("metrics, text format 0.0.4")})
    paths["/openapi.json"] = _get(
        "openapi", "this document", {"200": _answer("the document", {"type": "object"})}
    )
    for path, item in (extra_paths or {}).items():
        paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ykcproxy REST control API",
            "version": __version__,
            "description": "Commands to YKC V1.6 charging piles and the state of their connections.",
        },
        "components": {
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "only when the proxy runs with --apiToken",
                }
            }
        },
        "paths": paths,
    }
