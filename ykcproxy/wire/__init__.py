"""The YKC wire format: pure Python, no Twisted, no I/O."""
