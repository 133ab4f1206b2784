"""Example values of the REST documentation and the OpenAPI document.

One readable example body for every command, and the request and reply a
pile exchanges with it; ``doc/restapi.md`` shows them and
``tests/test_restdoc.py`` replays each against a running proxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ykcproxy.wire.codec import Codec, encode_frame
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.examples import EXAMPLE_PILE, EXAMPLE_TIME, example
from ykcproxy.wire.frames import CATALOGUE, Direction, FrameType

#: The pile of every example.
PILE = EXAMPLE_PILE
#: The seq of the pile's request in the examples of reply types.
REQUEST_SEQ = 7
#: ``?wait=`` in the examples of commands with a reply.
WAIT = 30

CODEC = Codec()
EXAMPLE_TRADE = PILE + "01" + "250102030405" + "0001"
_PARALLEL = "250102030405"
_RATES = [3] * 16 + [2] * 4 + [1] * 6 + [0] * 4 + [1] * 8 + [2] * 6 + [3] * 4
EXAMPLE_BILLING = {
    "billingModelCode": "0001",
    "sharpUnitPrice": 120000,
    "sharpServiceFee": 40000,
    "peakUnitPrice": 100000,
    "peakServiceFee": 40000,
    "flatUnitPrice": 80000,
    "flatServiceFee": 40000,
    "valleyUnitPrice": 50000,
    "valleyServiceFee": 40000,
    "accrualRatio": 0,
    "rateList": _RATES,
}
EXAMPLE_START = {
    "tradeSeq": EXAMPLE_TRADE,
    "gunId": "01",
    "logicCard": "1000000573",
    "physicalCard": "D14B0A54",
    "balance": 1000000,
}

#: Readable values for the example body of each command (the rest from ``example()``).
COMMAND_VALUES: dict[int, dict[str, Any]] = {
    0x02: {"result": True},
    0x04: {"gun": "01", "response": 0},
    0x06: {"billingModelCode": "0001", "result": True},
    0x0A: EXAMPLE_BILLING,
    0x12: {"gunId": "01"},
    0x32: {
        "tradeSeq": EXAMPLE_TRADE,
        "gunId": "01",
        "logicCard": "1000000573",
        "balance": 1000000,
        "result": 1,
        "reason": 0,
    },
    0x34: EXAMPLE_START,
    0x36: {"gunId": "01"},
    0x40: {"tradeSeq": EXAMPLE_TRADE, "result": 0},
    0x42: {"gunId": "01", "physicalCard": "D14B0A54", "balance": 880000},
    0x44: {
        "cards": [
            {"logicCard": "1000000573", "physicalCard": "D14B0A54"},
            {"logicCard": "1000000574", "physicalCard": "D14B0A55"},
        ]
    },
    0x46: {"cards": ["D14B0A54", "D14B0A55"]},
    0x48: {"cards": ["D14B0A54", "D14B0A55"]},
    0x52: {"allowWork": 0, "maxOutputPower": 80},
    0x56: {"time": EXAMPLE_TIME},
    0x58: EXAMPLE_BILLING,
    0x62: {"gunId": "01", "action": 0x55},
    0x92: {"control": 2},
    0x94: {
        "pileType": 1,
        "pilePower": 120,
        "serverAddress": "192.168.10.20",
        "serverPort": 21,
        "username": "ykc",
        "password": "firmware",
        "filePath": "/pile/dc120-v2.1.bin",
        "control": 2,
        "downloadTimeout": 10,
    },
    0xA2: {
        "tradeSeq": EXAMPLE_TRADE,
        "gunId": "01",
        "logicCard": "1000000573",
        "balance": 1000000,
        "result": 1,
        "reason": 0,
        "parallelSeq": _PARALLEL,
    },
    0xA4: {**EXAMPLE_START, "parallelSeq": _PARALLEL},
}

#: Readable values for the pile's request that a reply type answers.
REQUEST_VALUES: dict[int, dict[str, Any]] = {
    0x01: {
        "elcType": 0,
        "guns": 2,
        "protocolVersion": 16,
        "softwareVersion": "V2.1.0",
        "network": 1,
        "sim": "89860000000000000000",
        "operator": 4,
    },
    0x03: {"gun": "01", "gunStatus": 0},
    0x05: {"billingModelCode": "0001"},
    0x31: {
        "gunId": "01",
        "startMode": 1,
        "needPassword": 0,
        "account": "00000000D14B0A54",
        "password": "",
        "vin": "",
    },
    0x3B: {"tradeSeq": EXAMPLE_TRADE},
    0xA1: {
        "gunId": "01",
        "startMode": 1,
        "needPassword": 0,
        "account": "00000000D14B0A54",
        "password": "",
        "vin": "",
        "masterFlag": 0,
        "parallelSeq": _PARALLEL,
    },
}

#: Readable values for the pile's reply to each command (match keys come from the command).
REPLY_VALUES: dict[int, dict[str, Any]] = {
    0x13: {
        "tradeSeq": EXAMPLE_TRADE,
        "status": 3,
        "reset": 0,
        "plugged": 1,
        "ov": 3805,
        "oc": 1250,
        "lineTemp": 75,
        "lineCode": "0000000000000000",
        "soc": 56,
        "bpTopTemp": 80,
        "accumulatedChargingTime": 25,
        "remainingTime": 40,
        "chargingDegrees": 245000,
        "lossyChargingDegrees": 245000,
        "chargedAmount": 318500,
        "hardwareFailure": 0,
    },
    0x33: {"result": True, "reason": 0},
    0x35: {"result": True, "reason": 0},
    0x41: {"physicalCard": "00000000D14B0A54", "result": 0},
    0x43: {"result": 1, "reason": 0},
    0x45: {
        "cards": [
            {"physicalCard": "00000000D14B0A54", "result": 1, "reason": 0},
            {"physicalCard": "00000000D14B0A55", "result": 1, "reason": 0},
        ]
    },
    0x47: {
        "cards": [
            {"physicalCard": "00000000D14B0A54", "result": 1},
            {"physicalCard": "00000000D14B0A55", "result": 0},
        ]
    },
    0x51: {"result": 1},
    0x55: {"time": EXAMPLE_TIME},
    0x57: {"result": 1},
    0x63: {"result": 1},
    0x91: {"result": 1},
    0x93: {"status": 0},
    0xA3: {"result": True, "reason": 0, "masterFlag": 0},
}


@attrs.frozen
class CommandExample:
    """One documented ``POST /proxy/<ft>``, with everything a replay needs."""

    frame: FrameType
    #: The request body.
    body: dict[str, Any]
    #: ``?wait=`` (None for types without a reply frame).
    wait: float | None
    #: For a reply type: (code, fields) of the pile's request, sent with seq REQUEST_SEQ.
    request: tuple[int, dict[str, Any]] | None
    #: For a command with a reply: (code, fields) the pile answers with.
    reply: tuple[int, dict[str, Any]] | None
    #: The answer of the REST call, with the frame written.
    response: dict[str, Any]

    @property
    def path(self) -> str:
        query = f"?wait={self.wait:g}" if self.wait is not None else ""
        return f"/proxy/{self.frame.ft}{query}"


def _decoded(code: int, fields: Mapping[str, Any]) -> dict[str, Any]:
    checked = CODEC.check(code, dict(fields))
    return CODEC.decode_body(code, CODEC.encode_body(code, checked))


def _example(frame: FrameType) -> CommandExample:
    code = frame.code
    body = {"id": PILE, **{k: v for k, v in example(code, PILE).items() if k != "id"}}
    body.update(COMMAND_VALUES.get(code, {}))
    if "id" not in frame.keys:
        body = {"id": PILE, **body}
    checked = CODEC.check(code, body)
    request = None
    seq = 0
    if frame.answers is not None:
        values = dict(REQUEST_VALUES.get(frame.answers, {}))
        request = (frame.answers, example(frame.answers, PILE, **values))
        seq = REQUEST_SEQ
    raw = encode_frame(code, seq, CODEC.encode_body(code, checked), CrcOrder.LOW_FIRST)
    response: dict[str, Any] = {"message": "done", "seq": seq, "frame": raw.hex()}
    reply = None
    wait: float | None = None
    if frame.reply is not None:
        values = dict(REPLY_VALUES.get(frame.reply, {}))
        values.update({k: checked[k] for k in frame.match})
        reply = (frame.reply, example(frame.reply, PILE, **values))
        response["reply"] = _decoded(frame.reply, reply[1])
        wait = WAIT
    return CommandExample(frame, body, wait, request, reply, response)


def command_examples(catalogue: Mapping[int, FrameType] = CATALOGUE) -> list[CommandExample]:
    """The example of every platform→pile frame type, in code order."""
    frames = sorted((f for f in catalogue.values() if f.direction is Direction.DOWN), key=lambda f: f.code)
    return [_example(f) for f in frames]


def request_examples() -> dict[int, dict[str, Any]]:
    """Frame code → the documented request body (for the OpenAPI document)."""
    return {e.frame.code: e.body for e in command_examples()}
