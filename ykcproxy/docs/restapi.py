"""Generate ``doc/restapi.md``: the REST API with an example for every command.

``python -m ykcproxy.docs.restapi [PATH]`` writes the file (by default
``doc/restapi.md`` of the source tree).  Everything in it that a program can
produce is produced here: the field tables come from the frame declarations,
the frames from the codec, the error answers from the validation functions of
:mod:`ykcproxy.api.validation`.  ``tests/test_restdoc.py`` fails when the committed
file differs from :func:`render_restapi_md`, and replays every example of
:func:`command_examples` against a running proxy and a raw-socket pile.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ykcproxy.docs.examples import (
    CODEC,
    COMMAND_VALUES,
    EXAMPLE_BILLING,
    EXAMPLE_START,
    EXAMPLE_TRADE,
    PILE,
    REQUEST_SEQ,
    REQUEST_VALUES,
    CommandExample,
    command_examples,
)
from ykcproxy.wire.examples import example
from ykcproxy.wire.fields import (
    _MISSING,
    Ascii,
    Bcd,
    Bool,
    Bytes,
    Cp56,
    Field,
    GunBin,
    Hex,
    ListOf,
    Record,
    UInt,
)
from ykcproxy.wire.frames import CATALOGUE, PILE_ID, Direction, FrameType

#: Where ``main()`` writes by default: ``doc/restapi.md`` beside the package.
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "doc" / "restapi.md"


# -- formatting -------------------------------------------------------------------
def to_json(value: Any, indent: str = "") -> str:
    """JSON with two-space indents, arrays of plain values kept on one line."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        items = [inner + to_json(v, inner) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _code_block(text: str, lang: str = "json") -> str:
    return f"```{lang}\n{text}\n```"


def _rule(item: Field | Record) -> str:
    """What a JSON value of a field must be, in words."""
    if isinstance(item, Record):
        keys = ", ".join(f"`{f.name}` ({_rule(f)})" for f in item.fields)
        return f"object of {keys}"
    if isinstance(item, Hex):
        width = 2 * item.n
        return f"up to {width} hex digits, left-padded with zeros" if item.pad else f"{width} hex digits"
    if isinstance(item, Bcd):
        width = 2 * item.n
        return f"up to {width} digits, left-padded with zeros" if item.pad else f"string of {width} digits"
    if isinstance(item, GunBin):
        return "gun number, 1–3 digits, at most 255"
    if isinstance(item, Bool):
        return "boolean"
    if isinstance(item, UInt):
        if item.choices:
            text = "integer, one of " + ", ".join(str(c) for c in item.choices)
        else:
            text = f"integer {item.lo}–{item.maximum}"
        return f"{text} ({item.scale})" if item.scale else text
    if isinstance(item, Ascii):
        return f"ASCII text, at most {item.n} characters"
    if isinstance(item, Cp56):
        return "integer, unix milliseconds"
    if isinstance(item, Bytes):
        return f"array of {item.n} integers, each 0–{item.hi}"
    raise TypeError(f"no rule for {item!r}")


def _requirement(field: Field) -> str:
    if field.default is _MISSING:
        return "yes"
    if callable(field.default):
        return "no (default: now)"
    return f"no (default {json.dumps(field.default)})"


def _field_rows(frame: FrameType) -> list[str]:
    rows = ["| field | required | JSON value | meaning |", "|---|---|---|---|"]
    if "id" not in frame.keys:
        rows.append(f"| `id` | yes | {_rule(PILE_ID)} | the pile to send to (not part of the frame) |")
    for slot in frame.slots:
        if isinstance(slot, Field):
            rows.append(f"| `{slot.name}` | {_requirement(slot)} | {_rule(slot)} | {slot.doc} |")
    tail: ListOf | None = frame.tail
    if tail is not None:
        rule = f"array of {tail.lo}–{tail.hi} × {_rule(tail.item)}"
        rows.append(f"| `{tail.name}` | yes | {rule} | {tail.doc} |")
    rows.append('| `header` | no | `{"seq": n, "encrypted": false}` | seq overrides the sequence number |')
    return rows


