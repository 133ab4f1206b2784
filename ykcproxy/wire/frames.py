"""The catalogue: one declaration per YKC V1.6 frame type (all 51).

Each :class:`FrameType` lists its body in wire order.  The codec, the REST
request schemas, the OpenAPI document and ``doc/messages.md`` are all derived
from these declarations; adding a frame type is one entry here.

Field names follow INTERFACE.md section 2; sizes and scales follow the spec
tables (``spec/ykc-protocol-v1.6.txt``, section noted per frame).
"""

from __future__ import annotations

import enum
import time

import attrs

from ykcproxy.wire.fields import (
    Ascii,
    Bcd,
    Bits,
    Bool,
    Bytes,
    Cp56,
    GunBin,
    Hex,
    ListOf,
    Record,
    Reserved,
    Slot,
    UInt,
)


class Direction(enum.Enum):
    """Who sends a frame type."""

    UP = "pile→platform"
    DOWN = "platform→pile"


@attrs.frozen
class FrameType:
    """The declaration of one frame type."""

    code: int
    name: str  #: short English name
    title: str  #: the spec's Chinese title
    section: str  #: section of the spec with the field table
    direction: Direction
    slots: tuple[Slot, ...]
    tail: ListOf | None = None
    #: For a platform command: the frame type the pile answers with.
    reply: int | None = None
    #: For an answer (either side): the frame type it answers.
    answers: int | None = None
    #: Keys (besides the pile id) that tie a reply to its command.
    match: tuple[str, ...] = ()

    @property
    def ft(self) -> str:
        """The type as two lowercase hex digits, as in paths and subjects."""
        return f"{self.code:02x}"

    @property
    def keys(self) -> tuple[str, ...]:
        """The JSON keys of this frame, in wire order."""
        keys = tuple(k for s in self.slots for k in s.keys)
        return keys + ((self.tail.name,) if self.tail else ())


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- shared field declarations ------------------------------------------------
PILE_ID = Bcd("id", n=7, doc="pile id (桩编码), 14 digits")
GUN = Bcd("gun", n=1, doc="gun number (枪号)")
GUN_ID = Bcd("gunId", n=1, doc="gun number (枪号)")
GUN_BIN = GunBin("gunId", doc="gun number, BIN on the wire")
TRADE_SEQ = Bcd("tradeSeq", n=16, doc="transaction number (交易流水号): pile id, gun, yyMMddHHmmss, counter")
BILLING_MODEL = Bcd("billingModelCode", n=2, doc="billing model code (计费模型编号)")
LOGIC_CARD = Bcd("logicCard", n=8, pad=True, doc="logical card number (逻辑卡号)")
PHYSICAL_CARD = Hex("physicalCard", n=8, pad=True, doc="physical card number (物理卡号)")


def _price(name: str, doc: str) -> UInt:
    return UInt(name, n=4, scale="×100000 yuan/kWh", doc=doc)


#: The body of 0x0A and 0x58 (billing model), shared.
BILLING_MODEL_SLOTS: tuple[Slot, ...] = (
    PILE_ID,
    BILLING_MODEL,
    _price("sharpUnitPrice", "sharp (尖) electricity price"),
    _price("sharpServiceFee", "sharp (尖) service fee"),
    _price("peakUnitPrice", "peak (峰) electricity price"),
    _price("peakServiceFee", "peak (峰) service fee"),
    _price("flatUnitPrice", "flat (平) electricity price"),
    _price("flatServiceFee", "flat (平) service fee"),
    _price("valleyUnitPrice", "valley (谷) electricity price"),
    _price("valleyServiceFee", "valley (谷) service fee"),
    UInt("accrualRatio", n=1, default=0, scale="percent", doc="loss accrual ratio (计损比例)"),
    Bytes(
        "rateList",
        n=48,
        hi=3,
        doc="rate of each half hour from 00:00: 0 sharp, 1 peak, 2 flat, 3 valley",
    ),
)

UP, DOWN = Direction.UP, Direction.DOWN

