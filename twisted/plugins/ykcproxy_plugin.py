"""twistd plugin: ``twistd -n ykcproxy [options]``."""

from twisted.application.service import ServiceMaker

ykcproxy = ServiceMaker(
    "ykcproxy",
    "ykcproxy.service",
    "YKC V1.6 charging-pile protocol server (pile TCP port, REST API, HTTP/NATS forwarding)",
    "ykcproxy",
)
