"""Checks of REST request bodies, from the frame declarations (pure functions).

Request bodies of ``POST /proxy/<ft>`` are checked by the same frame
declarations that drive the codec (:meth:`Codec.check`); the JSON schema of
each body in ``/openapi.json`` comes from the same declarations.  The docs
generator answers its error examples with these functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.web.iweb import IRequest

from ykcproxy.wire.codec import Codec
from ykcproxy.wire.fields import FieldError
from ykcproxy.wire.frames import PILE_ID, FrameType

#: The rule given when a body lacks the pile id (the seed's 0x0A/0x58 examples do).
ID_REQUIRED = "is required: the 14-digit id of the pile to send the frame to"


class ApiError(Exception):
    """An answer other than 200, with its JSON body."""

    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.body = {"message": message, **extra}


@attrs.frozen
class Answer:
    """A handler's answer with a status code other than 200, or not JSON."""

    code: int
    body: Any
    content_type: bytes = b"application/json"


#: What a handler returns when it wrote (and finished) the answer itself (an event stream).
STREAMED: Any = object()


@attrs.frozen
class Command:
    """A checked ``POST /proxy/<ft>`` body."""

    frame: FrameType
    pile_id: str
    #: The frame's fields, normalised by :meth:`Codec.check` (what gets encoded).
    fields: dict[str, Any]
    #: ``{"seq": n}`` when the body gave ``header.seq``, else empty.
    header: dict[str, Any]


# -- validation (pure functions: also used by the docs generator and the tests) --------
def parse_json(content: bytes) -> Any:
    """The JSON value of a request body; :class:`ApiError` 400 says what is malformed."""
    if not content.strip():
        raise ApiError(400, "malformed JSON: the body is empty (send a JSON object)")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"malformed JSON: the body is not UTF-8 text (byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        before = text[: e.pos].rstrip()
        if before.endswith(",") and text[e.pos : e.pos + 1] in ("}", "]"):
            line = text.count("\n", 0, len(before) - 1) + 1
            raise ApiError(
                400,
                f"malformed JSON: trailing comma on line {line} before the closing "
                f"'{text[e.pos]}' at {where} (JSON allows no comma after the last member)",
            ) from None
        raise ApiError(400, f"malformed JSON: {e.msg} at {where}") from None
    except (ValueError, RecursionError) as e:
        # Integers over the str→int digit limit; arrays nested too deeply.
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise ApiError(400, f"malformed JSON: {reason}") from None


def _check_header(body: Mapping[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    header = body.get("header")
    if header is None:
        return {}
    if not isinstance(header, dict):
        errors.append(FieldError("header", "must be an object"))
        return {}
    out: dict[str, Any] = {}
    seq = header.get("seq")
    if seq is not None:
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 0xFFFF:
            errors.append(FieldError("header.seq", f"must be an integer from 0 to 65535, got {seq!r}"))
        else:
            out["seq"] = seq
    encrypted = header.get("encrypted", False)
    if encrypted not in (False, None):
        errors.append(FieldError("header.encrypted", "must be false (no encryption keys can be configured)"))
    return out


def _field_errors(frame: FrameType, body: Mapping[str, Any]) -> list[FieldError]:
    """Every field of ``body`` that does not fit its declaration (not just the first)."""
    errors: list[FieldError] = []
    scratch: dict[str, Any] = {}
    slots: list[Any] = [s for s in frame.slots if hasattr(s, "check_into")]
    if frame.tail is not None:
        slots.append(frame.tail)
    for slot in slots:
        try:
            slot.check_into(body, scratch)
        except FieldError as e:
            errors.append(e)
    return errors


def _explain(errors: list[FieldError]) -> ApiError:
    listed = [
        {"field": e.path, "rule": ID_REQUIRED if (e.path, e.rule) == ("id", "is required") else e.rule}
        for e in errors
    ]
    text = "; ".join(f"{e['field']}: {e['rule']}" for e in listed)
    if len(listed) > 1:
        text = f"{len(listed)} fields are wrong: {text}"
    return ApiError(400, text, errors=listed)


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_TYPES[type(None)] = "null"


def check_command(codec: Codec, frame: FrameType, body: Any) -> Command:
    """Check a parsed ``POST /proxy/<ft>`` body; :class:`ApiError` 400 names every bad field."""
    if not isinstance(body, dict):
        raise ApiError(400, f"body: must be a JSON object, not {_JSON_TYPES.get(type(body), 'that')}")
    errors: list[FieldError] = []
    header = _check_header(body, errors)
    pile_id: str | None = None
    if "id" not in frame.keys:  # 0x40: the pile id is not in the frame, but names the pile
        try:
            pile_id = PILE_ID.check(body["id"], "id") if body.get("id") is not None else None
            if pile_id is None:
                raise FieldError("id", "is required")
        except FieldError as e:
            errors.append(e)
    try:
        fields = codec.check(frame.code, body)
    except FieldError as e:
        errors.extend(_field_errors(frame, body) or [e])
    if errors:
        raise _explain(errors)
    return Command(frame, pile_id or fields["id"], fields, header)


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


_REQUIRED: Any = object()


def read_json_body(request: IRequest, limit: int, empty: Any = _REQUIRED) -> Any:
    """The request's JSON body: :class:`ApiError` 413 over ``limit`` bytes, 400 when malformed.

    An empty body is an error unless ``empty`` is given: then it is the value.
    """
    length = request.getHeader(b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise ApiError(413, f"request body of {int(length)} bytes is over the limit of {limit} bytes")
    content = request.content.read(limit + 1)  # type: ignore[attr-defined]
    if len(content) > limit:
        raise ApiError(413, f"request body is over the limit of {limit} bytes")
    if empty is not _REQUIRED and not content.strip():
        return empty
    return parse_json(content)


def query_text(request: IRequest, name: str) -> str | None:
    """The first value of query parameter ``name`` as text (None when absent)."""
    raw = request.args.get(name.encode())  # type: ignore[attr-defined]
    if not raw:
        return None
    return str(raw[0].decode("utf-8", "replace"))