_DECLARATIONS: tuple[FrameType, ...] = (
    FrameType(
        0x01,
        "login",
        "充电桩登录认证",
        "6.1",
        UP,
        (
            PILE_ID,
            UInt("elcType", doc="pile type: 0 DC, 1 AC"),
            UInt("guns", doc="number of guns"),
            UInt("protocolVersion", scale="version×10 (0x0F = V1.5)", doc="protocol version"),
            Ascii("softwareVersion", n=8, doc="software version"),
            UInt("network", doc="link: 0 SIM, 1 LAN, 2 WAN, 3 other"),
            Bcd("sim", n=10, doc="SIM ICCID (nibbles above 9 occur)"),
            UInt("operator", doc="carrier: 0 China Mobile, 2 Telecom, 3 Unicom, 4 other"),
        ),
    ),
    FrameType(
        0x02,
        "loginReply",
        "登录认证应答",
        "6.2",
        DOWN,
        (PILE_ID, Bool("result", true_byte=0, doc="true: login accepted (0x00)")),
        answers=0x01,
    ),
    FrameType(
        0x03,
        "heartbeat",
        "充电桩心跳包",
        "6.3",
        UP,
        (PILE_ID, GUN, UInt("gunStatus", doc="0 normal, 1 fault")),
    ),
    FrameType(
        0x04,
        "heartbeatReply",
        "心跳包应答",
        "6.4",
        DOWN,
        (PILE_ID, GUN, UInt("response", default=0, doc="always 0")),
        answers=0x03,
    ),
    FrameType(
        0x05,
        "billingModelVerify",
        "计费模型验证请求",
        "6.5",
        UP,
        (PILE_ID, BILLING_MODEL),
    ),
    FrameType(
        0x06,
        "billingModelVerifyReply",
        "计费模型验证请求应答",
        "6.6",
        DOWN,
        (PILE_ID, BILLING_MODEL, Bool("result", true_byte=0, doc="true: consistent (0x00)")),
        answers=0x05,
    ),
    FrameType(0x09, "billingModelRequest", "充电桩计费模型请求", "6.7", UP, (PILE_ID,)),
    FrameType(
        0x0A,
        "billingModelReply",
        "计费模型请求应答",
        "6.8",
        DOWN,
        BILLING_MODEL_SLOTS,
        answers=0x09,
    ),
    FrameType(
        0x12,
        "readRealtimeData",
        "读取实时监测数据",
        "7.1",
        DOWN,
        (PILE_ID, GUN_ID),
        reply=0x13,
        match=("gunId",),
    ),
    FrameType(
        0x13,
        "realtimeData",
        "上传实时监测数据",
        "7.2",
        UP,
        (
            TRADE_SEQ,
            PILE_ID,
            GUN_ID,
            UInt("status", doc="0 offline, 1 fault, 2 idle, 3 charging"),
            UInt("reset", doc="gun back in holster: 0 no, 1 yes, 2 unknown"),
            UInt("plugged", doc="gun plugged: 0 no, 1 yes"),
            UInt("ov", n=2, scale="×10 V", doc="output voltage"),
            UInt("oc", n=2, scale="×10 A", doc="output current"),
            UInt("lineTemp", scale="°C + 50", doc="gun line temperature"),
            Hex("lineCode", n=8, doc="gun line code"),
            UInt("soc", scale="percent", doc="state of charge"),
            UInt("bpTopTemp", scale="°C + 50", doc="highest battery pack temperature"),
            UInt("accumulatedChargingTime", n=2, scale="minutes"),
            UInt("remainingTime", n=2, scale="minutes"),
            UInt("chargingDegrees", n=4, scale="×10000 kWh"),
            UInt("lossyChargingDegrees", n=4, scale="×10000 kWh"),
            UInt("chargedAmount", n=4, scale="×10000 yuan"),
            UInt("hardwareFailure", n=2, doc="fault bits, bit 0 = spec's Bit1 (emergency stop) …"),
        ),
        answers=0x12,
    ),
)

#: Frame type code → declaration.
CATALOGUE: dict[int, FrameType] = {f.code: f for f in _DECLARATIONS}

__all__ = [
    "CATALOGUE",
    "Direction",
    "FrameType",
    "Bits",
    "Cp56",
    "ListOf",
    "Record",
    "Reserved",
    "_now_ms",
]