def _command_section(ex: CommandExample) -> list[str]:
    frame = ex.frame
    lines = [f"### 0x{frame.code:02X} {frame.name} — {frame.title}", ""]
    lines.append(f"`POST /proxy/{frame.ft}` · spec section {frame.section}. {frame.doc}".rstrip())
    lines.append("")
    if frame.answers is not None:
        lines.append(
            f"A reply to the pile's 0x{frame.answers:02X}: without `header.seq` it takes the seq of "
            + (
                "the 0x3B with this `tradeSeq`"
                if frame.code == 0x40
                else f"the pile's latest 0x{frame.answers:02X}"
            )
            + ", or the session's next seq if there is none."
        )
        lines.append("")
    if frame.reply is not None:
        keys = ", ".join(f"`{k}`" for k in frame.match) or "pile and type only"
        lines.append(f"The pile answers with 0x{frame.reply:02X}; `?wait=` matches it by {keys}.")
        lines.append("")
    lines += _field_rows(frame)
    lines.append("")
    lines.append(f"Example: `POST {ex.path}`")
    lines.append("")
    lines.append(_code_block(to_json(ex.body)))
    lines.append("")
    if ex.request is not None:
        lines.append(
            f"The pile's latest 0x{ex.request[0]:02X} had seq {REQUEST_SEQ}, so the frame takes seq "
            f"{REQUEST_SEQ}. Answer `200`:"
        )
    elif ex.reply is not None:
        lines.append(
            f"The first command of a session takes seq 0. The pile answered within the wait with "
            f"0x{ex.reply[0]:02X}. Answer `200`:"
        )
    else:
        lines.append("The first command of a session takes seq 0. Answer `200`:")
    lines.append("")
    lines.append(_code_block(to_json(ex.response)))
    lines.append("")
    return lines


# -- errors ---------------------------------------------------------------------------
#: (what the example shows, frame code, request body: a JSON value, or text sent as it is)
ERROR_EXAMPLES: tuple[tuple[str, int, Any], ...] = (
    (
        "A billing model without the pile id and with a 2-digit model code (every bad field is named)",
        0x58,
        {"billingModelCode": "01", **{k: v for k, v in EXAMPLE_BILLING.items() if k != "billingModelCode"}},
    ),
    ("A trailing comma", 0x36, '{\n  "id": "55031412782305",\n  "gunId": "01",\n}'),
    ("A value of the wrong type", 0x34, {"id": PILE, **EXAMPLE_START, "balance": "1000000"}),
    (
        "A BCD field with a letter, and a pile id of 13 digits",
        0x34,
        {**EXAMPLE_START, "id": PILE[:13], "tradeSeq": EXAMPLE_TRADE[:-1] + "A"},
    ),
    (
        "A rate list with a value out of range",
        0x0A,
        {"id": PILE, **EXAMPLE_BILLING, "rateList": [0] * 47 + [4]},
    ),
    ("Too many cards for one frame", 0x46, {"id": PILE, "cards": [f"D14B{i:04X}" for i in range(25)]}),
    (
        "A port over 65535 and an ASCII field too long",
        0x94,
        {"id": PILE, **COMMAND_VALUES[0x94], "serverPort": 70000, "filePath": "/" + "x" * 32},
    ),
)


def error_examples() -> list[tuple[str, int, str, int, dict[str, Any]]]:
    """(title, code, body, status, answer) of each error example, answered by the real checks."""
    from ykcproxy.api.validation import ApiError, check_command, parse_json

    out = []
    for title, code, body in ERROR_EXAMPLES:
        text = body if isinstance(body, str) else to_json(body)
        try:
            check_command(CODEC, CATALOGUE[code], parse_json(text.encode()))
        except ApiError as e:
            out.append((title, code, text, e.code, e.body))
        else:  # pragma: no cover - the examples are all wrong on purpose
            raise AssertionError(f"error example {title!r} was accepted")
    return out


def _pile_example() -> dict[str, Any]:
    from ykcproxy.api.app import pile_view
    from ykcproxy.pile.session import PileSession

    class _Link:
        remote = "10.0.3.17:51234"

    session = PileSession(PILE, _Link(), connected_at=1735758245.0, last_seen=1735758875.5)  # type: ignore[arg-type]
    session.logged_in = True
    session.login = {k: v for k, v in example(0x01, PILE, **REQUEST_VALUES[0x01]).items() if k != "id"}
    session.guns = {
        "01": {"gunStatus": 0, "status": 3, "plugged": 1, "tradeSeq": EXAMPLE_TRADE},
        "02": {"gunStatus": 0, "status": 2, "plugged": 0, "tradeSeq": "0" * 32},
    }
    return pile_view(session)


