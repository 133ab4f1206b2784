"""Generate ``doc/configuration.md`` from the option declarations.

``python -m ykcproxy.docs.configuration [PATH]`` writes the file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ykcproxy.options.declaration import Option
from ykcproxy.options.kinds import Choice
from ykcproxy.options.table import GROUPS, OPTIONS

#: Where ``main()`` writes by default: ``doc/configuration.md`` beside the package.
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "doc" / "configuration.md"

_INTRO = """\
# Configuration

Every setting of ykcproxy is an option with one name, used in three places:

- on the command line: `--tcpPort 27600` or `--tcpPort=27600`
  (`ykcproxy` also takes the Go seed's forms `-tcpPort 27600`, `-tcpPort=27600`,
  and a bare `-autoVerification` for a boolean that is true);
- in the environment: `YKCPROXY_` and the name in upper case, e.g. `YKCPROXY_TCPPORT=27600`;
- in a TOML config file given with `--config FILE` (or `YKCPROXY_CONFIG`): the same
  name as the key, e.g. `tcpPort = 27600`.

The command line wins over the environment, which wins over the config file, which
wins over the default. An unknown key, a value of the wrong type or an invalid value
is an error naming the file, the key and the problem, and the server does not start.
In a config file, booleans and numbers may be written as TOML values or as text,
and lists as TOML arrays of strings or as comma-separated text. An example file is
`contrib/ykcproxy.toml`.

Secrets (`password`, `apiToken`) are best given as files (`--passwordFile`,
`--apiTokenFile`) or environment variables: a command line is visible to every
user of the machine in `ps`.

With no consumer (`--messagingServerType none`, or `http` with empty `--servers`)
the server runs standalone: `autoVerification`, `autoHeartbeatResponse` and
`autoBillingModelVerify` default to true unless set explicitly, so piles can log in
and stay online. 0x3B records are never confirmed by a default.

This file is generated from the option declarations (`ykcproxy/options/table.py`)
by `python -m ykcproxy.docs.configuration`.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _kind(option: Option) -> str:
    if isinstance(option.kind, Choice):
        return " \\| ".join(f"`{c}`" for c in option.kind.choices)
    return option.kind.doc


def _default(option: Option) -> str:
    text = option.default_text
    return f"`{_cell(text)}`" if text else "empty"


def _row(option: Option) -> str:
    variables = ", ".join(f"`{v}`" for v in option.variables)
    return (
        f"| `--{option.name}` | {_kind(option)} | {_default(option)} | {variables} | {_cell(option.help)} |"
    )


def render_configuration_md() -> str:
    """The whole of ``doc/configuration.md``."""
    lines = [_INTRO]
    for group in GROUPS:
        members = [o for o in OPTIONS if o.group == group]
        if not members:
            continue
        lines += [f"## {group}", "", "| option and config key | type | default | environment | meaning |"]
        lines.append("|---|---|---|---|---|")
        lines += [_row(o) for o in members]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write ``doc/configuration.md`` (or the path given)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.write_text(render_configuration_md(), encoding="utf-8")
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
