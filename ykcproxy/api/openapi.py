"""The OpenAPI 3.1 document, generated from the frame declarations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ykcproxy import __version__
from ykcproxy.api.app import MAX_WAIT
from ykcproxy.wire.frames import PILE_ID, Direction, FrameType

_MESSAGE = {
    "type": "object",
    "properties": {"message": {"type": "string"}},
    "required": ["message"],
}
_SENT = {
    "type": "object",
    "properties": {
        "message": {"type": "string"},
        "seq": {"type": "integer"},
        "frame": {"type": "string", "description": "the frame written, in hex"},
    },
    "required": ["message", "seq", "frame"],
}


def _answer(description: str, schema: Mapping[str, Any] = _MESSAGE) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema)}}}


def request_schema(frame: FrameType) -> dict[str, Any]:
    """JSON schema of the REST body of ``POST /proxy/<ft>``."""
    props: dict[str, Any] = {}
    required: list[str] = []
    slots = [s for s in frame.slots if hasattr(s, "schemas")]
    if "id" not in frame.keys:
        props.update(PILE_ID.schemas())
        props["id"]["description"] = "the pile to send to (not part of the frame)"
        required.append("id")
    for slot in slots:
        props.update(slot.schemas())  # type: ignore[union-attr]
        required.extend(slot.required)  # type: ignore[union-attr]
    if frame.tail is not None:
        props.update(frame.tail.schemas())
        required.extend(frame.tail.required)
    props["header"] = {
        "type": "object",
        "properties": {
            "seq": {"type": "integer", "minimum": 0, "maximum": 65535},
            "encrypted": {"type": "boolean", "const": False},
        },
        "description": "optional: seq overrides the sequence number",
    }
    return {"type": "object", "properties": props, "required": required}


def _command(frame: FrameType) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": _answer("frame written to the pile's connection", _SENT),
        "400": _answer("malformed JSON, missing field, wrong type or value out of range"),
        "401": _answer("an API token is configured and the request lacks it"),
        "404": _answer("no such pile connected"),
        "413": _answer("request body over the limit"),
    }
    op: dict[str, Any] = {
        "operationId": f"proxy_{frame.ft}",
        "summary": f"0x{frame.ft.upper()} {frame.name} ({frame.title}, spec {frame.section})",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": request_schema(frame)}},
        },
        "responses": responses,
    }
    if frame.reply is not None:
        op["parameters"] = [
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": f"seconds to wait for the pile's 0x{frame.reply:02x} reply",
                "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT},
            }
        ]
        responses["200"] = _answer(
            "frame written; with wait, the decoded reply is under 'reply'",
            {**_SENT, "properties": {**_SENT["properties"], "reply": {"type": "object"}}},
        )
        responses["502"] = _answer("the pile disconnected while waited on (the frame was sent)", _SENT)
        responses["504"] = _answer("no reply within wait (the frame was sent)", _SENT)
    return {"post": op}


def _get(op_id: str, summary: str, codes: Mapping[str, str], content: str = "application/json") -> dict[str, Any]:
    responses = {}
    for code, text in codes.items():
        if content == "application/json":
            responses[code] = _answer(text, {"type": ["object", "array"]})
        else:
            responses[code] = {"description": text, "content": {content: {"schema": {"type": "string"}}}}
    return {"get": {"operationId": op_id, "summary": summary, "responses": responses}}


def build_openapi(catalogue: Mapping[int, FrameType], extra_paths: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole document: every REST path with its request schema and answers."""
    paths: dict[str, Any] = {}
    for frame in sorted(catalogue.values(), key=lambda f: f.code):
        if frame.direction is Direction.DOWN:
            paths[f"/proxy/{frame.ft}"] = _command(frame)
    paths["/piles"] = _get("piles", "connected piles", {"200": "the piles", "401": "token missing"})
    paths["/piles/{pile_id}"] = _get("pile", "one pile", {"200": "the pile", "404": "not connected"})
    paths["/piles/{pile_id}"]["get"]["parameters"] = [
        {"name": "pile_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    paths["/healthz"] = _get("healthz", "health", {"200": "healthy", "503": "degraded"})
    paths["/metrics"] = _get("metrics", "Prometheus metrics", {"200": "metrics"}, "text/plain")
    paths["/openapi.json"] = _get("openapi", "this document", {"200": "the document"})
    for path, item in (extra_paths or {}).items():
        paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "ykcproxy REST control API", "version": __version__},
        "paths": paths,
    }
