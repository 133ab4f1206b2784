"""The REST API's ``Site``: no access-log lines for the routes scraped every few seconds."""

from __future__ import annotations

import re
from typing import Any

from twisted.web.server import Site

#: Paths whose requests are not written to the access log (monitoring scrapes).
QUIET_PATHS = frozenset({b"/metrics", b"/healthz"})


class QuietSite(Site):
    """A ``Site`` that writes no access-log line for :data:`QUIET_PATHS`, and no factory lines."""

    noisy = False

    def __init__(self, resource: Any, quiet: frozenset[bytes] = QUIET_PATHS, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.quiet = quiet

    def log(self, request: Any) -> None:
        if request.path in self.quiet:
            return
        uri = request.uri
        if b"token=" in uri:
            # The console's event stream may carry the API token in its query: never logged.
            request.uri = _TOKEN.sub(b"\\1token=***", uri)
            try:
                super().log(request)
            finally:
                request.uri = uri
            return
        super().log(request)


_TOKEN = re.compile(rb"([?&])token=[^&]*")
