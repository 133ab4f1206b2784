"""The pile side: the YKC Protocol, per-pile sessions and the registry."""
