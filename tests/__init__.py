"""ykcproxy's test suite (run with ``trial tests``)."""
