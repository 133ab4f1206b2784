"""The consumer side: handing messages to HTTP webhooks or NATS."""
