"""The options of ykcproxy: declared once in :mod:`.table`, parsed by :mod:`.command_line`."""

from ykcproxy.options.command_line import Options, build_config, default_config, parse_options
from ykcproxy.options.declaration import Option
from ykcproxy.options.table import BY_NAME, OPTIONS

__all__ = ["BY_NAME", "OPTIONS", "Option", "Options", "build_config", "default_config", "parse_options"]
