"""CORS for the REST API: off unless ``--corsOrigin`` names the origin allowed."""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

#: Headers a browser may send.
ALLOWED_HEADERS = b"Authorization, Content-Type"
#: Methods of the API.
ALLOWED_METHODS = b"GET, POST, OPTIONS"


class CorsResource(Resource):
    """Wraps the API's resource: answers preflights and marks answers for ``origin``.

    ``origin`` is one origin (``https://ops.example.com``) or ``*``.
    """

    isLeaf = True

    def __init__(self, wrapped: IResource, origin: str) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.origin = origin.encode()

    def _allowed(self, request: IRequest) -> bytes | None:
        sent = request.getHeader(b"origin")
        if sent is None:
            return None
        if self.origin == b"*":
            return b"*"
        return sent if sent == self.origin else None

    def render(self, request: IRequest) -> Any:
        allowed = self._allowed(request)
        if allowed is not None:
            request.setHeader(b"Access-Control-Allow-Origin", allowed)
            request.setHeader(b"Vary", b"Origin")
        if request.method == b"OPTIONS" and request.getHeader(b"access-control-request-method"):
            request.setResponseCode(204 if allowed is not None else 403)
            if allowed is not None:
                request.setHeader(b"Access-Control-Allow-Methods", ALLOWED_METHODS)
                request.setHeader(b"Access-Control-Allow-Headers", ALLOWED_HEADERS)
                request.setHeader(b"Access-Control-Max-Age", b"600")
            return b""
        return self.wrapped.render(request)
