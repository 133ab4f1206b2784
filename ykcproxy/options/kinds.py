"""Value kinds of options: how text (command line, environment) and TOML values become settings.

A kind parses the text form, accepts the matching native TOML types, and
formats a value back to text for ``--help`` and ``doc/configuration.md``.
Each raises ``ValueError`` with a message that names the bad value; the
caller prefixes the option's name.
"""

from __future__ import annotations

import datetime
import enum
import zoneinfo
from typing import Any

import attrs

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class Kind:
    """Base of the option kinds."""

    #: What the docs call the type of the value.
    doc = "text"
    #: TOML value types accepted as they are (text is always parsed).
    native: tuple[type, ...] = ()

    def parse(self, text: str) -> Any:
        """The value of ``text`` (command line or environment)."""
        return text

    def from_toml(self, value: Any) -> Any:
        """The value of a config-file entry."""
        if isinstance(value, str):
            return self.parse(value)
        if (
            self.native
            and isinstance(value, self.native)
            and not (isinstance(value, bool) and bool not in self.native)
        ):
            return self.check(value)
        raise ValueError(f"{value!r} is not {self.doc}")

    def check(self, value: Any) -> Any:
        """Validate a native value (range checks); return it."""
        return value

    def format(self, value: Any) -> str:
        """The text form of ``value``."""
        return str(value)


@attrs.frozen
class Text(Kind):
    """Any text."""

    doc: str = "text"


@attrs.frozen
class Flag(Kind):
    """A boolean: true/false, yes/no, on/off, 1/0."""

    doc: str = "boolean"
    native: tuple[type, ...] = (bool,)

    def parse(self, text: str) -> bool:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean (use true or false)")

    def format(self, value: Any) -> str:
        return "true" if value else "false"


@attrs.frozen
class Whole(Kind):
    """A whole number of at least ``lo`` (and at most ``hi``)."""

    lo: int = 0
    hi: int | None = None
    doc: str = "integer"
    native: tuple[type, ...] = (int,)

    def parse(self, text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        return self.check(number)

    def check(self, value: Any) -> int:
        if value < self.lo:
            raise ValueError(f"{value!r} must be at least {self.lo}")
        if self.hi is not None and value > self.hi:
            raise ValueError(f"{value!r} must be at most {self.hi}")
        return int(value)


@attrs.frozen
class Port(Kind):
    """A TCP port number; 0 picks a free one."""

    doc: str = "port"
    native: tuple[type, ...] = (int,)

    def parse(self, text: str) -> int:
        try:
            port = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a port number") from None
        return self.check(port)

    def check(self, value: Any) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(f"{value} is not a port number (0-65535; 0 picks a free one)")
        return int(value)


@attrs.frozen
class Seconds(Kind):
    """A number greater than 0 (``zero_ok``: or 0, which turns the limit off)."""

    zero_ok: bool = False
    doc: str = "number"
    native: tuple[type, ...] = (int, float)

    def parse(self, text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        return self.check(number)

    def check(self, value: Any) -> float:
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a finite number")
        if number < 0 or (number == 0 and not self.zero_ok):
            raise ValueError(f"{value!r} must be greater than 0")
        return number

    def format(self, value: Any) -> str:
        return f"{value:g}"


@attrs.frozen
class Choice(Kind):
    """One member of an enumeration, by its value."""

    enum_type: type[enum.Enum] = enum.Enum
    doc: str = "choice"

    def parse(self, text: str) -> Any:
        try:
            return self.enum_type(text.strip().lower())
        except ValueError:
            names = ", ".join(str(m.value) for m in self.enum_type)
            raise ValueError(f"{text!r} is not one of {names}") from None

    def format(self, value: Any) -> str:
        return str(value.value)

    @property
    def choices(self) -> list[str]:
        """The accepted words."""
        return [str(m.value) for m in self.enum_type]


@attrs.frozen
class Zone(Kind):
    """An IANA time zone name."""

    doc: str = "time zone"

    def parse(self, text: str) -> datetime.tzinfo:
        try:
            return zoneinfo.ZoneInfo(text)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{text!r} is not a time zone name (e.g. Asia/Shanghai)") from None

    def format(self, value: Any) -> str:
        return str(getattr(value, "key", value))


@attrs.frozen
class Items(Kind):
    """A comma-separated list (a TOML array of text in the config file)."""

    doc: str = "list"

    def parse(self, text: str) -> tuple[str, ...]:
        return tuple(s.strip() for s in text.split(",") if s.strip())

    def from_toml(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(v.strip() for v in value if v.strip())
        return super().from_toml(value)  # type: ignore[no-any-return]

    def format(self, value: Any) -> str:
        return ",".join(value)


@attrs.frozen
class Header(Kind):
    """An HTTP header line ``Name: value``; the option may be given several times."""

    doc: str = "header (repeatable)"
    repeatable: bool = True

    def parse(self, text: str) -> tuple[tuple[str, str], ...]:
        name, colon, value = text.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name or any(c in name for c in " \t\r\n") or "\n" in value or "\r" in value:
            raise ValueError(f"{_shown_header(text)!r} is not 'Name: value'")
        if name.lower() in ("content-type", "content-length", "host", "x-ykcproxy-signature"):
            raise ValueError(f"{name} is set by ykcproxy itself")
        return ((name, value),)

    def from_toml(self, value: Any) -> tuple[tuple[str, str], ...]:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(item for text in value for item in self.parse(text))
        raise ValueError(f"{value!r} is not a header line or an array of them")

    def parse_environment(self, text: str) -> tuple[tuple[str, str], ...]:
        """One header a line."""
        return tuple(item for line in text.splitlines() if line.strip() for item in self.parse(line))

    def format(self, value: Any) -> str:
        return "; ".join(f"{name}: ***" for name, _ in value)


def _shown_header(text: str) -> str:
    """A bad header line as shown in an error: its value is hidden (it may be a token)."""
    name, colon, _ = text.partition(":")
    return f"{name}: ***" if colon else name[:40]
