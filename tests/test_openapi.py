"""GET /openapi.json: a valid OpenAPI 3.1 document of exactly the routes the Klein app serves."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
from openapi_spec_validator import validate
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from tests.support import call, start_proxy
from ykcproxy.api.app import ControlApi
from ykcproxy.api.outbox_handlers import OutboxHandlers
from ykcproxy.api.routes import Param, Reply, Route
from ykcproxy.api.session_handlers import SessionHandlers
from ykcproxy.api.validation import request_schema
from ykcproxy.console.events import EventHub
from ykcproxy.console.handlers import ConsoleHandlers
from ykcproxy.console.history import FrameHistory
from ykcproxy.docs.restapi import ERROR_EXAMPLES, command_examples
from ykcproxy.metrics import Metrics
from ykcproxy.options import default_config
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.sessions import SessionTracker
from ykcproxy.wire.frames import CATALOGUE, Direction

_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def make_api(handlers: Any = (), routes: Any = None) -> ControlApi:
    """A ControlApi over a pile factory with no connections (no network)."""
    config = default_config()
    piles = PileServerFactory(config, Clock(), None, Metrics())
    handlers = [
        *handlers,
        OutboxHandlers(None, None, config.max_body_bytes),
        SessionHandlers(SessionTracker(Clock(), lambda body, key: None)),
        ConsoleHandlers(FrameHistory(Clock(), 10), EventHub(Clock()), files={}),
    ]
    return ControlApi(piles, piles.metrics, lambda: {"ok": True}, config, handlers=handlers, routes=routes)


def served(api: ControlApi) -> set[tuple[str, str]]:
    """(method, OpenAPI-style path) of every route of the Klein app."""
    out = set()
    for rule in api.app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method in _METHODS:
                out.add((method, path))
    return out


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, path) of every operation of an OpenAPI document."""
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method.upper() in _METHODS
    }


class Document(TestCase):
    def test_valid_openapi_3_1(self) -> None:
        document = make_api().openapi_document()
        self.assertEqual(document["openapi"], "3.1.0")
        validate(document)

    def test_every_route_is_documented_and_nothing_else(self) -> None:
        api = make_api()
        routes = served(api)
        self.assertEqual(routes, documented(api.openapi_document()))
        commands = {path for method, path in routes if path.startswith("/proxy/")}
        self.assertEqual(len(commands), 21)

    def test_a_route_is_served_and_documented_from_one_declaration(self) -> None:
        route = Route(
            "GET",
            "/things/<name>",
            "thing",
            "thing",
            "one thing",
            {200: Reply("the thing", {"type": "object"})},
            params=(Param("name", "path", {"type": "string"}),),
        )

        class Things:
            def thing(self, request: Any, name: str) -> dict[str, str]:
                return {"name": name}

        api = make_api(handlers=[Things()], routes=[*make_api().routes, route])
        self.assertIn(("GET", "/things/{name}"), served(api))
        self.assertEqual(served(api), documented(api.openapi_document()))
        responses = api.openapi_document()["paths"]["/things/{name}"]["get"]["responses"]
        self.assertEqual(set(responses), {"200", "401"})
        validate(api.openapi_document())

    def test_a_route_without_its_handler_fails_at_start(self) -> None:
        route = Route("GET", "/nothing", "nothing", "no_such_handler", "x", {200: Reply("x")})
        self.assertRaises(LookupError, make_api, routes=[route])

    def test_token_routes_document_401(self) -> None:
        for route in make_api().routes:
            statuses = route.all_replies()
            self.assertEqual(401 in statuses, not route.public, route.path)
            if route.body is not None:
                self.assertIn(413, statuses, route.path)

    def test_request_schemas_agree_with_the_codec(self) -> None:
        """The doc examples pass both the schema and the checks; the error examples fail both."""
        for ex in command_examples():
            jsonschema.validate(ex.body, request_schema(ex.frame))
        for title, code, body in ERROR_EXAMPLES:
            if isinstance(body, str):
                continue
            with self.assertRaises(jsonschema.ValidationError, msg=title):
                jsonschema.validate(body, request_schema(CATALOGUE[code]))

    def test_schemas_come_from_the_declarations(self) -> None:
        for frame in CATALOGUE.values():
            if frame.direction is not Direction.DOWN:
                continue
            schema = request_schema(frame)
            keys = set(frame.keys) | {"id", "header"}
            self.assertEqual(set(schema["properties"]), keys, frame.ft)
        billing = request_schema(CATALOGUE[0x58])
        self.assertIn("id", billing["required"])
        self.assertNotIn("accrualRatio", billing["required"])
        self.assertEqual(billing["properties"]["billingModelCode"]["pattern"], "^[0-9]{4}$")
        self.assertEqual(billing["properties"]["rateList"]["items"]["maximum"], 3)
        self.assertEqual(request_schema(CATALOGUE[0x46])["properties"]["cards"]["maxItems"], 24)
        self.assertEqual(request_schema(CATALOGUE[0x94])["properties"]["serverPort"]["maximum"], 65535)
        self.assertEqual(request_schema(CATALOGUE[0x40])["required"][0], "id")


class Served(TestCase):
    timeout = 15

    @inlineCallbacks
    def test_the_running_proxy_documents_all_its_routes(self) -> None:
        """Also the routes whose handlers live outside ControlApi (the outbox's)."""
        proxy = start_proxy(self)
        answer = yield call(proxy, "GET", "/openapi.json")
        self.assertEqual(answer.code, 200)
        validate(answer.body)
        self.assertEqual(served(proxy.api), documented(answer.body))
