"""The frame catalogue: hand-checked vectors for all 51 frame types, the spec
samples, round-trip properties and the error messages of the codec.

Every body below was written by hand from the field table of the spec section
named in its comment (little-endian BIN values, BCD digits as on the wire), not
produced by the codec.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from ykcproxy.wire import fields
from ykcproxy.wire.codec import Codec, DecodeError, encode_frame
from ykcproxy.wire.fields import (
    SHANGHAI,
    Ascii,
    Bcd,
    Bits,
    Bool,
    Bytes,
    Cp56,
    Field,
    FieldError,
    GunBin,
    Hex,
    ListOf,
    Record,
    UInt,
    cp56_to_ms,
)
from ykcproxy.wire.framer import Framer, RawFrame
from ykcproxy.wire.frames import CATALOGUE, Direction

UP_CODES = {
    0x01, 0x03, 0x05, 0x09, 0x13, 0x15, 0x17, 0x19, 0x1B, 0x1D, 0x21, 0x23, 0x25, 0x31, 0x33,
    0x35, 0x3B, 0x41, 0x43, 0x45, 0x47, 0x51, 0x55, 0x57, 0x61, 0x63, 0x91, 0x93, 0xA1, 0xA3,
}  # fmt: skip
DOWN_CODES = {
    0x02, 0x04, 0x06, 0x0A, 0x12, 0x32, 0x34, 0x36, 0x40, 0x42, 0x44, 0x46, 0x48, 0x52, 0x56,
    0x58, 0x62, 0x92, 0x94, 0xA2, 0xA4,
}  # fmt: skip

PILE = "55031412782305"
#: pile id, gun 02, 2025-03-17 09:15:30, counter 0042
TRADE = "55031412782305022503170915300042"
CARD = "00000000D14B0A54"
CARD2 = "00000000E14C0A54"
VIN = "LSVAB2BL8KN012345"
VIN_HEX = "4C535641423242 4C384B4E30313233 3435"
VIN_REVERSED_HEX = "3534333231304E4B 384C4232424156 534C"

# Prices of the billing model bodies (0x0A, 0x58): four (electricity, service) pairs.
PRICES_HEX = (
    "40E20100 409C0000"  # sharp 123456, 40000
    "E0930400 30750000"  # peak 300000, 30000
    "801A0600 204E0000"  # flat 400000, 20000
    "20A10700 10270000"  # valley 500000, 10000
)
PRICES = {
    "sharpUnitPrice": 123456,
    "sharpServiceFee": 40000,
    "peakUnitPrice": 300000,
    "peakServiceFee": 30000,
    "flatUnitPrice": 400000,
    "flatServiceFee": 20000,
    "valleyUnitPrice": 500000,
    "valleyServiceFee": 10000,
}

#: 2020-03-16 17:14:47.000 +08:00 (a Monday), in unix ms.
T_START = 1584350087000
#: 2020-03-16 18:02:03.250 +08:00
T_END = 1584352923250
#: 2020-03-16 18:02:05.000 +08:00
T_DEAL = 1584352925000
#: 2024-02-29 23:59:59.999 +08:00 (a Thursday)
T_LEAP = 1709222399999
#: 2021-01-01 00:00:00.000 +08:00 (a Friday)
T_2021 = 1609430400000

#: code → (body hex, decoded message)
VECTORS: dict[int, tuple[str, dict[str, Any]]] = {
    # 6.1: pile type 1 (AC), 2 guns, protocol 0x10, "V4.1.50", network 3, ICCID with hex nibbles, carrier 4
    0x01: (
        PILE + "01 02 10 56342E312E353000 03 898604D11722D0348606 04",
        {
            "id": PILE,
            "elcType": 1,
            "guns": 2,
            "protocolVersion": 16,
            "softwareVersion": "V4.1.50",
            "network": 3,
            "sim": "898604D11722D0348606",
            "operator": 4,
        },
    ),
    # 6.2: 0x01 = login failed
    0x02: (PILE + "01", {"id": PILE, "result": False}),
    # 6.3
    0x03: (PILE + "07 01", {"id": PILE, "gun": "07", "gunStatus": 1}),
    # 6.4
    0x04: (PILE + "07 00", {"id": PILE, "gun": "07", "response": 0}),
    # 6.5
    0x05: (PILE + "0123", {"id": PILE, "billingModelCode": "0123"}),
    # 6.6: 0x01 = not consistent
    0x06: (PILE + "0123 01", {"id": PILE, "billingModelCode": "0123", "result": False}),
    # 6.7
    0x09: (PILE, {"id": PILE}),
    # 6.8: model 0100, prices, accrual ratio 5, rates 0 1 2 3 repeated
    0x0A: (
        PILE + "0100" + PRICES_HEX + "05" + "00010203" * 12,
        {"id": PILE, "billingModelCode": "0100", **PRICES, "accrualRatio": 5, "rateList": [0, 1, 2, 3] * 12},
    ),
    # 7.1
    0x12: (PILE + "02", {"id": PILE, "gunId": "02"}),
    # 7.2
    0x13: (
        TRADE
        + PILE
        + "02 03 00 01"  # gun, charging, not in holster, plugged
        + "DD0E D204"  # 380.5 V, 123.4 A
        + "4B 0102030405060708 37 50"  # line 25 °C, line code, SOC 55, pack 30 °C
        + "5A00 2C01"  # 90 min, 300 min
        + "40E20100 D0FB0100 80841E00"  # 12.3456 kWh, 13.0000 kWh, 200.0000 yuan
        + "0110",  # faults: bit 0 and bit 12
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "status": 3,
            "reset": 0,
            "plugged": 1,
            "ov": 3805,
            "oc": 1234,
            "lineTemp": 75,
            "lineCode": "0102030405060708",
            "soc": 55,
            "bpTopTemp": 80,
            "accumulatedChargingTime": 90,
            "remainingTime": 300,
            "chargingDegrees": 123456,
            "lossyChargingDegrees": 130000,
            "chargedAmount": 2000000,
            "hardwareFailure": 0x1001,
        },
    ),
    # 7.3
    0x15: (
        TRADE
        + PILE
        + "02 010100 03 DC05 AC0D"  # version, LiFePO4, 150.0 Ah, 350.0 V
        + "4341544C A1B2C3D4"  # "CATL", serial
        + "23 0B 0A 701101 01 00"  # 2020-11-10, 70000 cycles, owned, reserved
        + VIN_HEX
        + "100A0BDF07FFFFFF",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "bmsProtocolVersion": "010100",
            "bmsBatteryType": 3,
            "bmsRatedCapacity": 1500,
            "bmsRatedVoltage": 3500,
            "bmsBatteryVendor": "CATL",
            "bmsBatterySerial": "A1B2C3D4",
            "bmsProductionYear": 35,
            "bmsProductionMonth": 11,
            "bmsProductionDay": 10,
            "bmsChargeCount": 70000,
            "bmsPropertyRight": 1,
            "bmsVin": VIN,
            "bmsSoftwareVersion": "100A0BDF07FFFFFF",
        },
    ),
    # 7.4
    0x17: (
        TRADE + PILE + "02 A401 C409 5802 0410 69 C801 100E 4C1D D007 6419 A00F",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "bmsCellMaxVoltage": 420,
            "bmsMaxCurrent": 2500,
            "bmsNominalEnergy": 600,
            "bmsMaxTotalVoltage": 4100,
            "bmsMaxTemperature": 105,
            "bmsSoc": 456,
            "bmsCurrentVoltage": 3600,
            "pileMaxOutputVoltage": 7500,
            "pileMinOutputVoltage": 2000,
            "pileMaxOutputCurrent": 6500,
            "pileMinOutputCurrent": 4000,
        },
    ),
    # 7.5
    0x19: (
        TRADE + PILE + "02 5F 5401 9A01 46 55 7800 F401 78563412",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "bmsSoc": 95,
            "bmsBatteryPackLowestVoltage": 340,
            "bmsBatteryPackHighestVoltage": 410,
            "bmsBatteryPackLowestTemperature": 70,
            "bmsBatteryPackHighestTemperature": 85,
            "cumulativeChargingDuration": 120,
            "outputPower": 500,
            "chargingUnitId": 0x12345678,
        },
    ),
    # 7.6: eight bytes of 2-bit fields, first field in the low bits of the first byte
    0x1B: (
        TRADE
        + PILE
        + "02"
        + "09"  # chmTimeout00 = 1, chmTimeoutAA = 2
        + "06"  # cmlTimeout = 2, croTimeout = 1
        + "05"  # ccsTimeout = 1, cstTimeout = 1
        + "AA"  # csdTimeout = 2, bmsOther = 0b101010
        + "01"  # brmTimeout = 1
        + "0A"  # bcpTimeout = 2, broTimeout = 2
        + "19"  # bcsTimeout = 1, bclTimeout = 2, bstTimeout = 1
        + "56",  # bsdTimeout = 2, chargerOther = 0b010101
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "chmTimeout00": 1,
            "chmTimeoutAA": 2,
            "cmlTimeout": 2,
            "croTimeout": 1,
            "ccsTimeout": 1,
            "cstTimeout": 1,
            "csdTimeout": 2,
            "bmsOther": 42,
            "brmTimeout": 1,
            "bcpTimeout": 2,
            "broTimeout": 2,
            "bcsTimeout": 1,
            "bclTimeout": 2,
            "bstTimeout": 1,
            "bsdTimeout": 2,
            "chargerOther": 21,
        },
    ),
    # 7.7
    0x1D: (
        TRADE + PILE + "02 41 0480 06",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "bmsStopReason": 0x41,
            "bmsFaultReason": 0x8004,
            "bmsErrorReason": 6,
        },
    ),
    # 7.8
    0x21: (
        TRADE + PILE + "02 10 0102 09",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "chargerStopReason": 16,
            "chargerFaultReason": 0x0201,
            "chargerErrorReason": 9,
        },
    ),
    # 7.9: highest cell 4.12 V in group 3 → 0x319C
    0x23: (
        TRADE + PILE + "02 A00F B80B 02 6E0F 1C0C 9C31 3C 2D00 780F 120C 2100",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "bmsVoltageDemand": 4000,
            "bmsCurrentDemand": 3000,
            "bmsChargeMode": 2,
            "bmsMeasuredVoltage": 3950,
            "bmsMeasuredCurrent": 3100,
            "bmsMaxCellVoltageAndGroup": (3 << 12) | 412,
            "bmsSoc": 60,
            "bmsRemainingTime": 45,
            "pileOutputVoltage": 3960,
            "pileOutputCurrent": 3090,
            "accumulatedChargingTime": 33,
        },
    ),
    # 7.10: states 0x49 = 01 | 10<<2 | 00<<4 | 01<<6; 0x16 = 10 | 01<<2 | 01<<4
    0x25: (
        TRADE + PILE + "02 0B 5A 04 41 07 49 16",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "bmsMaxCellVoltageNo": 11,
            "bmsMaxBatteryTemperature": 90,
            "maxTemperaturePointNo": 4,
            "minBatteryTemperature": 65,
            "minTemperaturePointNo": 7,
            "cellVoltageState": 1,
            "socState": 2,
            "overCurrentState": 0,
            "overTemperatureState": 1,
            "insulationState": 2,
            "connectorState": 1,
            "chargeAllowed": 1,
        },
    ),
    # 8.1: VIN start with password; the VIN is reversed on the wire
    0x31: (
        PILE + "02 03 01" + CARD + "30313233343536373839616263646566" + VIN_REVERSED_HEX,
        {
            "id": PILE,
            "gunId": "02",
            "startMode": 3,
            "needPassword": 1,
            "account": CARD,
            "password": "0123456789abcdef",
            "vin": VIN,
        },
    ),
    # 8.2: refused, reason 0x0B; balance 1000.00
    0x32: (
        TRADE + PILE + "02 0000001000000573 A0860100 00 0B",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "logicCard": "0000001000000573",
            "balance": 100000,
            "result": 0,
            "reason": 11,
        },
    ),
    # 8.4: started
    0x33: (
        TRADE + PILE + "02 01 00",
        {"tradeSeq": TRADE, "id": PILE, "gunId": "02", "result": True, "reason": 0},
    ),
    # 8.3
    0x34: (
        TRADE + PILE + "02 0000001000000573" + CARD + "A0860100",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "logicCard": "0000001000000573",
            "physicalCard": CARD,
            "balance": 100000,
        },
    ),
    # 8.6: failed, gun not charging
    0x35: (PILE + "02 00 02", {"id": PILE, "gunId": "02", "result": False, "reason": 2}),
    # 8.5
    0x36: (PILE + "02", {"id": PILE, "gunId": "02"}),
    # 8.7: times carry the day of week (Monday) in the top bits of the day byte
    0x3B: (
        TRADE
        + PILE
        + "02"
        + "98B70E11300314"  # start 2020-03-16 17:14:47.000
        + "B20C0212300314"  # end 2020-03-16 18:02:03.250
        + "D0FB0100 39300000 D4300000 7A3F0000"  # sharp
        + "B0AD0100 204E0000 E84E0000 CC560000"  # peak
        + "905F0100 30750000 5C760000 866A0000"  # flat
        + "70110100 409C0000 D09D0000 786E0000"  # valley
        + "0504030201 0605040201"  # meter readings (5 bytes)
        + "C98F0100 E8930100 686E0100"  # total, lossy total, amount
        + VIN_HEX  # normal order here
        + "05"  # VIN start
        + "88130212300314"  # 2020-03-16 18:02:05.000
        + "45"
        + CARD,
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "startAt": T_START,
            "endAt": T_END,
            "sharpUnitPrice": 130000,
            "sharpElectricCharge": 12345,
            "lossySharpElectricCharge": 12500,
            "sharpPrice": 16250,
            "peakUnitPrice": 110000,
            "peakElectricCharge": 20000,
            "lossyPeakElectricCharge": 20200,
            "peakPrice": 22220,
            "flatUnitPrice": 90000,
            "flatElectricCharge": 30000,
            "lossyFlatElectricCharge": 30300,
            "flatPrice": 27270,
            "valleyUnitPrice": 70000,
            "valleyElectricCharge": 40000,
            "lossyValleyElectricCharge": 40400,
            "valleyPrice": 28280,
            "initialMeterReading": 0x0102030405,
            "finalMeterReading": 0x0102040506,
            "totalElectricCharge": 102345,
            "lossyTotalElectricCharge": 103400,
            "consumptionAmount": 93800,
            "vin": VIN,
            "startType": 5,
            "transactionDateTime": T_DEAL,
            "stopReason": 0x45,
            "physicalCardNumber": CARD,
        },
    ),
    # 8.8: no pile id in the body
    0x40: (TRADE + "01", {"tradeSeq": TRADE, "result": 1}),
    # 8.10
    0x41: (PILE + CARD + "02", {"id": PILE, "physicalCard": CARD, "result": 2}),
    # 8.9: balance 100.00
    0x42: (
        PILE + "02" + CARD + "10270000",
        {"id": PILE, "gunId": "02", "physicalCard": CARD, "balance": 10000},
    ),
    # 8.12
    0x43: (PILE + "00 02", {"id": PILE, "result": 0, "reason": 2}),
    # 8.11: count byte 2, then (logical, physical) pairs
    0x44: (
        PILE + "02" + "1000000000000001" + CARD + "1000000000000002" + "12345678ABCDEF01",
        {
            "id": PILE,
            "cards": [
                {"logicCard": "1000000000000001", "physicalCard": CARD},
                {"logicCard": "1000000000000002", "physicalCard": "12345678ABCDEF01"},
            ],
        },
    ),
    # 8.14: no count byte; (card, result, reason) until the end
    0x45: (
        PILE + CARD + "01 00" + CARD2 + "00 01",
        {
            "id": PILE,
            "cards": [
                {"physicalCard": CARD, "result": 1, "reason": 0},
                {"physicalCard": CARD2, "result": 0, "reason": 1},
            ],
        },
    ),
    # 8.13: count byte 3, then physical cards
    0x46: (
        PILE + "03" + CARD + CARD2 + "AABBCCDDEEFF0011",
        {"id": PILE, "cards": [CARD, CARD2, "AABBCCDDEEFF0011"]},
    ),
    # 8.16: no count byte; (card, result) until the end
    0x47: (
        PILE + CARD + "01" + CARD2 + "00",
        {
            "id": PILE,
            "cards": [{"physicalCard": CARD, "result": 1}, {"physicalCard": CARD2, "result": 0}],
        },
    ),
    # 8.15: count byte 1
    0x48: (PILE + "01" + CARD, {"id": PILE, "cards": [CARD]}),
    # 9.2
    0x51: (PILE + "01", {"id": PILE, "result": 1}),
    # 9.1: disabled, 75 %
    0x52: (PILE + "01 4B", {"id": PILE, "allowWork": 1, "maxOutputPower": 75}),
    # 9.4: 59999 ms = 0xEA5F, 23:59, day 29 | Thursday (4) << 5 = 0x9D, February, 2024
    0x55: (PILE + "5FEA3B179D0218", {"id": PILE, "time": T_LEAP}),
    # 9.3: day 1 | Friday (5) << 5 = 0xA1, January, 2021
    0x56: (PILE + "00000000A10115", {"id": PILE, "time": T_2021}),
    # 9.6
    0x57: (PILE + "00", {"id": PILE, "result": 0}),
    # 9.5: same layout as 0x0A
    0x58: (
        PILE + "0200" + PRICES_HEX + "00" + "03" * 16 + "02" * 16 + "01" * 8 + "00" * 8,
        {
            "id": PILE,
            "billingModelCode": "0200",
            **PRICES,
            "accrualRatio": 0,
            "rateList": [3] * 16 + [2] * 16 + [1] * 8 + [0] * 8,
        },
    ),
    # 10.1: gun 12 as the BIN byte 0x0C; 4 reserved bytes
    0x61: (
        PILE + "0C 55 FF 50 55 00000000",
        {
            "id": PILE,
            "gunId": "12",
            "lockState": 0x55,
            "parkingState": 0xFF,
            "lockBattery": 80,
            "alarmState": 0x55,
        },
    ),
    # 10.2: lower
    0x62: (PILE + "01 FF 00000000", {"id": PILE, "gunId": "01", "action": 255}),
    # 10.3: gun 10 = 0x0A
    0x63: (PILE + "0A 01 00000000", {"id": PILE, "gunId": "10", "result": 1}),
    # 11.2
    0x91: (PILE + "01", {"id": PILE, "result": 1}),
    # 11.1: when idle
    0x92: (PILE + "02", {"id": PILE, "control": 2}),
    # 11.4: download timed out
    0x93: (PILE + "03", {"id": PILE, "status": 3}),
    # 11.3: ASCII fields zero-padded to 16/16/16/32 bytes
    0x94: (
        PILE
        + "01 7800"  # DC, power 120
        + "3131342E35352E3131342E3137340000"  # "114.55.114.174"
        + "4908"  # port 2121
        + "7372"
        + "00" * 14  # "sr"
        + "7372313233"
        + "00" * 11  # "sr123"
        + "41432D374B572F3230313830313331"
        + "00" * 17  # "AC-7KW/20180131"
        + "02 3C",
        {
            "id": PILE,
            "pileType": 1,
            "pilePower": 120,
            "serverAddress": "114.55.114.174",
            "serverPort": 2121,
            "username": "sr",
            "password": "sr123",
            "filePath": "AC-7KW/20180131",
            "control": 2,
            "downloadTimeout": 60,
        },
    ),
    # 12.1: short VIN "ABC123": padded, then the 17 bytes reversed; auxiliary gun
    0xA1: (
        PILE + "03 01 00" + CARD + "00" * 16 + "00" * 11 + "333231434241" + "01 201029112801",
        {
            "id": PILE,
            "gunId": "03",
            "startMode": 1,
            "needPassword": 0,
            "account": CARD,
            "password": "",
            "vin": "ABC123",
            "masterFlag": 1,
            "parallelSeq": "201029112801",
        },
    ),
    # 12.2: accepted, balance 655.36
    0xA2: (
        TRADE + PILE + "02 1000000000000573 00000100 01 00 201029112801",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "logicCard": "1000000000000573",
            "balance": 65536,
            "result": 1,
            "reason": 0,
            "parallelSeq": "201029112801",
        },
    ),
    # 12.4: failed, gun not plugged, master gun
    0xA3: (
        TRADE + PILE + "02 00 05 00 201029112801",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "result": False,
            "reason": 5,
            "masterFlag": 0,
            "parallelSeq": "201029112801",
        },
    ),
    # 12.3
    0xA4: (
        TRADE + PILE + "02 0000001000000573" + CARD + "A0860100 250317091530",
        {
            "tradeSeq": TRADE,
            "id": PILE,
            "gunId": "02",
            "logicCard": "0000001000000573",
            "physicalCard": CARD,
            "balance": 100000,
            "parallelSeq": "250317091530",
        },
    ),
}


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


class CatalogueTests(unittest.TestCase):
    def test_codes_and_directions(self) -> None:
        self.assertEqual(len(CATALOGUE), 51)
        self.assertEqual(set(CATALOGUE), UP_CODES | DOWN_CODES)
        for code, frame in CATALOGUE.items():
            self.assertEqual(frame.code, code)
            expected = Direction.UP if code in UP_CODES else Direction.DOWN
            self.assertEqual(frame.direction, expected, f"0x{code:02x}")

    def test_replies_and_answers_agree(self) -> None:
        commands = {
            0x12: 0x13, 0x34: 0x33, 0x36: 0x35, 0x42: 0x41, 0x44: 0x43, 0x46: 0x45, 0x48: 0x47,
            0x52: 0x51, 0x56: 0x55, 0x58: 0x57, 0x62: 0x63, 0x92: 0x91, 0x94: 0x93, 0xA4: 0xA3,
        }  # fmt: skip
        self.assertEqual({c: f.reply for c, f in CATALOGUE.items() if f.reply is not None}, commands)
        for command, reply in commands.items():
            self.assertEqual(CATALOGUE[reply].answers, command)
            for key in CATALOGUE[command].match:
                self.assertIn(key, CATALOGUE[command].keys)
                self.assertIn(key, CATALOGUE[reply].keys)
        answers = {0x02: 0x01, 0x04: 0x03, 0x06: 0x05, 0x0A: 0x09, 0x32: 0x31, 0x40: 0x3B, 0xA2: 0xA1}
        for code, request in answers.items():
            self.assertEqual(CATALOGUE[code].answers, request)
        self.assertEqual(CATALOGUE[0x34].match, ("tradeSeq", "gunId"))
        self.assertEqual(CATALOGUE[0x36].match, ("gunId",))
        self.assertEqual(CATALOGUE[0x12].match, ("gunId",))

    def test_body_keys_have_no_duplicates(self) -> None:
        for code, frame in CATALOGUE.items():
            self.assertEqual(len(frame.keys), len(set(frame.keys)), f"0x{code:02x}")

    def test_0x40_has_no_pile_id(self) -> None:
        self.assertEqual(CATALOGUE[0x40].keys, ("tradeSeq", "result"))


class VectorTests(unittest.TestCase):
    codec = Codec()

    def test_every_frame_type_has_a_vector(self) -> None:
        self.assertEqual(set(VECTORS), set(CATALOGUE))

    def test_keys_in_wire_order(self) -> None:
        for code, (_, expected) in VECTORS.items():
            self.assertEqual(tuple(expected), CATALOGUE[code].keys, f"0x{code:02x}")

    def test_decode(self) -> None:
        for code, (body, expected) in VECTORS.items():
            self.assertEqual(self.codec.decode_body(code, unhex(body)), expected, f"0x{code:02x}")

    def test_encode(self) -> None:
        for code, (body, expected) in VECTORS.items():
            self.assertEqual(self.codec.encode_body(code, expected).hex(), unhex(body).hex(), f"0x{code:02x}")

    def test_platform_frames_pass_their_own_check(self) -> None:
        """What the codec decodes from a platform frame is a valid REST body."""
        for code in DOWN_CODES:
            expected = VECTORS[code][1]
            self.assertEqual(self.codec.check(code, expected), expected, f"0x{code:02x}")

    def test_spec_samples(self) -> None:
        """The two spec samples with a correct CRC, through the framer and codec."""
        samples = [
            ("680c000000025503141278230500da4c", 0x02, 0, {"id": PILE, "result": True}),
            (
                "680ece040006550314127823050000008e2f",
                0x06,
                0x04CE,
                {"id": PILE, "billingModelCode": "0000", "result": True},
            ),
        ]
        for text, code, seq, expected in samples:
            raw = bytes.fromhex(text)
            (frame,) = Framer().feed(raw)
            assert isinstance(frame, RawFrame)
            self.assertEqual((frame.code, frame.seq, frame.encrypted), (code, seq, False))
            message = self.codec.decode_body(frame.code, frame.body)
            self.assertEqual(message, expected)
            body = self.codec.encode_body(code, self.codec.check(code, message))
            self.assertEqual(encode_frame(code, seq, body, frame.crc_order), raw)


class ErrorTests(unittest.TestCase):
    codec = Codec()

    def assertCheckError(self, code: int, message: dict[str, Any], text: str) -> None:
        error = self.assertRaises(FieldError, self.codec.check, code, message)
        self.assertEqual(str(error), text)

    def test_wrong_length_of_fixed_body(self) -> None:
        body = unhex(VECTORS[0x03][0])
        for wrong in (body[:-1], body + b"\0"):
            error = self.assertRaises(DecodeError, self.codec.decode_body, 0x03, wrong)
            self.assertIn("frame 0x03", str(error))
            self.assertIn("expected 9", str(error))

    def test_partial_card_in_0x45(self) -> None:
        body = unhex(VECTORS[0x45][0])[:-3]
        error = self.assertRaises(DecodeError, self.codec.decode_body, 0x45, body)
        self.assertIn("cards", str(error))

    def test_count_byte_disagrees(self) -> None:
        body = bytearray(unhex(VECTORS[0x46][0]))
        body[7] = 4
        self.assertRaises(DecodeError, self.codec.decode_body, 0x46, bytes(body))

    def test_missing_field(self) -> None:
        message = dict(VECTORS[0x34][1])
        del message["tradeSeq"]
        self.assertCheckError(0x34, message, "tradeSeq: is required")

    def test_non_digit_bcd(self) -> None:
        message = {**VECTORS[0x36][1], "id": "5503141278230A"}
        self.assertCheckError(0x36, message, "id: must be BCD: decimal digits only, got '5503141278230A'")

    def test_rate_list_of_47(self) -> None:
        message = {**VECTORS[0x58][1], "rateList": [0] * 47}
        self.assertCheckError(0x58, message, "rateList: must have exactly 48 values, got 47")

    def test_rate_out_of_range(self) -> None:
        message = {**VECTORS[0x0A][1], "rateList": [0] * 47 + [4]}
        self.assertCheckError(0x0A, message, "rateList[47]: must be between 0 and 3, got 4")

    def test_too_many_cards_for_0x44(self) -> None:
        card = {"logicCard": "1", "physicalCard": "D14B0A54"}
        message = {"id": PILE, "cards": [card] * 16}
        self.assertCheckError(0x44, message, "cards: must have 1 to 15 entries, got 16")

    def test_bad_card_in_list_is_named(self) -> None:
        message = {"id": PILE, "cards": [CARD, "XYZ"]}
        self.assertCheckError(0x46, message, "cards[1]: must be hexadecimal digits, got 'XYZ'")

    def test_ascii_too_long_in_0x94(self) -> None:
        message = {**VECTORS[0x94][1], "serverAddress": "a" * 17}
        self.assertCheckError(0x94, message, "serverAddress: must be at most 16 characters, got 17")

    def test_port_too_big(self) -> None:
        message = {**VECTORS[0x94][1], "serverPort": 65536}
        self.assertCheckError(0x94, message, "serverPort: must be between 0 and 65535, got 65536")

    def test_choices_and_ranges(self) -> None:
        self.assertCheckError(
            0x52,
            {"id": PILE, "allowWork": 0, "maxOutputPower": 29},
            "maxOutputPower: must be between 30 and 100, got 29",
        )
        self.assertCheckError(
            0x52,
            {"id": PILE, "allowWork": 2, "maxOutputPower": 50},
            "allowWork: must be one of [0, 1], got 2",
        )
        self.assertCheckError(
            0x62, {"id": PILE, "gunId": "1", "action": 1}, "action: must be one of [85, 255], got 1"
        )
        self.assertCheckError(0x92, {"id": PILE, "control": 0}, "control: must be one of [1, 2], got 0")
        self.assertCheckError(0x02, {"id": PILE, "result": 0}, "result: must be a boolean, not an integer")

    def test_rest_conveniences(self) -> None:
        """Short card numbers are padded; optional fields get their defaults."""
        checked = self.codec.check(
            0x42, {"id": PILE, "gunId": "01", "physicalCard": "d14b0a54", "balance": 5}
        )
        self.assertEqual(checked["physicalCard"], CARD)
        checked = self.codec.check(0x0A, {k: v for k, v in VECTORS[0x0A][1].items() if k != "accrualRatio"})
        self.assertEqual(checked["accrualRatio"], 0)
        before = datetime.datetime.now(datetime.UTC).timestamp() * 1000
        checked = self.codec.check(0x56, {"id": PILE})
        self.assertTrue(before - 1000 <= checked["time"] <= before + 60_000)
        self.assertEqual(self.codec.check(0x62, {"id": PILE, "gunId": "7", "action": 85})["gunId"], "07")


class Cp56Tests(unittest.TestCase):
    def test_spec_example(self) -> None:
        """98 B7 0E 11 10 03 14 is 2020-03-16 17:14:47.000 in Beijing time."""
        moment = datetime.datetime(2020, 3, 16, 17, 14, 47, tzinfo=SHANGHAI)
        self.assertEqual(int(moment.timestamp() * 1000), T_START)
        self.assertEqual(cp56_to_ms(unhex("98B70E11100314"), SHANGHAI), T_START)
        # Through a whole frame body as well:
        message = Codec().decode_body(0x56, unhex(PILE + "98B70E11100314"))
        self.assertEqual(message["time"], T_START)

    def test_zeros_are_none(self) -> None:
        self.assertIsNone(cp56_to_ms(bytes(7), SHANGHAI))
        codec = Codec()
        self.assertIsNone(codec.decode_body(0x55, unhex(PILE) + bytes(7))["time"])
        self.assertEqual(codec.encode_body(0x55, {"id": PILE, "time": None}), unhex(PILE) + bytes(7))

    def test_invalid_dates_are_none(self) -> None:
        # 60000 ms in the minute, February 30th, month 13
        for raw in ("60EA0000010114", "00000000 1E0214", "00000000010D14"):
            self.assertIsNone(cp56_to_ms(unhex(raw), SHANGHAI), raw)

    def test_range_round_trips(self) -> None:
        codec = Codec()
        for ms in (fields._CP56_MIN_MS, fields._CP56_MAX_MS):
            body = codec.encode_body(0x56, codec.check(0x56, {"id": PILE, "time": ms}))
            self.assertEqual(codec.decode_body(0x56, body)["time"], ms)
        self.assertRaises(FieldError, codec.check, 0x56, {"id": PILE, "time": fields._CP56_MAX_MS + 1})


# -- property: random valid messages round-trip --------------------------------------

_ASCII = st.characters(min_codepoint=1, max_codepoint=127)


def _digits(n: int, lo: int = 0) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=lo, max_size=n)


def value_strategy(field: Field) -> st.SearchStrategy[Any]:
    """Valid JSON values of ``field``, as a REST client might send them."""
    if isinstance(field, Hex):
        text = st.text(
            alphabet="0123456789abcdefABCDEF", min_size=1 if field.pad else 2 * field.n, max_size=2 * field.n
        )
        return text
    if isinstance(field, Bcd):
        return _digits(2 * field.n, 1 if field.pad else 2 * field.n)
    if isinstance(field, UInt):
        if field.choices:
            return st.sampled_from(field.choices)
        return st.integers(field.lo, field.maximum)
    if isinstance(field, Bool):
        return st.booleans()
    if isinstance(field, Ascii):
        return st.text(alphabet=_ASCII, max_size=field.n)
    if isinstance(field, GunBin):
        return st.integers(0, 255).map(str)
    if isinstance(field, Cp56):
        return st.none() | st.integers(fields._CP56_MIN_MS, fields._CP56_MAX_MS)
    if isinstance(field, Bytes):
        return st.lists(st.integers(0, field.hi), min_size=field.n, max_size=field.n)
    raise AssertionError(f"no strategy for {field!r}")


def message_strategy(code: int) -> st.SearchStrategy[dict[str, Any]]:
    frame = CATALOGUE[code]
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for slot in frame.slots:
        if isinstance(slot, Bits):
            for name, width in slot.parts:
                if name:
                    parts[name] = st.integers(0, (1 << width) - 1)
        elif isinstance(slot, Field):
            parts[slot.name] = value_strategy(slot)
    tail: ListOf | None = frame.tail
    if tail is not None:
        item = tail.item
        if isinstance(item, Record):
            element: st.SearchStrategy[Any] = st.fixed_dictionaries(
                {f.name: value_strategy(f) for f in item.fields}
            )
        else:
            element = value_strategy(item)
        parts[tail.name] = st.lists(element, min_size=tail.lo, max_size=tail.hi)
    return st.fixed_dictionaries(parts)


class RoundTripTests(unittest.TestCase):
    codec = Codec()

    def round_trip(self, code: int, message: dict[str, Any]) -> None:
        checked = self.codec.check(code, message)
        body = self.codec.encode_body(code, checked)
        decoded = self.codec.decode_body(code, body)
        self.assertEqual(decoded, checked)
        self.assertEqual(self.codec.encode_body(code, decoded), body)
        self.assertEqual(self.codec.check(code, decoded), checked)
        frame = encode_frame(code, 7, body)
        (raw,) = Framer().feed(frame)
        assert isinstance(raw, RawFrame)
        self.assertEqual(raw.body, body)


def _add_round_trip_test(code: int) -> None:
    @settings(max_examples=40, deadline=None)
    @given(message=message_strategy(code))
    def test(self: RoundTripTests, message: dict[str, Any]) -> None:
        self.round_trip(code, message)

    _attach(
        RoundTripTests,
        test,
        f"test_round_trip_{code:02x}",
        f"Random valid 0x{code:02x} messages round-trip byte-exactly.",
    )


def _attach(cls: type, test: Any, name: str, doc: str) -> None:
    """Add a generated per-frame-type test to ``cls`` under ``name``."""
    test.__name__ = name
    test.__doc__ = doc
    setattr(cls, name, test)


for _code in sorted(CATALOGUE):
    _add_round_trip_test(_code)
del _code


def interpreted_decode(codec: Codec, code: int, body: bytes) -> dict[str, Any]:
    """The fixed part of a body decoded field by field with each declaration's putter."""
    frame = CATALOGUE[code]
    layout = struct.Struct("<" + "".join(s.fmt for s in frame.slots))
    out: dict[str, Any] = {}
    fields_ = [s for s in frame.slots if isinstance(s, Field)]
    for field, raw in zip(fields_, layout.unpack_from(body)):
        field.putter(codec.ctx)(out, raw)
    return out


