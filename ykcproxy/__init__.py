"""ykcproxy: a protocol server for EV charging piles speaking YKC V1.6."""

__version__ = "0.1.0"
