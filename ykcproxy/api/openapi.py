"""The OpenAPI 3.1 document, built from the route table.

Every route the API serves (:mod:`ykcproxy.api.routes`) is in it, with its
parameters, request schema, example and every answer it can give.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ykcproxy import __version__
from ykcproxy.api.routes import Route


def build_openapi(routes: Iterable[Route]) -> dict[str, Any]:
    """The whole document of ``routes``."""
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = route.openapi()
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
                    "description": "only when the proxy runs with an API token (--apiToken, --apiTokenFile)",
                }
            }
        },
        "paths": paths,
    }
