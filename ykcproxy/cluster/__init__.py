"""Cluster mode and commands over NATS (see ``doc/deployment.md``)."""
