"""What an option is: one declaration that drives every place the option appears."""

from __future__ import annotations

from typing import Any

import attrs

from ykcproxy.options.kinds import Kind

#: Prefix of the environment variables (``YKCPROXY_HTTPPORT``).
ENV_PREFIX = "YKCPROXY_"


@attrs.frozen
class Option:
    """One option: its flag, config-file key, variable, kind, default, help and group.

    ``field`` is the :class:`~ykcproxy.config.ProxyConfig` attribute it sets
    (``None`` for options consumed while parsing, such as ``--config``).
    ``shown`` overrides how the default is shown in ``--help`` and the docs,
    for defaults that depend on other options.
    """

    name: str
    kind: Kind
    default: Any
    help: str
    group: str
    field: str | None
    shown: str | None = None
    aliases: tuple[str, ...] = ()
    secret: bool = False

    @property
    def env(self) -> str:
        """The environment variable: ``YKCPROXY_`` and the name in upper case."""
        return ENV_PREFIX + self.name.upper()

    @property
    def variables(self) -> tuple[str, ...]:
        """Every environment variable read for this option, in order of preference."""
        return (self.env, *self.aliases)

    @property
    def default_text(self) -> str:
        """The default as shown to users."""
        if self.shown is not None:
            return self.shown
        return self.kind.format(self.default)
