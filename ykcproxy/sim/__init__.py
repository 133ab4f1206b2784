"""The pile simulator: simulated piles built on the wire codec and a Twisted client."""
