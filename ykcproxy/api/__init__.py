"""The REST control API (Klein)."""
