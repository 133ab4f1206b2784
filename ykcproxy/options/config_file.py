"""The TOML config file: keys are option names, values their settings."""

from __future__ import annotations

import tomllib
from typing import Any

from ykcproxy.options.declaration import Option


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message names the file and the key."""


def read_config_file(path: str, options: dict[str, Option]) -> dict[str, Any]:
    """The settings in the TOML file at ``path``, as option name -> value.

    Every key must name an option that a config file may set, and every value
    must be valid for it; the first problem raises :class:`ConfigFileError`.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigFileError(f"--config: cannot read {path!r}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(f"{path}: not valid TOML: {e}") from None
    values: dict[str, Any] = {}
    for key, raw in document.items():
        option = options.get(key)
        if option is None or option.name == "config":
            close = [n for n in options if n.lower() == key.lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigFileError(f"{path}: unknown key {key!r}{hint}")
        try:
            values[key] = option.kind.from_toml(raw)
        except ValueError as e:
            raise ConfigFileError(f"{path}: {key}: {e}") from None
    return values
