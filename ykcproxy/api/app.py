"""The REST control API (Klein): commands to piles, the registry, health, metrics.

Request bodies of ``POST /proxy/<ft>`` are checked by the same frame
declarations that drive the codec (:meth:`Codec.check`); see
:mod:`ykcproxy.api.openapi` for the document generated from them and
:mod:`ykcproxy.api.restdoc` for ``doc/restapi.md``.

Other modules add routes through the ``extra_routes`` hook of
:class:`ControlApi`: the hook calls ``api.route(path, methods, name)(handler)``
for each route and puts the OpenAPI path item of each path into
``api.extra_openapi_paths`` (``tests/test_openapi.py`` fails for a route that
is not documented).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import attrs
from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ykcproxy.config import ProxyConfig
from ykcproxy.metrics import Metrics
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.pile.session import PileSession
from ykcproxy.pile.waiters import PileGone
from ykcproxy.wire.codec import Codec
from ykcproxy.wire.fields import FieldError
from ykcproxy.wire.frames import PILE_ID, Direction, FrameType

log = Logger()

#: Longest ``?wait=`` accepted, in seconds (0x34 may take 90 s, plus margin).
MAX_WAIT = 300.0

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


@attrs.frozen
class Command:
    """A checked ``POST /proxy/<ft>`` body."""

    frame: FrameType
    pile_id: str
    #: The frame's fields, normalised by :meth:`Codec.check` (what gets encoded).
    fields: dict[str, Any]
    #: ``{"seq": n}`` when the body gave ``header.seq``, else empty.
    header: dict[str, Any]


def _json(request: IRequest, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(body, ensure_ascii=False).encode()


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


class ControlApi:
    """Klein routes over a :class:`PileServerFactory`."""

    def __init__(
        self,
        piles: PileServerFactory,
        metrics: Metrics,
        health: Callable[[], dict[str, Any]],
        config: ProxyConfig,
        extra_routes: Callable[[ControlApi], None] | None = None,
    ) -> None:
        self.piles = piles
        self.metrics = metrics
        self.health = health
        self.config = config
        self.codec = piles.codec
        self.clock = piles.clock
        self.app = Klein()
        self.commands: dict[str, FrameType] = {
            f.ft: f for f in self.codec.catalogue.values() if f.direction is Direction.DOWN
        }
        #: OpenAPI path items of the routes an ``extra_routes`` hook adds, by path.
        self.extra_openapi_paths: dict[str, Any] = {}
        self._routes()
        if extra_routes is not None:
            extra_routes(self)

    # -- plumbing ----------------------------------------------------------------
    def route(self, path: str, methods: list[str], name: str, public: bool = False) -> Callable[..., Any]:
        """Register a handler that returns JSON (or an :class:`Answer`) or raises :class:`ApiError`."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            @inlineCallbacks
            def wrapped(request: IRequest, **kwargs: Any) -> Any:
                try:
                    if not public:
                        self._authorize(request)
                    result = yield handler(request, **kwargs)
                    if isinstance(result, Answer):
                        code = result.code
                        if result.content_type == b"application/json":
                            out = _json(request, code, result.body)
                        else:
                            request.setResponseCode(code)
                            request.setHeader(b"Content-Type", result.content_type)
                            out = result.body
                    else:
                        code, out = 200, _json(request, 200, result)
                except ApiError as e:
                    code, out = e.code, _json(request, e.code, e.body)
                except CancelledError:
                    # The client went away (Klein cancels the handler); nobody to answer.
                    self.metrics.rest_requests.labels(name, "499").inc()
                    raise
                except Exception:
                    log.failure("REST {path} failed", path=path)
                    code, out = 500, _json(request, 500, {"message": "internal error (logged)"})
                self.metrics.rest_requests.labels(name, str(code)).inc()
                return out

            self.app.route(path, methods=methods, endpoint=name, branch=False)(wrapped)
            return handler

        return register

    def _authorize(self, request: IRequest) -> None:
        token = self.config.api_token
        if not token:
            return
        given = request.getHeader(b"authorization") or b""
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            raise ApiError(401, "missing or wrong API token (send 'Authorization: Bearer <token>')")

    def json_body(self, request: IRequest) -> Any:
        """The request's JSON body: 413 over ``--maxBodyBytes``, 400 when malformed."""
        limit = self.config.max_body_bytes
        length = request.getHeader(b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            raise ApiError(413, f"request body of {int(length)} bytes is over the limit of {limit} bytes")
        content = request.content.read(limit + 1)  # type: ignore[attr-defined]
        if len(content) > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        return parse_json(content)

    # -- routes ---------------------------------------------------------------------
    def _routes(self) -> None:
        for ft, frame in self.commands.items():
            self.route(f"/proxy/{ft}", ["POST"], f"proxy_{ft}")(partial(self.command, frame=frame))
        self.route("/piles", ["GET"], "piles")(self.list_piles)
        self.route("/piles/<pile_id>", ["GET"], "pile")(self.get_pile)
        self.route("/healthz", ["GET"], "healthz", public=True)(self.healthz)
        self.route("/metrics", ["GET"], "metrics", public=True)(self.metrics_text)
        self.route("/openapi.json", ["GET"], "openapi", public=True)(self.openapi)

        @self.app.handle_errors(NotFound)
        def not_found(request: IRequest, failure: Failure) -> bytes:
            path = request.path.decode("latin-1", "replace")
            if path.startswith("/proxy/"):
                message = (
                    f"unknown frame type {path[7:]!r}: POST /proxy/<ft> takes one of "
                    f"{', '.join(sorted(self.commands))}"
                )
            else:
                message = f"no such path: {path}"
            self.metrics.rest_requests.labels("unknown", "404").inc()
            return _json(request, 404, {"message": message})

        @self.app.handle_errors(MethodNotAllowed)
        def not_allowed(request: IRequest, failure: Failure) -> bytes:
            self.metrics.rest_requests.labels("unknown", "405").inc()
            allowed = getattr(failure.value, "valid_methods", None) or []
            if allowed:
                request.setHeader(b"Allow", ", ".join(allowed).encode())
            method = request.method.decode("latin-1")
            return _json(
                request, 405, {"message": f"method {method} is not allowed here; use {', '.join(allowed)}"}
            )

    def list_piles(self, request: IRequest) -> Any:
        """GET /piles: every pile with an accepted login."""
        return [pile_view(s) for s in self.piles.registry]

    def get_pile(self, request: IRequest, pile_id: str) -> Any:
        """GET /piles/<id>."""
        session = self.piles.registry.get(pile_id)
        if session is None:
            raise ApiError(404, f"pile {pile_id} is not connected")
        return pile_view(session)

    def healthz(self, request: IRequest) -> Any:
        """GET /healthz: 200 when listening and forwarding works, else 503."""
        state = self.health()
        return Answer(200 if state["ok"] else 503, state)

    def metrics_text(self, request: IRequest) -> Any:
        """GET /metrics: Prometheus text format."""
        return Answer(200, self.metrics.render(), b"text/plain; version=0.0.4; charset=utf-8")

    def openapi(self, request: IRequest) -> Any:
        """GET /openapi.json."""
        return self.openapi_document()

    def openapi_document(self) -> dict[str, Any]:
        """The OpenAPI document of every route of this API, extra routes included."""
        from ykcproxy.api.openapi import build_openapi

        return build_openapi(self.codec.catalogue, self.extra_openapi_paths)

    # -- commands ---------------------------------------------------------------------
    def _wait_seconds(self, request: IRequest, frame: FrameType) -> float | None:
        raw = request.args.get(b"wait")  # type: ignore[attr-defined]
        if not raw:
            return None
        text = raw[0].decode("latin-1")
        try:
            seconds = float(text)
        except ValueError:
            raise ApiError(400, f"wait: must be a number of seconds, got {text!r}") from None
        if not 0 < seconds <= MAX_WAIT:
            raise ApiError(400, f"wait: must be more than 0 and at most {MAX_WAIT:g} seconds, got {text}")
        if frame.reply is None:
            raise ApiError(
                400,
                f"wait: the pile answers no 0x{frame.ft} with a reply frame, so there is none to wait for",
            )
        return seconds

    @inlineCallbacks
    def command(self, request: IRequest, frame: FrameType) -> Any:
        """POST /proxy/<ft>: validate, write the frame, optionally wait for the reply."""
        wait = self._wait_seconds(request, frame)
        cmd = check_command(self.codec, frame, self.json_body(request))
        registry = self.piles.registry
        # A 0x02 answers a login that is still pending; everything else needs an accepted one.
        session = registry.find(cmd.pile_id) if frame.code == 0x02 else registry.get(cmd.pile_id)
        if session is None or session.connection.close_reason is not None:
            raise ApiError(404, f"pile {cmd.pile_id} is not connected")
        waiting: Deferred[dict[str, Any]] | None = None
        if wait is not None and frame.reply is not None:
            match = {k: cmd.fields[k] for k in frame.match}
            waiting = self.piles.waiters.wait(cmd.pile_id, frame.reply, match)
        try:
            seq, raw = self.piles.command(session, frame.code, {**cmd.fields, "header": cmd.header})
        except LookupError as e:
            raise ApiError(404, str(e)) from None
        except BaseException:
            if waiting is not None:
                waiting.addErrback(lambda f: f.trap(CancelledError))
                waiting.cancel()
            raise
        result: dict[str, Any] = {"message": "done", "seq": seq, "frame": raw.hex()}
        if waiting is None or wait is None:
            return result
        waiting.addTimeout(wait, self.clock)
        try:
            reply = yield waiting
        except TimeoutError:
            raise ApiError(
                504,
                f"no 0x{frame.reply:02x} reply from pile {cmd.pile_id} within {wait:g} s; "
                f"the 0x{frame.ft} frame was sent (seq {seq})",
                seq=seq,
                frame=raw.hex(),
            ) from None
        except PileGone as e:
            raise ApiError(
                502,
                f"{e} while waiting for its 0x{frame.reply:02x} reply; "
                f"the 0x{frame.ft} frame was sent (seq {seq})",
                seq=seq,
                frame=raw.hex(),
            ) from None
        result["reply"] = reply
        return result


def pile_view(session: PileSession) -> dict[str, Any]:
    """The JSON of one pile in ``GET /piles`` and ``GET /piles/<id>``."""
    return session.describe()
