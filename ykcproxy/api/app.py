"""The REST control API (Klein): serves the route table of :mod:`ykcproxy.api.routes`.

Each route of the table is served by the handler method it names, looked
up on this API and on the handler objects given to it (the outbox routes,
the sessions...); a route whose handler is missing is an error at start.
Errors are answered through Klein's ``handle_errors``.  ``/openapi.json`` is
built from the same table by :mod:`ykcproxy.api.openapi`.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from klein import Klein
from twisted.internet.defer import CancelledError, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from ykcproxy.api.commands import CommandRunner, check_wait
from ykcproxy.api.routes import MAX_WAIT, ROUTES, Route, command_routes
from ykcproxy.api.validation import STREAMED, Answer, ApiError, query_text, read_json_body
from ykcproxy.config import ProxyConfig
from ykcproxy.metrics import Metrics
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.pile.session import PileSession
from ykcproxy.wire.frames import FrameType

__all__ = ["MAX_WAIT", "Answer", "ApiError", "ControlApi", "pile_view"]

log = Logger()

#: A route handler type (:meth:`ControlApi.handler`).
H = TypeVar("H")

PILE_ID_PATTERN = re.compile(r"[0-9]{14}")


def _json(request: IRequest, code: int, body: Any) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(body, ensure_ascii=False).encode()


def _route_name(request: IRequest) -> str:
    return getattr(request, "ykc_route", "unknown")


class ControlApi:
    """Klein app over a :class:`PileServerFactory`, serving every route of the table.

    :param handlers: more objects whose methods handle routes of the table.
    """

    def __init__(
        self,
        piles: PileServerFactory,
        metrics: Metrics,
        health: Callable[[], dict[str, Any]],
        config: ProxyConfig,
        handlers: Iterable[object] = (),
        routes: Iterable[Route] | None = None,
    ) -> None:
        self.piles = piles
        self.metrics = metrics
        self.health = health
        self.config = config
        self.codec = piles.codec
        self.clock = piles.clock
        self.app = Klein()
        self.runner = CommandRunner(piles)
        #: Gives ``GET /cluster`` (set in cluster mode).
        self.cluster_view: Callable[[], dict[str, Any]] | None = None
        #: The piles held by the other instances (cluster mode), and this instance's name.
        self.cluster_piles: Callable[[], list[dict[str, Any]]] | None = None
        self.instance: str | None = None
        self.commands: dict[str, FrameType] = self.runner.commands
        self._handlers = [self, *handlers]
        if routes is None:
            routes = self.default_routes()
        self.routes: tuple[Route, ...] = tuple(routes)
        for route in self.routes:
            self._serve(route)
        self._error_handlers()

    def handler(self, kind: type[H]) -> H:
        """The route handler object of type ``kind`` (``LookupError`` if there is none)."""
        for owner in self._handlers:
            if isinstance(owner, kind):
                return owner
        raise LookupError(f"no {kind.__name__} among the handlers")

    def resource(self) -> Any:
        """The web resource of the API (with CORS when ``--corsOrigin`` is set)."""
        resource = self.app.resource()
        if self.config.cors_origin:
            from ykcproxy.api.cors import CorsResource

            return CorsResource(resource, self.config.cors_origin)
        return resource

    def default_routes(self) -> list[Route]:
        """The commands of this API's catalogue and every route of the table."""
        from ykcproxy.docs.examples import request_examples

        return [*command_routes(self.codec.catalogue, request_examples()), *ROUTES]

    # -- plumbing ----------------------------------------------------------------
    def _handler(self, route: Route) -> Callable[..., Any]:
        for owner in self._handlers:
            handler = getattr(owner, route.handler, None)
            if callable(handler):
                return handler  # type: ignore[no-any-return]
        raise LookupError(f"route {route.method} {route.path}: no handler {route.handler!r}")

    def _serve(self, route: Route) -> None:
        handler = self._handler(route)
        public = route.public or bool(route.public_if and getattr(self.config, route.public_if))

        @inlineCallbacks
        def wrapped(request: IRequest, **kwargs: Any) -> Any:
            request.ykc_route = route.name  # type: ignore[attr-defined]
            if not public:
                request.ykc_access = self._authorize(  # type: ignore[attr-defined]
                    request, read_only=route.method == "GET", query_token=route.query_token
                )
            try:
                result = yield handler(request, **kwargs, **route.kwargs)
            except CancelledError:
                # The client went away (Klein cancels the handler); nobody to answer.
                self.metrics.rest_requests.labels(route.name, "499").inc()
                raise
            if result is STREAMED:
                self.metrics.rest_requests.labels(route.name, "200").inc()
                return None
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
            self.metrics.rest_requests.labels(route.name, str(code)).inc()
            return out

        self.app.route(route.path, methods=[route.method], endpoint=route.name, branch=False)(wrapped)

    def _error_handlers(self) -> None:
        app = self.app

        @app.handle_errors(ApiError)
        def api_error(request: IRequest, failure: Failure) -> bytes:
            error = failure.value
            assert isinstance(error, ApiError)
            self.metrics.rest_requests.labels(_route_name(request), str(error.code)).inc()
            return _json(request, error.code, error.body)

        @app.handle_errors(NotFound)
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

        @app.handle_errors(MethodNotAllowed)
        def not_allowed(request: IRequest, failure: Failure) -> bytes:
            self.metrics.rest_requests.labels("unknown", "405").inc()
            allowed = getattr(failure.value, "valid_methods", None) or []
            if allowed:
                request.setHeader(b"Allow", ", ".join(allowed).encode())
            method = request.method.decode("latin-1")
            return _json(
                request, 405, {"message": f"method {method} is not allowed here; use {', '.join(allowed)}"}
            )

        @app.handle_errors(Exception)
        def internal(request: IRequest, failure: Failure) -> bytes:
            log.failure("REST {path} failed", failure, path=request.path.decode("latin-1", "replace"))
            self.metrics.rest_requests.labels(_route_name(request), "500").inc()
            return _json(request, 500, {"message": "internal error (logged)"})

    def _authorize(self, request: IRequest, read_only: bool, query_token: bool = False) -> str:
        """Check the bearer token (in constant time); the read-only token only for reading.

        Returns ``write`` (the API token, or none is set) or ``read`` (the read-only token).
        """
        token = self.config.api_token
        if not token:
            return "write"
        given = request.getHeader(b"authorization") or b""
        if query_token and not given:
            in_query = query_text(request, "token")
            if in_query:
                given = b"Bearer " + in_query.encode()
        if hmac.compare_digest(given, f"Bearer {token}".encode()):
            return "write"
        read_token = self.config.api_read_token
        if read_token and hmac.compare_digest(given, f"Bearer {read_token}".encode()):
            if read_only:
                return "read"
            raise ApiError(403, "the read-only token cannot do this (use the API token)")
        raise ApiError(401, "missing or wrong API token (send 'Authorization: Bearer <token>')")

    def json_body(self, request: IRequest) -> Any:
        """The request's JSON body: 413 over ``--maxBodyBytes``, 400 when malformed."""
        return read_json_body(request, self.config.max_body_bytes)

    # -- routes ---------------------------------------------------------------------
    def list_piles(self, request: IRequest) -> Any:
        """GET /piles: every pile with an accepted login; ``?state=pending``: logins awaiting an answer."""
        state = query_text(request, "state") or "online"
        if state == "pending":
            return self.piles.registry.pending_logins()
        if state != "online":
            raise ApiError(400, f"state: must be online or pending, got {state!r}")
        local = [self._local_view(s) for s in self.piles.registry]
        if self.cluster_piles is None:
            return local
        seen = {p["id"] for p in local}
        return local + [p for p in self.cluster_piles() if p["id"] not in seen]

    def get_pile(self, request: IRequest, pile_id: str) -> Any:
        """GET /piles/<id> (in cluster mode also a pile held by another instance)."""
        session = self.piles.registry.get(pile_id)
        if session is not None:
            return self._local_view(session)
        for view in self.cluster_piles() if self.cluster_piles is not None else ():
            if view["id"] == pile_id:
                return view
        raise ApiError(404, f"pile {pile_id} is not connected")

    def _local_view(self, session: PileSession) -> dict[str, Any]:
        view = pile_view(session)
        if self.instance is not None:
            view["instance"] = self.instance
        return view

    def trace(self, request: IRequest, pile_id: str) -> Any:
        """POST /piles/<id>/trace: switch the pile's frame trace on or off."""
        body = self.json_body(request)
        enabled = body.get("enabled") if isinstance(body, dict) else None
        if not isinstance(enabled, bool):
            raise ApiError(400, 'enabled: must be true or false (send {"enabled": true})')
        if not PILE_ID_PATTERN.fullmatch(pile_id):
            raise ApiError(400, f"pile id: must be 14 digits, got {pile_id!r}")
        self.piles.tracer.switch(pile_id, enabled)
        return {"id": pile_id, "trace": enabled}

    def cluster(self, request: IRequest) -> Any:
        """GET /cluster: the instances as the shared bucket lists them."""
        if self.cluster_view is None:
            return {"enabled": False}
        return self.cluster_view()

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
        """The OpenAPI document of every route this API serves."""
        from ykcproxy.api.openapi import build_openapi

        return build_openapi(self.routes)

    # -- commands ---------------------------------------------------------------------
    def _wait_seconds(self, request: IRequest, frame: FrameType) -> float | None:
        raw = request.args.get(b"wait")  # type: ignore[attr-defined]
        if not raw:
            return None
        text = raw[0].decode("latin-1")
        try:
            float(text)
        except ValueError:
            raise ApiError(400, f"wait: must be a number of seconds, got {text!r}") from None
        return check_wait(text, frame)

    def command(self, request: IRequest, frame: FrameType) -> Any:
        """POST /proxy/<ft>: validate, write the frame, optionally wait for the reply."""
        wait = self._wait_seconds(request, frame)
        body = read_json_body(request, self.config.max_body_bytes)
        return self.runner.run(frame, body, wait)


def pile_view(session: PileSession) -> dict[str, Any]:
    """The JSON of one pile in ``GET /piles`` and ``GET /piles/<id>``."""
    return session.describe()
