"""The live console: frame history, the event stream and the static web app at ``/``."""