# -- the page ---------------------------------------------------------------------------
_INTRO = """\
# REST control API

<!-- Generated by `python -m ykcproxy.docs.restapi`. Do not edit by hand. -->

The proxy listens for HTTP on `--httpPort` (default 9556). Through it a
business system sends the 21 platform → pile frame types of YKC V1.6 to any
connected pile, optionally waits for the pile's answer, and looks at the
piles that are connected. Every example below is replayed by the test suite
against a running proxy and a raw-socket pile, so the frames and answers shown
are what the proxy really writes and returns.

The JSON fields of each frame type, with their wire types and scales, are in
[messages.md](messages.md); this page is about calling the API.

## Calling it

```sh
curl -s -X POST 'http://127.0.0.1:9556/proxy/92?wait=30' \\
     -H 'Content-Type: application/json' \\
     -d '{"id": "55031412782305", "control": 2}'
```

- `POST /proxy/<ft>`: `<ft>` is the frame type as two hex digits (`0a`, `3b`,
  `a4`; upper case is not accepted). The body is a JSON object with the
  fields of the frame; unknown fields are ignored.
- With `--apiToken`, every call except `/healthz`, `/metrics` and
  `/openapi.json` needs `Authorization: Bearer <token>`.
- A body over `--maxBodyBytes` (default 65536) is refused with `413`.
- `GET /openapi.json` is the OpenAPI 3.1 document of all of this, with the
  request schema of every frame type generated from the same declarations.

## Request bodies

- Every field of the frame is required unless its table says otherwise.
- Strings of digits must have the exact width of their field: the pile id
  14 digits, the billing model code 4 (`"0001"`, not `"01"`), a `tradeSeq`
  32. Card numbers (`logicCard`, `physicalCard`) may be shorter and are
  left-padded with zeros.
- Integers must be JSON integers within their field's range (`1000000`, not
  `"1000000"` or `1e6`); booleans must be `true` / `false`.
- `header` is optional: `{"seq": n}` sets the sequence number of the frame,
  `"encrypted"` may only be `false`.
- 0x40 carries no pile id on the wire; its body still needs `id` to name the
  pile.

## Coming from ykc-proxy-server

The paths, the JSON names and `header` are those of the seed project, so
request bodies written for it keep working. Where the seed wrote a broken
frame without saying so, the proxy answers `400` instead:

- 0x0A and 0x58 need the pile's `id` and a 4-digit `billingModelCode`;
  `accrualRatio` may be left out (it defaults to 0).
- A body that is not valid JSON, e.g. with a comma after the last member, is
  refused as malformed.

## Sequence numbers

Without `header.seq`:

- a reply type takes the seq of the request it answers, so the pile can tie
  the two together:

| reply | answers the pile's | seq taken from |
|---|---|---|
"""

_AFTER_SEQ = """
- every other type is a command and takes the session's next seq (0, 1, 2 …
  per pile connection, wrapping at 65535); so does a reply type when the
  pile sent no request to answer (for 0x40: no 0x3B with that `tradeSeq`).

## Waiting for the reply

Without `?wait=` a command is fire-and-forget: the answer `200` says the
frame was written to the pile's connection. With `?wait=<seconds>` (more than
0, at most 300) on a command that has a reply frame, the answer is held until
the pile's reply arrives and comes back decoded under `"reply"`. A reply is
matched by pile, type and the keys below, never by arrival order alone:

| command | reply | matched by |
|---|---|---|
"""

_AFTER_WAIT = """
- No reply within the wait: `504`. The frame was sent; the answer says so
  and gives its `seq` and `frame`. Do not blindly send a 0x34 again: the pile
  may still start.
- The pile disconnects while waited on: `502` at once, also with `seq` and
  `frame`.
- A 0x34 to a gun that is not plugged in is answered by a 0x33 failure
  (reason 5) and, if the gun is plugged within 60 s, by a second 0x33 success
  for the same `tradeSeq`. The wait returns the first; both are forwarded to
  the consumers like every other frame, so follow the second one there.
- A reply frame is forwarded to the consumers whether or not a call waits for
  it.

## Answers

| status | when | body |
|---|---|---|
| 200 | the frame was written to the pile's connection | `{"message": "done", "seq": n, "frame": "<hex>"}`, plus `"reply"` with `?wait=` |
| 400 | malformed JSON, a missing field, a wrong type, a value out of range, a bad `wait` | `{"message": "…", "errors": [{"field": …, "rule": …}]}` |
| 401 | `--apiToken` is set and the call lacks it | `{"message": "…"}` |
| 404 | the pile is not connected (or has no accepted login), or `<ft>` is no platform → pile type | `{"message": "…"}` |
| 405 | a method the path does not take | `{"message": "…"}` |
| 413 | the body is over `--maxBodyBytes` | `{"message": "…"}` |
| 502 | the pile disconnected while waited on | `{"message": "…", "seq": n, "frame": "<hex>"}` |
| 504 | `wait` expired without the reply | `{"message": "…", "seq": n, "frame": "<hex>"}` |

A client mistake is always a 4xx; 502 and 504 only report a pile that went
away or did not answer.

### Error examples

The `message` names every field that is wrong and the rule it breaks;
`errors` lists them one by one.
"""  # noqa: E501 (markdown table rows)