class CompiledDecoderTests(unittest.TestCase):
    """The generated decoders agree with the declarations they are compiled from."""

    codec = Codec()

    def test_keys_in_declaration_order(self) -> None:
        for code, frame in CATALOGUE.items():
            if frame.tail is not None:
                continue
            size = struct.calcsize("<" + "".join(s.fmt for s in frame.slots))
            decoded = self.codec.decode_body(code, bytes(size))
            self.assertEqual(list(decoded), list(interpreted_decode(self.codec, code, bytes(size))))


def _add_compiled_decoder_test(code: int) -> None:
    frame = CATALOGUE[code]
    size = struct.calcsize("<" + "".join(s.fmt for s in frame.slots))

    @settings(max_examples=30, deadline=None)
    @given(body=st.binary(min_size=size, max_size=size))
    def test(self: CompiledDecoderTests, body: bytes) -> None:
        expected = interpreted_decode(self.codec, code, body)
        tail = frame.tail
        if tail is not None:  # one all-zero element
            body += (b"\x01" if tail.counted else b"") + bytes(tail.item_size)
        decoded = self.codec.decode_body(code, body)
        self.assertEqual({k: decoded[k] for k in expected}, expected)
        if tail is not None:
            self.assertEqual(len(decoded[tail.name]), 1)

    doc = f"Arbitrary bytes of 0x{code:02x} decode as its fields' own putters say."
    _attach(CompiledDecoderTests, test, f"test_any_bytes_{code:02x}", doc)


for _code in sorted(CATALOGUE):
    _add_compiled_decoder_test(_code)
del _code
