"""The REST API's routes, each declared once with its OpenAPI entry.

A :class:`Route` names its path, method, handler and every answer it can
give; :class:`~ykcproxy.api.app.ControlApi` serves the table and
:mod:`ykcproxy.api.openapi` documents exactly the same table.  Adding a route
is one entry in :func:`routes` and its handler method.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from ykcproxy.api import schemas
from ykcproxy.wire.frames import Direction, FrameType

#: Longest ``?wait=`` accepted, in seconds (0x34 may take 90 s, plus margin).
MAX_WAIT = 300.0


@attrs.frozen
class Reply:
    """One answer a route can give: a description and the body's schema."""

    description: str
    schema: Mapping[str, Any] = attrs.field(factory=lambda: dict(schemas.MESSAGE))
    content_type: str = "application/json"

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI response object."""
        return {
            "description": self.description,
            "content": {self.content_type: {"schema": dict(self.schema)}},
        }


@attrs.frozen
class Param:
    """A path or query parameter."""

    name: str
    where: str  # "path" or "query"
    schema: Mapping[str, Any]
    description: str = ""
    required: bool = False

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI parameter object."""
        out: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "schema": dict(self.schema),
        }
        if self.description:
            out["description"] = self.description
        return out


@attrs.frozen
class Route:
    """One REST route.

    :param path: Klein's form (``/piles/<pile_id>``).
    :param handler: the name of the handler method, looked up on the API's handler objects.
    :param public: served without the API token.
    :param public_if: the config setting that, when true, serves it without the token.
    :param query_token: the token may come as ``?token=`` (for browsers' EventSource).
    :param body: the JSON schema of the request body (None: no body).
    :param kwargs: fixed keyword arguments for the handler (a command's frame type).
    """

    method: str
    path: str
    name: str
    handler: str
    summary: str
    replies: Mapping[int, Reply]
    params: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None
    body_required: bool = True
    example: Mapping[str, Any] | None = None
    description: str = ""
    public: bool = False
    public_if: str | None = None
    query_token: bool = False
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def openapi_path(self) -> str:
        """The path in OpenAPI's form (``/piles/{pile_id}``)."""
        return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", self.path)

    def all_replies(self) -> dict[int, Reply]:
        """Every answer, with those the plumbing adds (401 with a token, 400/413 for a body)."""
        out = dict(self.replies)
        if self.body is not None:
            out.setdefault(400, Reply("malformed JSON or invalid body (the message names the field)"))
            out.setdefault(413, Reply("request body over --maxBodyBytes"))
        if not self.public:
            out.setdefault(401, Reply("an API token is configured and the request lacks it"))
            if self.method != "GET":
                out.setdefault(403, Reply("the read-only token cannot do this"))
        return dict(sorted(out.items()))

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI operation object."""
        op: dict[str, Any] = {"operationId": self.name, "summary": self.summary}
        if self.description:
            op["description"] = self.description
        if self.params:
            op["parameters"] = [p.openapi() for p in self.params]
        if self.body is not None:
            content: dict[str, Any] = {"schema": dict(self.body)}
            if self.example is not None:
                content["example"] = dict(self.example)
            op["requestBody"] = {"required": self.body_required, "content": {"application/json": content}}
        op["responses"] = {str(code): reply.openapi() for code, reply in self.all_replies().items()}
        if not self.public:
            op["security"] = [{}, {"token": []}]
        return op


_PILE_ID = Param("pile_id", "path", {"type": "string"}, "the pile's 14-digit id")
_NOT_CONNECTED = Reply("no such pile connected")


def _command_route(frame: FrameType, schema: Mapping[str, Any], example: Mapping[str, Any] | None) -> Route:
    description = frame.doc
    if frame.tail is not None:
        description += f" ({frame.tail.name}: {frame.tail.lo} to {frame.tail.hi} entries.)"
    if frame.answers is not None:
        description += (
            f" A reply to the pile's 0x{frame.answers:02x}: without header.seq it takes the seq of the "
            "pile's latest matching request (for 0x40: the 0x3b with that tradeSeq), else the next seq."
        )
    replies: dict[int, Reply] = {
        200: Reply("frame written to the pile's connection", schemas.SENT),
        400: Reply("malformed JSON, missing field, wrong type or value out of range"),
        404: _NOT_CONNECTED,
    }
    params: tuple[Param, ...] = ()
    if frame.reply is not None:
        matched = f"(matched by {', '.join(frame.match)})" if frame.match else "(matched by pile and type)"
        params = (
            Param(
                "wait",
                "query",
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT},
                f"seconds to wait for the pile's 0x{frame.reply:02x} reply {matched}",
            ),
        )
        replies[200] = Reply(
            f"frame written; with wait, the decoded 0x{frame.reply:02x} reply is under 'reply'",
            schemas.SENT_WITH_REPLY,
        )
        replies[502] = Reply("the pile disconnected while waited on (the frame was sent)", schemas.SENT)
        replies[504] = Reply("no reply within wait (the frame was sent)", schemas.SENT)
    return Route(
        "POST",
        f"/proxy/{frame.ft}",
        f"proxy_{frame.ft}",
        "command",
        f"0x{frame.ft.upper()} {frame.name} ({frame.title}, spec {frame.section})",
        replies,
        params=params,
        body=schema,
        example=example,
        description=description.strip(),
        kwargs={"frame": frame},
    )


def command_routes(
    catalogue: Mapping[int, FrameType], examples: Mapping[int, Mapping[str, Any]] | None = None
) -> list[Route]:
    """``POST /proxy/<ft>`` for every platform→pile frame type, from its declaration."""
    from ykcproxy.api.validation import request_schema

    examples = examples or {}
    frames = sorted((f for f in catalogue.values() if f.direction is Direction.DOWN), key=lambda f: f.code)
    return [_command_route(f, request_schema(f), examples.get(f.code)) for f in frames]


_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1}, "at most this many entries")

#: Every route other than the commands, in the order the docs list them.
ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/piles",
        "piles",
        "list_piles",
        "piles with an accepted login (with state=pending: connections whose login awaits an answer)",
        {
            200: Reply(
                "the piles (state=pending: id, remote and since of each waiting login)",
                {"type": "array", "items": {"oneOf": [schemas.PILE, schemas.PENDING_LOGIN]}},
            ),
            400: Reply("bad state"),
        },
        params=(
            Param(
                "state",
                "query",
                {"type": "string", "enum": ["online", "pending"]},
                "online (default): logged-in piles; pending: logins not answered yet",
            ),
        ),
    ),
    Route(
        "GET",
        "/piles/<pile_id>",
        "pile",
        "get_pile",
        "one pile",
        {200: Reply("the pile", schemas.PILE), 404: Reply("not connected")},
        params=(_PILE_ID,),
    ),
    Route(
        "GET",
        "/transactions/<trade_seq>",
        "transaction",
        "transaction",
        "stored 0x3B records with this tradeSeq (kept for --retentionDays)",
        {
            200: Reply("the records", schemas.OBJECT),
            400: Reply("not a 32-digit tradeSeq"),
            404: Reply("no such record, or no records store (--dataDir '')"),
        },
        params=(Param("trade_seq", "path", {"type": "string"}, "32 decimal digits"),),
    ),
    Route(
        "GET",
        "/sessions",
        "sessions",
        "list_sessions",
        "charging sessions (orders) tracked by the rules of spec 13.3, newest first",
        {
            200: Reply(
                "one page of sessions; pass 'next' as 'before' for the next page",
                {
                    "type": "object",
                    "properties": {
                        "sessions": {"type": "array", "items": schemas.SESSION},
                        "next": {"type": ["string", "null"]},
                        "unanswered": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "cluster mode: the instances whose orders are missing"
                            " (they did not answer within 2 s)",
                        },
                    },
                    "required": ["sessions", "next"],
                },
            ),
            400: Reply("a bad query argument (the message names it)"),
        },
        params=(
            Param("pile", "query", {"type": "string"}, "only this pile's sessions (14 digits)"),
            Param("gun", "query", {"type": "string"}, "only this gun's (1 or 2 digits)"),
            Param(
                "state",
                "query",
                {"type": "string", "enum": list(schemas.SESSION_STATES)},
                "only in this state",
            ),
            Param("since", "query", {"type": "integer", "minimum": 0}, "started at or after this unix ms"),
            Param(
                "anomaly",
                "query",
                {"type": "string"},
                "with an anomaly: a rule number 1-8, a kind (start-timeout ...), or 'any'",
            ),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (100)"),
            Param("before", "query", {"type": "string"}, "the 'next' of the previous page"),
        ),
    ),
    Route(
        "GET",
        "/sessions/<trade_seq>",
        "session",
        "get_session",
        "one charging session with its record, checks and timeline",
        {
            200: Reply("the session", schemas.OBJECT),
            400: Reply("not a 32-digit tradeSeq"),
            404: Reply("no such session is tracked"),
        },
        params=(Param("trade_seq", "path", {"type": "string"}, "32 digits"),),
    ),
    Route(
        "GET",
        "/outbox",
        "outbox",
        "outbox_state",
        "queue depth, oldest undelivered age, retries and dead letters",
        {200: Reply("the outbox state", schemas.OBJECT), 400: Reply("bad limit")},
        params=(_LIMIT,),
    ),
    Route(
        "POST",
        "/outbox/replay",
        "outbox_replay",
        "outbox_replay",
        "deliver dead letters again (all, or those listed in 'keys')",
        {200: Reply("how many were queued again", schemas.OBJECT), 404: Reply("no durable outbox")},
        body={"type": "object", "properties": {"keys": {"type": "array", "items": {"type": "integer"}}}},
        body_required=False,
    ),
    Route(
        "GET",
        "/piles/<pile_id>/frames",
        "pile_frames",
        "pile_frames",
        "the pile's last frames (--frameHistory of them), both ways, decoded, with their bytes; "
        "in cluster mode, those of the instance holding the pile",
        {
            200: Reply("the frames, oldest first", schemas.FRAMES),
            400: Reply("bad limit"),
            404: Reply("no frames of this pile are kept, or the history is off"),
            502: Reply("cluster mode: the holding instance's answer is larger than NATS carries"),
            503: Reply("cluster mode: the instance holding the pile did not answer within 2 s"),
        },
        params=(_PILE_ID, _LIMIT),
    ),
    Route(
        "POST",
        "/piles/<pile_id>/trace",
        "pile_trace",
        "trace",
        "switch the pile's frame trace (every frame, hex and decoded, in the log) on or off",
        {200: Reply("the trace's state", schemas.OBJECT)},
        params=(_PILE_ID,),
        body={"type": "object", "properties": {"enabled": {"type": "boolean"}}, "required": ["enabled"]},
    ),
    Route(
        "GET",
        "/events",
        "events",
        "events",
        "the console's server-sent events: online, offline, pending, gun, session, and frame for ?pile=",
        {
            200: Reply(
                "an event stream that stays open; each event's data is a JSON object",
                {"type": "object"},
                "text/event-stream",
            )
        },
        params=(
            Param("pile", "query", {"type": "string"}, "also stream this pile's frames"),
            Param(
                "token", "query", {"type": "string"}, "the API token, for browsers that cannot set headers"
            ),
        ),
        query_token=True,
    ),
    Route(
        "GET",
        "/",
        "console",
        "console_index",
        "the live console (a web page)",
        {
            200: Reply("the console's page", {"type": "string"}, "text/html"),
            404: Reply("the console's files are not installed"),
        },
        public=True,
    ),
    Route(
        "GET",
        "/console/<name>",
        "console_file",
        "console_file",
        "a file of the console (script, style)",
        {200: Reply("the file", {"type": "string"}, "text/plain"), 404: Reply("no such file")},
        params=(Param("name", "path", {"type": "string"}),),
        public=True,
    ),
    Route(
        "GET",
        "/cluster",
        "cluster",
        "cluster",
        "the instances of the cluster (--cluster) with their pile counts and last refresh",
        {200: Reply("the instances (enabled false without --cluster)", schemas.CLUSTER)},
    ),
    Route(
        "GET",
        "/healthz",
        "healthz",
        "healthz",
        "health: listening, and whether the forwarder is usable",
        {
            200: Reply("healthy", schemas.HEALTH),
            503: Reply("degraded (the body says which part)", schemas.HEALTH),
        },
        public=True,
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "metrics_text",
        "Prometheus metrics",
        {200: Reply("metrics, text format 0.0.4", {"type": "string"}, "text/plain")},
        public_if="metrics_public",
    ),
    Route(
        "GET",
        "/openapi.json",
        "openapi",
        "openapi",
        "this document",
        {200: Reply("the document", schemas.OBJECT)},
        public=True,
    ),
)