_MONITORING = """
## Piles, health and metrics

### `GET /piles`, `GET /piles/<id>`

The piles with an accepted login: the connection (`remote`, `connectedAt`,
`lastSeen`, in unix ms), the login fields, and per gun the latest state the
pile reported: `gunStatus` from its heartbeat (0x03), `status`, `plugged` and
`tradeSeq` from its realtime data (0x13). `GET /piles` gives an array of
these, `GET /piles/<id>` one of them, or `404` when the pile is not connected.

"""

_HEALTH = """
### `GET /healthz`

`200` with `{"ok": true, …}` when both listeners are up and the forwarder is
usable; `503` with `"ok": false` and a `degraded` list naming what is wrong.

### `GET /metrics`

Prometheus text format: connected piles and connections, frames in and out by
type, dropped frames and bytes by kind (`crc`, `decode`, `garbage`,
`not_logged_in` …), forward successes, failures and latency, and REST requests
by route and status code.

### `GET /openapi.json`

The OpenAPI 3.1 document of every route above, generated from the frame
declarations (request schema and example of each command).
"""


def render_restapi_md(catalogue: Mapping[int, FrameType] = CATALOGUE) -> str:
    """The whole of ``doc/restapi.md``."""
    frames = sorted(catalogue.values(), key=lambda f: f.code)
    lines = [_INTRO.rstrip("\n")]
    for f in frames:
        if f.direction is Direction.DOWN and f.answers is not None:
            source = (
                "the 0x3B with the same `tradeSeq`" if f.code == 0x40 else f"the latest 0x{f.answers:02X}"
            )
            lines.append(f"| 0x{f.code:02X} | 0x{f.answers:02X} | {source} |")
    lines.append(_AFTER_SEQ.rstrip("\n"))
    for f in frames:
        if f.direction is Direction.DOWN and f.reply is not None:
            keys = ", ".join(f"`{k}`" for k in f.match) or "pile and type"
            lines.append(f"| 0x{f.code:02X} {f.name} | 0x{f.reply:02X} | {keys} |")
    lines.append(_AFTER_WAIT.rstrip("\n"))
    for title, code, text, status, answer in error_examples():
        lines += ["", f"{title}: `POST /proxy/{code:02x}` with", "", _code_block(text), ""]
        lines += [f"Answer `{status}`:", "", _code_block(to_json(answer))]
    lines += ["", "## Commands", ""]
    lines.append("Each command with its fields, an example body, and the answer.")
    lines.append("")
    for ex in command_examples(catalogue):
        lines += _command_section(ex)
    lines.append(_MONITORING.strip("\n"))
    lines += ["", "Example (`GET /piles/" + PILE + "`):", "", _code_block(to_json(_pile_example()))]
    lines.append(_HEALTH.rstrip("\n"))
    lines += _route_index()
    return "\n".join(lines) + "\n"


def _route_index() -> list[str]:
    """Every route of the table other than the commands: what it does, its parameters and answers."""
    from ykcproxy.api.routes import ROUTES

    lines = ["", "## Every other route", ""]
    lines.append("Generated from the route table, like `/openapi.json`. 🔒: the API token applies.")
    lines.append("")
    lines.append("| route | what | parameters | answers |")
    lines.append("|---|---|---|---|")
    for route in ROUTES:
        lock = "" if route.public else " 🔒"
        if route.public_if:
            lock = " 🔒 (unless --metricsPublic)"
        shown = [f"`{p.name}` ({p.where})" for p in route.params]
        if route.body is not None:
            shown.append("JSON body")
        params = ", ".join(shown) or "—"
        answers = ", ".join(str(code) for code in route.all_replies())
        path = route.openapi_path
        lines.append(f"| `{route.method} {path}`{lock} | {route.summary} | {params} | {answers} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Write ``doc/restapi.md`` (or the path given)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.write_text(render_restapi_md(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
