"""The ``usage.Options`` of ``twistd ykcproxy`` and ``ykcproxy``, made from the option table.

Each value comes from, in order of precedence: the command line, the
environment (``YKCPROXY_<OPTION>``), the config file (``--config``), the
default.  Parsing reads files (the config file, secret files) but creates
nothing; the directories are made when the service starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.python import usage

from ykcproxy.config import ProxyConfig
from ykcproxy.options.checks import SettingsError, derive
from ykcproxy.options.config_file import ConfigFileError, read_config_file
from ykcproxy.options.declaration import Option
from ykcproxy.options.table import BY_NAME, OPTIONS


class _Given(usage.CoerceParameter):
    """Records an option given on the command line (checked now, resolved later)."""

    def __init__(self, options: Options, option: Option) -> None:
        super().__init__(options, option.kind.parse)
        self.option = option

    def dispatch(self, parameterName: str, value: str | None) -> None:
        if value is None:
            raise usage.UsageError(f"--{self.option.name} requires a value")
        try:
            parsed = self.option.kind.parse(value)
        except ValueError as e:
            raise usage.UsageError(f"--{self.option.name}: {e}") from None
        if getattr(self.option.kind, "repeatable", False):
            parsed = self.options.given.get(self.option.name, ()) + parsed
        self.options.given[self.option.name] = parsed


def _help(option: Option) -> str:
    return f"{option.help} [env {option.env}]"


class Options(usage.Options):
    """Options of the proxy; the seed's flag names are kept.

    After parsing, :attr:`config` is the :class:`~ykcproxy.config.ProxyConfig`
    and :attr:`sources` tells where each explicitly set option came from.
    """

    synopsis = "[options]"
    longdesc = (
        "A protocol server for EV charging piles speaking YKC V1.6. Every option can also be "
        "set in the config file (--config, same key) or the environment (YKCPROXY_<OPTION>)."
    )
    optParameters: list[list[Any]] = [
        [o.name, None, o.default_text, _help(o)] for o in OPTIONS if not o.secret
    ] + [[o.name, None, None, _help(o)] for o in OPTIONS if o.secret]

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.given: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        for option in OPTIONS:
            self._dispatch[option.name] = _Given(self, option)

    def opt_version(self) -> None:
        """Print the version and exit."""
        from ykcproxy import __version__

        print(f"ykcproxy {__version__}")  # noqa: T201 - the command's output
        raise SystemExit(0)

    def _from_environment(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for option in OPTIONS:
            for variable in option.variables:
                text = self.environ.get(variable)
                if text is None:
                    continue
                parse = getattr(option.kind, "parse_environment", option.kind.parse)
                try:
                    values[option.name] = parse(text)
                except ValueError as e:
                    raise usage.UsageError(f"{variable} (--{option.name}): {e}") from None
                break
        return values

    def postOptions(self) -> None:
        environment = self._from_environment()
        path = self.given.get("config", environment.get("config", ""))
        try:
            from_file = read_config_file(path, BY_NAME) if path else {}
        except ConfigFileError as e:
            raise usage.UsageError(str(e)) from None
        values: dict[str, Any] = {}
        for option in OPTIONS:
            for source, layer in (
                ("command line", self.given),
                ("environment", environment),
                (path, from_file),
            ):
                if option.name in layer:
                    values[option.name] = layer[option.name]
                    self.sources[option.name] = source
                    break
            else:
                values[option.name] = option.default
        explicit = set(self.sources)
        try:
            values = derive(values, explicit)
        except SettingsError as e:
            raise usage.UsageError(str(e)) from None
        for option in OPTIONS:
            self[option.name] = values[option.name]
        self.config = build_config(values, explicit)


def build_config(values: dict[str, Any], explicit: set[str] | frozenset[str] = frozenset()) -> ProxyConfig:
    """The :class:`ProxyConfig` of ``values`` (option name -> value)."""
    fields = {o.field: values[o.name] for o in OPTIONS if o.field is not None}
    return ProxyConfig(
        **fields,
        api_read_token=values.get("apiReadToken", ""),
        retry_first=min(0.5, values["retryMaxDelay"]),
        explicit=frozenset(explicit),
    )


def default_config(**overrides: Any) -> ProxyConfig:
    """The configuration with every option at its default, except ``overrides`` (by field name)."""
    values = {o.name: o.default for o in OPTIONS}
    config = build_config(values)
    return config if not overrides else _evolve(config, overrides)


def _evolve(config: ProxyConfig, overrides: dict[str, Any]) -> ProxyConfig:
    import attrs

    return attrs.evolve(config, **overrides)


def parse_options(argv: list[str], environ: Mapping[str, str] | None = None) -> Options:
    """Parse ``argv`` (without the program name); raises ``usage.UsageError``."""
    options = Options(environ={} if environ is None else environ)
    options.parseOptions(argv)
    return options
