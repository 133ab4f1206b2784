"""The REST control API (Klein): commands to piles, the registry, health, metrics.

Request bodies of ``POST /proxy/<ft>`` are checked by the same frame
declarations that drive the codec; see :mod:`ykcproxy.api.openapi` for the
document generated from them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ykcproxy.config import ProxyConfig
from ykcproxy.metrics import Metrics
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.pile.waiters import PileGone
from ykcproxy.wire.fields import FieldError
from ykcproxy.wire.frames import PILE_ID, Direction, FrameType

log = Logger()

#: Longest ``?wait=`` accepted, in seconds (0x34 may take 90 s, plus margin).
MAX_WAIT = 300.0


class ApiError(Exception):
    """An answer other than 200, with its JSON body."""

    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.body = {"message": message, **extra}


def _json(request: IRequest, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(body, ensure_ascii=False).encode()


class ControlApi:
    """Klein routes over a :class:`PileServerFactory`."""

    app = Klein()

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
        self._routes()
        if extra_routes is not None:
            extra_routes(self)

    # -- plumbing ----------------------------------------------------------------
    def route(self, path: str, methods: list[str], name: str, public: bool = False) -> Callable[..., Any]:
        """Register a handler that returns JSON or raises :class:`ApiError`."""

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            @inlineCallbacks
            def wrapped(request: IRequest, **kwargs: Any) -> Any:
                try:
                    if not public:
                        self._authorize(request)
                    result = yield handler(request, **kwargs)
                    if isinstance(result, bytes):
                        code = 200
                        out = result
                    else:
                        code, out = 200, _json(request, 200, result)
                except ApiError as e:
                    code, out = e.code, _json(request, e.code, e.body)
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
        if given.decode("latin-1") != f"Bearer {token}":
            raise ApiError(401, "missing or wrong API token (send 'Authorization: Bearer <token>')")

    def _body(self, request: IRequest) -> Any:
        limit = self.config.max_body_bytes
        length = request.getHeader(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise ApiError(413, f"request body of {int(length)} bytes is over the limit of {limit}")
        content = request.content.read(limit + 1)  # type: ignore[attr-defined]
        if len(content) > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        try:
            return json.loads(content or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"body is not valid JSON: {e}") from None

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
                message = f"unknown frame type {path[7:]!r}: POST /proxy/<ft> takes one of {sorted(self.commands)}"
            else:
                message = f"no such path: {path}"
            self.metrics.rest_requests.labels("unknown", "404").inc()
            return _json(request, 404, {"message": message})

        @self.app.handle_errors(MethodNotAllowed)
        def not_allowed(request: IRequest, failure: Failure) -> bytes:
            self.metrics.rest_requests.labels("unknown", "405").inc()
            return _json(request, 405, {"message": f"method {request.method.decode()} not allowed here"})

    def list_piles(self, request: IRequest) -> Any:
        """GET /piles: every pile with an accepted login."""
        return [s.describe() for s in self.piles.registry]

    def get_pile(self, request: IRequest, pile_id: str) -> Any:
        """GET /piles/<id>."""
        session = self.piles.registry.get(pile_id)
        if session is None:
            raise ApiError(404, f"pile {pile_id} is not connected")
        return session.describe()

    def healthz(self, request: IRequest) -> Any:
        """GET /healthz: 200 when listening and forwarding works, else 503."""
        state = self.health()
        code = 200 if state["ok"] else 503
        return _json(request, code, state)

    def metrics_text(self, request: IRequest) -> bytes:
        """GET /metrics: Prometheus text format."""
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        return self.metrics.render()

    def openapi(self, request: IRequest) -> Any:
        """GET /openapi.json."""
        from ykcproxy.api.openapi import build_openapi

        return build_openapi(self.codec.catalogue)

    # -- commands ---------------------------------------------------------------------
    def _wait_seconds(self, request: IRequest, frame: FrameType) -> float | None:
        raw = request.args.get(b"wait")  # type: ignore[attr-defined]
        if not raw:
            return None
        text = raw[0].decode("latin-1")
        try:
            seconds = float(text)
        except ValueError:
            raise ApiError(400, f"wait: {text!r} is not a number of seconds") from None
        if not 0 < seconds <= MAX_WAIT:
            raise ApiError(400, f"wait: must be more than 0 and at most {MAX_WAIT:.0f} seconds, got {text}")
        if frame.reply is None:
            raise ApiError(400, f"wait: 0x{frame.ft} has no reply frame to wait for")
        return seconds

    def _header(self, body: dict[str, Any]) -> dict[str, Any]:
        header = body.get("header")
        if header is None:
            return {}
        if not isinstance(header, dict):
            raise ApiError(400, "header: must be an object")
        out: dict[str, Any] = {}
        seq = header.get("seq")
        if seq is not None:
            if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 0xFFFF:
                raise ApiError(400, f"header.seq: must be an integer from 0 to 65535, got {seq!r}")
            out["seq"] = seq
        encrypted = header.get("encrypted", False)
        if encrypted is not False:
            raise ApiError(400, "header.encrypted: only false is supported (no keys can be configured)")
        return out

    @inlineCallbacks
    def command(self, request: IRequest, frame: FrameType) -> Any:
        """POST /proxy/<ft>: validate, write the frame, optionally wait for the reply."""
        wait = self._wait_seconds(request, frame)
        body = self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "body: must be a JSON object")
        header = self._header(body)
        try:
            pile_id = PILE_ID.check(body["id"], "id") if "id" in body else None
            if pile_id is None:
                raise FieldError("id", "is required (the pile to send to)")
            fields = self.codec.check(frame.code, body)
        except FieldError as e:
            raise ApiError(400, str(e)) from None
        registry = self.piles.registry
        session = registry.find(pile_id) if frame.code == 0x02 else registry.get(pile_id)
        if session is None:
            raise ApiError(404, f"pile {pile_id} is not connected")
        waiting: Deferred[dict[str, Any]] | None = None
        if wait is not None and frame.reply is not None:
            match = {k: fields[k] for k in frame.match}
            waiting = self.piles.waiters.wait(pile_id, frame.reply, match)
        seq, raw = self.piles.command(session, frame.code, {**fields, "header": header})
        result: dict[str, Any] = {"message": "done", "seq": seq, "frame": raw.hex()}
        if waiting is None:
            return result
        waiting.addTimeout(wait, self.clock)
        try:
            reply = yield waiting
        except (TimeoutError, CancelledError):
            raise ApiError(
                504,
                f"no 0x{frame.reply:02x} reply from pile {pile_id} within {wait:g}s; the frame was sent",
                seq=seq,
                frame=raw.hex(),
            ) from None
        except PileGone as e:
            raise ApiError(502, f"{e}; the frame was sent", seq=seq, frame=raw.hex()) from None
        result["reply"] = reply
        return result
