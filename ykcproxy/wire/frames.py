"""The catalogue: one declaration per YKC V1.6 frame type (all 51).

Each :class:`FrameType` lists its body in wire order.  The codec, the REST
request schemas, the OpenAPI document and ``doc/messages.md`` are all derived
from these declarations; adding a frame type is one entry here.

Field names follow INTERFACE.md section 2; sizes and scales follow the spec
tables (``spec/ykc-protocol-v1.6.txt``, section noted per frame).  A ``scale``
says how the raw integer relates to the physical value: ``×10 V`` means
raw = volts × 10, ``°C + 50`` means raw = degrees + 50.
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
    #: What the frame is for, in a sentence or two (for docs).
    doc: str = ""

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
LOGIC_CARD = Bcd("logicCard", n=8, pad=True, doc="logical card number (逻辑卡号), printed on the card")
PHYSICAL_CARD = Hex("physicalCard", n=8, pad=True, doc="physical card number (物理卡号), read by the pile")
BALANCE = UInt("balance", n=4, scale="×100 yuan", doc="account balance")
PARALLEL_SEQ = Bcd("parallelSeq", n=6, doc="parallel charging number (并充序号), yyMMddHHmmss")
MASTER_FLAG = UInt("masterFlag", doc="0 master gun, 1 auxiliary gun")
SET_RESULT = UInt("result", doc="0 failed, 1 succeeded")
START_REASON = UInt(
    "reason",
    doc="0 none, 1 pile id mismatch, 2 gun already charging, 3 pile fault, 4 pile offline, 5 gun not plugged",
)
AUTH_REASON = UInt(
    "reason",
    doc=(
        "why refused: 1 no such account, 2 account frozen, 3 balance too low, 4 card has an "
        "unsettled record, 5 pile disabled, 6 account not allowed on this pile, 7 wrong password, "
        "8 station capacity too low, 9 VIN unknown, 10 pile has an unsettled record, "
        "11 pile takes no cards (the spec says BCD; the codes are read as a byte)"
    ),
)


def _price(name: str, doc: str) -> UInt:
    return UInt(name, n=4, scale="×100000 yuan/kWh", doc=doc)


def _energy(name: str, doc: str) -> UInt:
    return UInt(name, n=4, scale="×10000 kWh", doc=doc)


def _money(name: str, doc: str) -> UInt:
    return UInt(name, n=4, scale="×10000 yuan", doc=doc)


def _volts(name: str, doc: str) -> UInt:
    return UInt(name, n=2, scale="×10 V", doc=doc)


def _cell_volts(name: str, doc: str) -> UInt:
    return UInt(name, n=2, scale="×100 V", doc=doc)


def _bms_amps(name: str, doc: str) -> UInt:
    return UInt(name, n=2, scale="(A + 400) ×10", doc=doc)


def _temp(name: str, doc: str) -> UInt:
    return UInt(name, scale="°C + 50", doc=doc)


def _minutes(name: str, doc: str) -> UInt:
    return UInt(name, n=2, scale="minutes", doc=doc)


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

#: The body of 0x31 (and the start of 0xA1): a charging request made at the pile.
START_REQUEST_SLOTS: tuple[Slot, ...] = (
    PILE_ID,
    GUN_ID,
    UInt("startMode", doc="1 card, 2 account (not supported), 3 VIN"),
    UInt("needPassword", doc="0 no, 1 yes"),
    Hex("account", n=8, doc="account or physical card number, left-padded with zeros"),
    Ascii("password", n=16, doc="the 16-character lowercase MD5 text of the entered password; empty if none"),
    Ascii("vin", n=17, reverse=True, doc="vehicle VIN for a VIN start, else empty"),
)

#: The body of 0x32 (and the start of 0xA2): the platform's answer to a start request.
START_CONFIRM_SLOTS: tuple[Slot, ...] = (
    TRADE_SEQ,
    PILE_ID,
    GUN_ID,
    LOGIC_CARD,
    BALANCE,
    UInt("result", choices=(0, 1), doc="0 refused, 1 accepted"),
    AUTH_REASON,
)

#: The body of 0x34 (and the start of 0xA4): remote start.
REMOTE_START_SLOTS: tuple[Slot, ...] = (
    TRADE_SEQ,
    PILE_ID,
    GUN_ID,
    LOGIC_CARD,
    PHYSICAL_CARD,
    BALANCE,
)

#: The body of 0x33 (and the start of 0xA3): the pile's answer to a remote start.
REMOTE_START_REPLY_SLOTS: tuple[Slot, ...] = (
    TRADE_SEQ,
    PILE_ID,
    GUN_ID,
    Bool("result", true_byte=1, doc="true: started (0x01); false: failed (0x00)"),
    START_REASON,
)

_TIMEOUT_VALUES = "each 2 bits: 0 normal, 1 timed out, 2 not trustworthy"

#: 0x1B: eight bytes of 2-bit timeout flags, from bit 0 of the first byte.
BMS_ERROR_BITS = Bits(
    "timeouts",
    n=8,
    parts=(
        ("chmTimeout00", 2),
        ("chmTimeoutAA", 2),
        (None, 4),
        ("cmlTimeout", 2),
        ("croTimeout", 2),
        (None, 4),
        ("ccsTimeout", 2),
        ("cstTimeout", 2),
        (None, 4),
        ("csdTimeout", 2),
        ("bmsOther", 6),
        ("brmTimeout", 2),
        (None, 6),
        ("bcpTimeout", 2),
        ("broTimeout", 2),
        (None, 4),
        ("bcsTimeout", 2),
        ("bclTimeout", 2),
        ("bstTimeout", 2),
        (None, 2),
        ("bsdTimeout", 2),
        ("chargerOther", 6),
    ),
    part_docs=(
        ("chmTimeout00", "BMS side: charger identification CRM (SPN2560 = 0x00) timed out"),
        ("chmTimeoutAA", "BMS side: charger identification CRM (SPN2560 = 0xAA) timed out"),
        ("cmlTimeout", "BMS side: charger time sync / maximum output (CTS, CML) timed out"),
        ("croTimeout", "BMS side: charger ready (CRO) timed out"),
        ("ccsTimeout", "BMS side: charger status (CCS) timed out"),
        ("cstTimeout", "BMS side: charger stop (CST) timed out"),
        ("csdTimeout", "BMS side: charger statistics (CSD) timed out"),
        ("bmsOther", "BMS side: other errors"),
        ("brmTimeout", "charger side: BMS and vehicle identification (BRM) timed out"),
        ("bcpTimeout", "charger side: battery charging parameters (BCP) timed out"),
        ("broTimeout", "charger side: BMS ready (BRO) timed out"),
        ("bcsTimeout", "charger side: battery charging status (BCS) timed out"),
        ("bclTimeout", "charger side: battery charging demand (BCL) timed out"),
        ("bstTimeout", "charger side: BMS stop (BST) timed out"),
        ("bsdTimeout", "charger side: BMS statistics (BSD) timed out"),
        ("chargerOther", "charger side: other errors"),
    ),
    doc=_TIMEOUT_VALUES,
)

#: 0x25: two bytes of 2-bit battery states, from bit 0 of the first byte.
BMS_STATE_BITS = Bits(
    "states",
    n=2,
    parts=(
        ("cellVoltageState", 2),
        ("socState", 2),
        ("overCurrentState", 2),
        ("overTemperatureState", 2),
        ("insulationState", 2),
        ("connectorState", 2),
        ("chargeAllowed", 2),
        (None, 2),
    ),
    part_docs=(
        ("cellVoltageState", "cell voltage: 0 normal, 1 too high, 2 too low"),
        ("socState", "battery SOC: 0 normal, 1 too high, 2 too low"),
        ("overCurrentState", "charging current: 0 normal, 1 over current, 2 not trustworthy"),
        ("overTemperatureState", "battery temperature: 0 normal, 1 too high, 2 not trustworthy"),
        ("insulationState", "insulation: 0 normal, 1 fault, 2 not trustworthy"),
        ("connectorState", "output connector: 0 normal, 1 fault, 2 not trustworthy"),
        ("chargeAllowed", "charging: 0 forbidden, 1 allowed"),
    ),
    doc="battery states, 2 bits each",
)

_STOP_PAIRS = "2-bit pairs from bit 0 (0 normal, 1 yes, 2 not trustworthy): "

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
        doc="Sent after every reset or reconnect; nothing else is served before a successful 0x02.",
    ),
    FrameType(
        0x02,
        "loginReply",
        "登录认证应答",
        "6.2",
        DOWN,
        (PILE_ID, Bool("result", true_byte=0, doc="true: login accepted (0x00)")),
        answers=0x01,
        doc="The login result; after a refusal the proxy closes the link.",
    ),
    FrameType(
        0x03,
        "heartbeat",
        "充电桩心跳包",
        "6.3",
        UP,
        (PILE_ID, GUN, UInt("gunStatus", doc="0 normal, 1 fault")),
        doc="Every 10 s; three missed heartbeats mean the link is dead.",
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
        (
            PILE_ID,
            Bcd("billingModelCode", n=2, doc="billing model code (计费模型编号); 0000 on first contact"),
        ),
        doc="After login the pile asks whether its billing model is current.",
    ),
    FrameType(
        0x06,
        "billingModelVerifyReply",
        "计费模型验证请求应答",
        "6.6",
        DOWN,
        (PILE_ID, BILLING_MODEL, Bool("result", true_byte=0, doc="true: consistent (0x00)")),
        answers=0x05,
        doc="If not consistent, the pile asks for the current model with 0x09.",
    ),
    FrameType(
        0x09,
        "billingModelRequest",
        "充电桩计费模型请求",
        "6.7",
        UP,
        (PILE_ID,),
        doc="The pile asks for the current billing model; it does not charge until it has one.",
    ),
    FrameType(
        0x0A,
        "billingModelReply",
        "计费模型请求应答",
        "6.8",
        DOWN,
        BILLING_MODEL_SLOTS,
        answers=0x09,
        doc="Four prices (sharp, peak, flat, valley) and the price of each of the 48 half hours.",
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
        doc="Asks a gun for its realtime data now.",
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
            _minutes("accumulatedChargingTime", "charging time so far"),
            _minutes("remainingTime", "estimated time left"),
            _energy("chargingDegrees", "energy charged"),
            _energy("lossyChargingDegrees", "energy charged with the loss ratio applied"),
            _money("chargedAmount", "amount so far (electricity + service)"),
            UInt(
                "hardwareFailure",
                n=2,
                doc=(
                    "fault bits from bit 0 (the spec's Bit1 … Bit13): emergency stop, no rectifier "
                    "module, air outlet too hot, AC lightning protection, DC20 link lost, FC08 link "
                    "lost, meter link lost, card reader link lost, RC10 link lost, fan board fault, "
                    "DC fuse fault, high-voltage contactor fault, door open"
                ),
            ),
        ),
        answers=0x12,
        doc="Every 15 s while charging, every 5 min when idle, on every change, and when asked by 0x12.",
    ),
    FrameType(
        0x15,
        "chargingHandshake",
        "充电握手",
        "7.3",
        UP,
        (
            TRADE_SEQ,
            PILE_ID,
            GUN_ID,
            Hex("bmsProtocolVersion", n=3, doc="BMS protocol version (V1.1 is 01 01 00)"),
            UInt(
                "bmsBatteryType",
                doc=(
                    "1 lead-acid, 2 nickel-metal hydride, 3 LiFePO4, 4 LiMn2O4, 5 LiCoO2, "
                    "6 ternary, 7 Li-polymer, 8 Li-titanate, 255 other"
                ),
            ),
            UInt("bmsRatedCapacity", n=2, scale="×10 Ah", doc="rated capacity of the traction battery"),
            _volts("bmsRatedVoltage", "rated total voltage of the traction battery"),
            Ascii("bmsBatteryVendor", n=4, doc="battery maker"),
            Hex("bmsBatterySerial", n=4, doc="battery pack serial (maker-defined)"),
            UInt("bmsProductionYear", scale="year − 1985", doc="battery production year"),
            UInt("bmsProductionMonth", doc="battery production month, 1–12"),
            UInt("bmsProductionDay", doc="battery production day, 1–31"),
            UInt("bmsChargeCount", n=3, doc="charge cycles counted by the BMS"),
            UInt("bmsPropertyRight", doc="0 leased, 1 owned by the vehicle owner"),
            Reserved(1),
            Ascii("bmsVin", n=17, doc="vehicle VIN"),
            Hex(
                "bmsSoftwareVersion",
                n=8,
                doc="BMS software version: serial, day, month, year (u16), then FFFFFF",
            ),
        ),
        doc="GB/T 27930 handshake stage between charger and BMS (DC piles).",
    ),
    FrameType(
        0x17,
        "parameterConfig",
        "参数配置",
        "7.4",
        UP,
        (
            TRADE_SEQ,
            PILE_ID,
            GUN_ID,
            _cell_volts("bmsCellMaxVoltage", "highest allowed cell charging voltage"),
            _bms_amps("bmsMaxCurrent", "highest allowed charging current"),
            UInt("bmsNominalEnergy", n=2, scale="×10 kWh", doc="nominal battery energy"),
            _volts("bmsMaxTotalVoltage", "highest allowed total charging voltage"),
            _temp("bmsMaxTemperature", "highest allowed temperature"),
            UInt("bmsSoc", n=2, scale="×10 percent", doc="battery state of charge"),
            _volts(
                "bmsCurrentVoltage", "present total battery voltage (scale not given; 0.1 V like the rest)"
            ),
            _volts("pileMaxOutputVoltage", "highest output voltage of the pile"),
            _volts("pileMinOutputVoltage", "lowest output voltage of the pile"),
            _bms_amps("pileMaxOutputCurrent", "highest output current of the pile"),
            _bms_amps("pileMinOutputCurrent", "lowest output current of the pile"),
        ),
        doc="GB/T 27930 parameter configuration stage.",
    ),
    FrameType(
        0x19,
        "chargingEnd",
        "充电结束",
        "7.5",
        UP,
        (
            TRADE_SEQ,
            PILE_ID,
            GUN_ID,
            UInt("bmsSoc", scale="percent", doc="state of charge when stopped"),
            _cell_volts("bmsBatteryPackLowestVoltage", "lowest cell voltage"),
            _cell_volts("bmsBatteryPackHighestVoltage", "highest cell voltage"),
            _temp("bmsBatteryPackLowestTemperature", "lowest battery temperature"),
            _temp("bmsBatteryPackHighestTemperature", "highest battery temperature"),
            _minutes("cumulativeChargingDuration", "charging time"),
            UInt("outputPower", n=2, scale="×10 kWh", doc="energy output by the pile"),
            UInt("chargingUnitId", n=4, scale="number − 1", doc="charger number"),
        ),
        doc="GB/T 27930 end-of-charge statistics.",
    ),
    FrameType(
        0x1B,
        "bmsError",
        "错误报文",
        "7.6",
        UP,
        (TRADE_SEQ, PILE_ID, GUN_ID, BMS_ERROR_BITS),
        doc="GB/T 27930 error message: which stage messages timed out, on the BMS and the charger side.",
    ),
    FrameType(
        0x1D,
        "bmsStop",
        "充电阶段 BMS 中止",
        "7.7",
        UP,
        (
            TRADE_SEQ,
            PILE_ID,
            GUN_ID,
            UInt(
                "bmsStopReason",
                doc=_STOP_PAIRS
                + "SOC target reached, total voltage reached, cell voltage reached, stopped by charger",
            ),
            UInt(
                "bmsFaultReason",
                n=2,
                doc=_STOP_PAIRS + "insulation, output connector over-temperature, BMS part / connector "
                "over-temperature, charging connector, battery over-temperature, high-voltage relay, "
                "check point 2 voltage, other",
            ),
            UInt("bmsErrorReason", doc=_STOP_PAIRS + "current too high, voltage abnormal; bits 4–7 reserved"),
        ),
        doc="GB/T 27930: the BMS stopped charging.",
    ),
    FrameType(
        0x21,
        "chargerStop",
        "充电阶段充电机中止",
        "7.8",
        UP,
        (
            TRADE_SEQ,
            PILE_ID,
            GUN_ID,
            UInt(
                "chargerStopReason",
                doc=_STOP_PAIRS
                + "charger's condition reached, stopped by hand, abnormal stop, stopped by BMS",
            ),
            UInt(
                "chargerFaultReason",
                n=2,
                doc=_STOP_PAIRS
                + "charger over-temperature, charging connector, charger internal over-temperature, "
                "energy cannot be delivered, emergency stop, other; bits 12–15 reserved",
            ),
            UInt(
                "chargerErrorReason",
                doc=_STOP_PAIRS + "current mismatch, voltage abnormal; bits 4–7 reserved",
            ),
        ),
        doc="GB/T 27930: the charger stopped charging.",
    ),
    FrameType(
        0x23,
        "bmsDemandChargerOutput",
        "充电过程 BMS 需求与充电机输出",
        "7.9",
        UP,
        (
            TRADE_SEQ,
            PILE_ID,
            GUN_ID,
            _volts("bmsVoltageDemand", "voltage demanded by the BMS"),
            _bms_amps("bmsCurrentDemand", "current demanded by the BMS"),
            UInt("bmsChargeMode", doc="1 constant voltage, 2 constant current"),
            _volts("bmsMeasuredVoltage", "charging voltage measured by the BMS"),
            _bms_amps("bmsMeasuredCurrent", "charging current measured by the BMS"),
            UInt(
                "bmsMaxCellVoltageAndGroup",
                n=2,
                doc="bits 0–11: highest cell voltage (×100 V); bits 12–15: its group number",
            ),
            UInt("bmsSoc", scale="percent", doc="state of charge"),
            _minutes("bmsRemainingTime", "remaining time estimated by the BMS"),
            _volts("pileOutputVoltage", "output voltage of the pile"),
            _bms_amps("pileOutputCurrent", "output current of the pile"),
            _minutes("accumulatedChargingTime", "charging time so far"),
        ),
        doc="GB/T 27930 charging stage: BMS demand and charger output, every 15 s.",
    ),
    FrameType(
        0x25,
        "bmsInfo",
        "充电过程 BMS 信息",
        "7.10",
        UP,
        (
            TRADE_SEQ,
            PILE_ID,
            GUN_ID,
            UInt(
                "bmsMaxCellVoltageNo", scale="number − 1", doc="number of the cell with the highest voltage"
            ),
            _temp("bmsMaxBatteryTemperature", "highest battery temperature"),
            UInt("maxTemperaturePointNo", scale="number − 1", doc="sensor with the highest temperature"),
            _temp("minBatteryTemperature", "lowest battery temperature"),
            UInt("minTemperaturePointNo", scale="number − 1", doc="sensor with the lowest temperature"),
            BMS_STATE_BITS,
        ),
        doc="GB/T 27930 charging stage: battery information, every 15 s.",
    ),
    FrameType(
        0x31,
        "startChargingRequest",
        "充电桩主动申请启动充电",
        "8.1",
        UP,
        START_REQUEST_SLOTS,
        doc="A user asks to charge at the pile (card, account or VIN); the platform answers with 0x32.",
    ),
    FrameType(
        0x32,
        "startChargingConfirm",
        "运营平台确认启动充电",
        "8.2",
        DOWN,
        START_CONFIRM_SLOTS,
        answers=0x31,
        doc="The platform's verdict on a 0x31 start request, with the transaction number to use.",
    ),
    FrameType(
        0x33,
        "remoteStartReply",
        "远程启动充电命令回复",
        "8.4",
        UP,
        REMOTE_START_REPLY_SLOTS,
        answers=0x34,
        doc=(
            "Answer to 0x34. With no gun plugged the pile fails at once (reason 5); if the gun is "
            "plugged within 60 s it sends a second 0x33, success, for the same tradeSeq."
        ),
    ),
    FrameType(
        0x34,
        "remoteStart",
        "运营平台远程控制启机",
        "8.3",
        DOWN,
        REMOTE_START_SLOTS,
        reply=0x33,
        match=("tradeSeq", "gunId"),
        doc="Starts charging on a gun (e.g. from an app); the pile answers with 0x33 within 90 s.",
    ),
    FrameType(
        0x35,
        "remoteStopReply",
        "远程停机命令回复",
        "8.6",
        UP,
        (
            PILE_ID,
            GUN_ID,
            Bool("result", true_byte=1, doc="true: stopped (0x01); false: failed (0x00)"),
            UInt("reason", doc="0 none, 1 pile id mismatch, 2 gun not charging, 3 other"),
        ),
        answers=0x36,
        doc="Answer to 0x36.",
    ),
    FrameType(
        0x36,
        "remoteStop",
        "运营平台远程停机",
        "8.5",
        DOWN,
        (PILE_ID, GUN_ID),
        reply=0x35,
        match=("gunId",),
        doc="Stops charging on a gun; the pile must stop.",
    ),
    FrameType(
        0x3B,
        "transactionRecord",
        "交易记录",
        "8.7",
        UP,
        (
            TRADE_SEQ,
            PILE_ID,
            GUN_ID,
            Cp56("startAt", doc="start time"),
            Cp56("endAt", doc="end time"),
            _price("sharpUnitPrice", "sharp (尖) price, electricity + service"),
            _energy("sharpElectricCharge", "sharp energy"),
            _energy("lossySharpElectricCharge", "sharp energy with loss"),
            _money("sharpPrice", "sharp amount"),
            _price("peakUnitPrice", "peak (峰) price, electricity + service"),
            _energy("peakElectricCharge", "peak energy"),
            _energy("lossyPeakElectricCharge", "peak energy with loss"),
            _money("peakPrice", "peak amount"),
            _price("flatUnitPrice", "flat (平) price, electricity + service"),
            _energy("flatElectricCharge", "flat energy"),
            _energy("lossyFlatElectricCharge", "flat energy with loss"),
            _money("flatPrice", "flat amount"),
            _price("valleyUnitPrice", "valley (谷) price, electricity + service"),
            _energy("valleyElectricCharge", "valley energy"),
            _energy("lossyValleyElectricCharge", "valley energy with loss"),
            _money("valleyPrice", "valley amount"),
            UInt("initialMeterReading", n=5, scale="×10000 kWh", doc="meter reading at the start"),
            UInt("finalMeterReading", n=5, scale="×10000 kWh", doc="meter reading at the end"),
            _energy("totalElectricCharge", "total energy"),
            _energy("lossyTotalElectricCharge", "total energy with loss"),
            _money("consumptionAmount", "amount charged, electricity + service"),
            Ascii("vin", n=17, doc="vehicle VIN, in normal order"),
            UInt("startType", doc="1 app, 2 card, 4 offline card, 5 VIN"),
            Cp56("transactionDateTime", doc="transaction time"),
            UInt("stopReason", doc="stop reason code (spec appendix 13.1: 0x40–0x90)"),
            Hex("physicalCardNumber", n=8, doc="physical card number"),
        ),
        doc=(
            "The bill of one charge. Retried every 30 s (up to 3 times) until 0x40, and once more "
            "after 5 minutes, so the same record may arrive several times."
        ),
    ),
    FrameType(
        0x40,
        "transactionRecordConfirm",
        "交易记录确认",
        "8.8",
        DOWN,
        (TRADE_SEQ, UInt("result", choices=(0, 1), doc="0 received, 1 illegal record")),
        answers=0x3B,
        doc=(
            "Says the record of 0x3B was received (not that it was settled). The body has no pile id: "
            "a REST request names the pile with an extra `id` field."
        ),
    ),
    FrameType(
        0x41,
        "balanceUpdateReply",
        "余额更新应答",
        "8.10",
        UP,
        (PILE_ID, PHYSICAL_CARD, UInt("result", doc="0 updated, 1 wrong pile id, 2 wrong card")),
        answers=0x42,
        doc="Answer to 0x42.",
    ),
    FrameType(
        0x42,
        "balanceUpdate",
        "远程账户余额更新",
        "8.9",
        DOWN,
        (
            PILE_ID,
            GUN_ID,
            Hex(
                "physicalCard",
                n=8,
                pad=True,
                doc="physical card number; if not zero the pile checks it is the card charging now",
            ),
            UInt("balance", n=4, scale="×100 yuan", doc="new account balance"),
        ),
        reply=0x41,
        # The reply's card is optional ("非必填"): a pile may answer with zeros.
        match=(),
        doc="New balance of the user charging on a gun, after a top-up.",
    ),
    FrameType(
        0x43,
        "offlineCardSyncReply",
        "离线卡数据同步应答",
        "8.12",
        UP,
        (
            PILE_ID,
            UInt("result", doc="0 failed, 1 saved"),
            UInt("reason", doc="1 bad card number, 2 storage full"),
        ),
        answers=0x44,
        doc="Answer to 0x44.",
    ),
    FrameType(
        0x44,
        "offlineCardSync",
        "离线卡数据同步",
        "8.11",
        DOWN,
        (PILE_ID,),
        tail=ListOf(
            "cards",
            Record((LOGIC_CARD, PHYSICAL_CARD)),
            counted=True,
            lo=1,
            hi=15,
            doc="offline cards to store or overwrite",
        ),
        reply=0x43,
        doc="Stores cards on the pile for charging while it is offline.",
    ),
    FrameType(
        0x45,
        "offlineCardClearReply",
        "离线卡数据清除应答",
        "8.14",
        UP,
        (PILE_ID,),
        tail=ListOf(
            "cards",
            Record(
                (
                    PHYSICAL_CARD,
                    UInt("result", doc="0 failed, 1 cleared"),
                    UInt("reason", doc="1 bad card number (the spec says BCD; read as a byte)"),
                )
            ),
            counted=False,
            lo=1,
            hi=24,
            doc="one entry per card of the 0x46",
        ),
        answers=0x46,
        doc="Answer to 0x46.",
    ),
    FrameType(
        0x46,
        "offlineCardClear",
        "离线卡数据清除",
        "8.13",
        DOWN,
        (PILE_ID,),
        tail=ListOf("cards", PHYSICAL_CARD, counted=True, lo=1, hi=24, doc="physical card numbers to remove"),
        reply=0x45,
        doc="Removes offline cards from the pile.",
    ),
    FrameType(
        0x47,
        "offlineCardQueryReply",
        "离线卡数据查询应答",
        "8.16",
        UP,
        (PILE_ID,),
        tail=ListOf(
            "cards",
            Record((PHYSICAL_CARD, UInt("result", doc="0 not stored, 1 stored"))),
            counted=False,
            lo=1,
            hi=26,
            doc="one entry per card of the 0x48",
        ),
        answers=0x48,
        doc="Answer to 0x48.",
    ),
    FrameType(
        0x48,
        "offlineCardQuery",
        "离线卡数据查询",
        "8.15",
        DOWN,
        (PILE_ID,),
        tail=ListOf(
            "cards", PHYSICAL_CARD, counted=True, lo=1, hi=26, doc="physical card numbers to look up"
        ),
        reply=0x47,
        doc="Asks whether cards are stored on the pile.",
    ),
    FrameType(
        0x51,
        "workParamsReply",
        "充电桩工作参数设置应答",
        "9.2",
        UP,
        (PILE_ID, SET_RESULT),
        answers=0x52,
        doc="Answer to 0x52.",
    ),
    FrameType(
        0x52,
        "workParams",
        "充电桩工作参数设置",
        "9.1",
        DOWN,
        (
            PILE_ID,
            UInt("allowWork", choices=(0, 1), doc="0 work normally, 1 disabled (pile locked)"),
            UInt("maxOutputPower", lo=30, hi=100, scale="percent", doc="highest allowed output power"),
        ),
        reply=0x51,
        doc="Disables or enables the pile and limits its output power.",
    ),
    FrameType(
        0x55,
        "timeSyncReply",
        "对时设置应答",
        "9.4",
        UP,
        (PILE_ID, Cp56("time", doc="pile clock")),
        answers=0x56,
        doc="Answer to 0x56.",
    ),
    FrameType(
        0x56,
        "timeSync",
        "对时设置",
        "9.3",
        DOWN,
        (PILE_ID, Cp56("time", default=_now_ms, doc="current time")),
        reply=0x55,
        doc="Sets the pile clock; expected daily.",
    ),
    FrameType(
        0x57,
        "billingModelSetReply",
        "计费模型应答",
        "9.6",
        UP,
        (PILE_ID, SET_RESULT),
        answers=0x58,
        doc="Answer to 0x58.",
    ),
    FrameType(
        0x58,
        "billingModelSet",
        "计费模型设置",
        "9.5",
        DOWN,
        BILLING_MODEL_SLOTS,
        reply=0x57,
        doc="Pushes a billing model to the pile unasked; same body as 0x0A.",
    ),
    FrameType(
        0x61,
        "groundLockData",
        "地锁数据上送",
        "10.1",
        UP,
        (
            PILE_ID,
            GUN_BIN,
            UInt("lockState", doc="0x00 (0) not in position, 0x55 (85) raised, 0xFF (255) lowered"),
            UInt("parkingState", doc="0x00 (0) no vehicle, 0xFF (255) vehicle parked"),
            UInt("lockBattery", scale="percent", doc="lock battery level"),
            UInt(
                "alarmState",
                doc="0x00 (0) normal, 0xFF (255) arm broken while idle, 0x55 (85) arm failed to move",
            ),
            Reserved(4),
        ),
        doc="Parking lock state: on every change, else every 5 minutes.",
    ),
    FrameType(
        0x62,
        "groundLockControl",
        "遥控地锁升锁与降锁命令",
        "10.2",
        DOWN,
        (
            PILE_ID,
            GUN_BIN,
            UInt("action", choices=(0x55, 0xFF), doc="0x55 (85) raise, 0xFF (255) lower"),
            Reserved(4),
        ),
        reply=0x63,
        match=("gunId",),
        doc="Raises or lowers a parking lock.",
    ),
    FrameType(
        0x63,
        "groundLockControlReply",
        "充电桩返回数据（上行）",
        "10.3",
        UP,
        (PILE_ID, GUN_BIN, UInt("result", doc="1 done, 0 failed"), Reserved(4)),
        answers=0x62,
        doc="Answer to 0x62.",
    ),
    FrameType(
        0x91,
        "remoteRebootReply",
        "远程重启应答",
        "11.2",
        UP,
        (PILE_ID, SET_RESULT),
        answers=0x92,
        doc="Answer to 0x92.",
    ),
    FrameType(
        0x92,
        "remoteReboot",
        "远程重启",
        "11.1",
        DOWN,
        (PILE_ID, UInt("control", choices=(1, 2), doc="1 now, 2 when idle")),
        reply=0x91,
        doc="Restarts the pile.",
    ),
    FrameType(
        0x93,
        "remoteUpdateReply",
        "远程更新应答",
        "11.4",
        UP,
        (
            PILE_ID,
            UInt(
                "status",
                doc="0 success, 1 wrong pile id, 2 program does not fit the pile model, 3 download timed out",
            ),
        ),
        answers=0x94,
        doc="Answer to 0x94, once the update was tried.",
    ),
    FrameType(
        0x94,
        "remoteUpdate",
        "远程更新",
        "11.3",
        DOWN,
        (
            PILE_ID,
            UInt("pileType", choices=(1, 2), doc="1 DC, 2 AC"),
            UInt("pilePower", n=2, doc="pile power (the spec names no unit)"),
            Ascii("serverAddress", n=16, doc="FTP server address"),
            UInt("serverPort", n=2, doc="FTP server port"),
            Ascii("username", n=16, doc="FTP user name"),
            Ascii("password", n=16, doc="FTP password"),
            Ascii("filePath", n=32, doc="path of the update file"),
            UInt("control", choices=(1, 2), doc="1 now, 2 when idle"),
            UInt("downloadTimeout", scale="minutes", doc="download time limit"),
        ),
        reply=0x93,
        doc="Software update by FTP: the pile downloads the file, checks it and updates itself.",
    ),
    FrameType(
        0xA1,
        "parallelStartChargingRequest",
        "充电桩主动申请并充充电",
        "12.1",
        UP,
        START_REQUEST_SLOTS + (MASTER_FLAG, PARALLEL_SEQ),
        doc="As 0x31, for parallel charging: each gun sends one, with the same parallelSeq.",
    ),
    FrameType(
        0xA2,
        "parallelStartChargingConfirm",
        "运营平台确认并充启动充电",
        "12.2",
        DOWN,
        START_CONFIRM_SLOTS + (PARALLEL_SEQ,),
        answers=0xA1,
        doc="As 0x32, for parallel charging; the pile starts only if every gun is accepted.",
    ),
    FrameType(
        0xA3,
        "parallelRemoteStartReply",
        "远程并充启机命令回复",
        "12.4",
        UP,
        REMOTE_START_REPLY_SLOTS + (MASTER_FLAG, PARALLEL_SEQ),
        answers=0xA4,
        doc="Answer to 0xA4. (The spec's frame table swaps the directions of 0xA3/0xA4; 12.4 is right.)",
    ),
    FrameType(
        0xA4,
        "parallelRemoteStart",
        "运营平台远程控制并充启机",
        "12.3",
        DOWN,
        REMOTE_START_SLOTS + (PARALLEL_SEQ,),
        reply=0xA3,
        match=("tradeSeq", "gunId", "parallelSeq"),
        doc="As 0x34, for parallel charging: one per gun, with the same parallelSeq.",
    ),
)

#: Frame type code → declaration.
CATALOGUE: dict[int, FrameType] = {f.code: f for f in _DECLARATIONS}

__all__ = [
    "BILLING_MODEL_SLOTS",
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
