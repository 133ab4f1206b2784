"""Handlers of the console's routes: the static web app, a pile's frames, the event stream."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from ykcproxy.api.validation import STREAMED, Answer, ApiError, query_text
from ykcproxy.console.events import EventHub
from ykcproxy.console.history import FrameHistory

#: Content types of the console's files, by extension.
CONTENT_TYPES = {
    "html": b"text/html; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "svg": b"image/svg+xml",
    "png": b"image/png",
    "ico": b"image/x-icon",
}


def load_static() -> dict[str, bytes]:
    """The console's files by name, read once at start (never from disk while serving)."""
    files: dict[str, bytes] = {}
    root = resources.files("ykcproxy.console") / "static"
    if not root.is_dir():
        return files
    for item in root.iterdir():
        if item.is_file() and item.name.rsplit(".", 1)[-1] in CONTENT_TYPES:
            files[item.name] = item.read_bytes()
    return files


class ConsoleHandlers:
    """``GET /``, ``GET /console/<file>``, ``GET /piles/<id>/frames`` and ``GET /events``.

    :param elsewhere_frames: in cluster mode, asks the instance holding a pile held elsewhere
        for its frames (``(pile id, limit)`` -> a Deferred of ``(status, answer)``; None when
        no other instance holds the pile).
    """

    def __init__(
        self,
        history: FrameHistory,
        hub: EventHub,
        files: dict[str, bytes] | None = None,
        elsewhere_frames: Callable[[str, int | None], Deferred[tuple[int, dict[str, Any]]] | None]
        | None = None,
    ) -> None:
        self.history = history
        self.hub = hub
        self.files = load_static() if files is None else files
        self.elsewhere_frames = elsewhere_frames

    def _file(self, name: str) -> Answer:
        content = self.files.get(name)
        if content is None:
            raise ApiError(404, f"no such console file: {name}")
        kind = CONTENT_TYPES[name.rsplit(".", 1)[-1]]
        return Answer(200, content, kind)

    def console_index(self, request: IRequest) -> Any:
        """The console's page."""
        request.setHeader(b"Cache-Control", b"no-cache")
        return self._file("index.html")

    def console_file(self, request: IRequest, name: str) -> Any:
        """One of the console's files (scripts, styles)."""
        request.setHeader(b"Cache-Control", b"no-cache")
        return self._file(name)

    @inlineCallbacks
    def pile_frames(self, request: IRequest, pile_id: str) -> Any:
        """The pile's last frames, oldest first (in cluster mode, of the instance holding it)."""
        text = query_text(request, "limit")
        limit = None
        if text is not None:
            if not text.isdigit() or int(text) < 1:
                raise ApiError(400, f"limit: must be a positive integer, got {text!r}")
            limit = int(text)
        asked = self.elsewhere_frames(pile_id, limit) if self.elsewhere_frames is not None else None
        if asked is not None:
            status, answer = yield asked
        else:
            status, answer = self.local_frames(pile_id, limit)
        if status != 200:
            raise ApiError(status, str(answer.get("message", answer)))
        return answer

    def local_frames(self, pile_id: str, limit: int | None) -> tuple[int, dict[str, Any]]:
        """This instance's frames of a pile: ``(200, {"id", "frames"})``, else ``(404, {"message"})``."""
        if not self.history.capacity:
            return 404, {"message": "the frame history is off (--frameHistory 0)"}
        if pile_id not in self.history:
            return 404, {"message": f"no frames of pile {pile_id} are kept (it has not been connected)"}
        return 200, {"id": pile_id, "frames": self.history.frames(pile_id, limit)}

    def events(self, request: Request) -> Any:
        """The console's event stream (server-sent events)."""
        pile = query_text(request, "pile") or None
        access = getattr(request, "ykc_access", "write")
        done = self.hub.subscribe(request, pile, {"canCommand": access != "read"})
        return done.addCallback(lambda _: STREAMED)
