"""DL/T 645-2007: the codec against the reference test vector, and Dlt645Source against the gateway simulator."""

from __future__ import annotations

import asyncio

import pytest

from collector import dlt645
from collector.dlt645 import (
    DATA_IDS,
    PREAMBLE,
    WILDCARD,
    Dlt645Link,
    Dlt645Source,
    Frame,
    FrameError,
    ValueFormatError,
    address_from_nameplate,
    decode_value,
    encode_value,
    nameplate_from_address,
    parse_frame,
    read_reply,
    read_request,
)
from collector.loadmodel import ManualClock, local_ms
from collector.sim import Dlt645GatewaySim, DltFault, SimDltMeter, StaticFeed
from collector.sources import SourceError

WIRE_ADDR = bytes.fromhex("123456781012")  # as on the wire, A0 first
REQUEST = bytes.fromhex("68 12 34 56 78 10 12 68 11 04 33 33 34 33 E8 16")
REPLY = bytes.fromhex("68 12 34 56 78 10 12 68 91 08 33 33 34 33 9A 78 56 34 08 16")
ENERGY = DATA_IDS[0x00010000]


def test_reference_request_bytes() -> None:
    assert read_request(WIRE_ADDR, 0x00010000, preamble=False) == REQUEST
    assert read_request(WIRE_ADDR, 0x00010000) == PREAMBLE + REQUEST


def test_reference_reply_decodes_to_012345_67_kwh() -> None:
    frame, used = parse_frame(PREAMBLE + REPLY)
    assert used == len(PREAMBLE + REPLY)
    assert frame == Frame(WIRE_ADDR, 0x91, bytes.fromhex("00 00 01 00 67 45 23 01"))
    assert decode_value(ENERGY, frame.data[4:]) == 12_345_670  # Wh
    assert read_reply(WIRE_ADDR, 0x00010000, bytes.fromhex("67452301"), preamble=False) == REPLY
    assert encode_value(ENERGY, 12_345_670) == bytes.fromhex("67452301")


def test_wildcard_checksums() -> None:
    req = read_request(WILDCARD, 0x00010000, preamble=False)
    assert req == bytes.fromhex("68 AA AA AA AA AA AA 68 11 04 33 33 34 33 AE 16")
    rep = read_reply(WILDCARD, 0x00010000, bytes.fromhex("67452301"), preamble=False)
    assert rep[-2] == 0xCE


def test_nameplate_is_the_wire_address_reversed() -> None:
    assert address_from_nameplate("121078563412") == WIRE_ADDR
    assert nameplate_from_address(WIRE_ADDR) == "121078563412"
    with pytest.raises(ValueError, match="12 decimal digits"):
        address_from_nameplate("12345")


def test_parser_handles_noise_partial_frames_and_corruption() -> None:
    assert parse_frame(REPLY[:9]) == (None, 0)  # header incomplete: keep everything
    assert parse_frame(REPLY[:-1]) == (None, 0)
    frame, used = parse_frame(b"\x00\x68\x01" + PREAMBLE + REPLY + b"\xfe")
    assert frame is not None and frame.control == 0x91 and used == 3 + 4 + len(REPLY)
    assert parse_frame(b"\xfe\xfe\x01") == (None, 3)
    bad_cs = REPLY[:-2] + bytes([REPLY[-2] ^ 1]) + REPLY[-1:]
    with pytest.raises(FrameError, match="checksum 0x09 does not match computed 0x08"):
        parse_frame(bad_cs)
    with pytest.raises(FrameError, match="end byte"):
        parse_frame(REPLY[:-1] + b"\x17")


@pytest.mark.parametrize("di", sorted(DATA_IDS))
def test_value_round_trip(di: int) -> None:
    d = DATA_IDS[di]
    samples = (
        [0, 1230, 99_990] if d.unit == "Wh" else [0, 1200, 219_900] if d.unit == "mV" else [0, 1234, 79_999]
    )
    if d.signed:
        samples += [-1234, -79_999]
    for v in samples:
        assert decode_value(d, encode_value(d, v)) == v, (d.quantity, v)
    assert decode_value(DATA_IDS[0x02030000], bytes.fromhex("451200")) == 124  # 0.1245 kW -> 124.5 W -> 124
    assert decode_value(DATA_IDS[0x02030000], bytes.fromhex("551200")) == 126  # 125.5 W -> 126 (half to even)
    with pytest.raises(ValueFormatError, match="not BCD"):
        decode_value(ENERGY, bytes.fromhex("6745230A"))


NAMEPLATE = "210987654321"
OTHER = "000000000007"
T0 = local_ms(2025, 1, 15, 8, 0)
VALUES = {"energy.import": 98_765_430, "voltage.l1": 219_900, "current.l1": -12_345, "power": 4_321}


async def _poll(src: Dlt645Source) -> dict[str, int]:
    return {s.quantity: s.value for s in await src.poll()}


async def test_end_to_end_through_the_gateway() -> None:
    clock = ManualClock(T0)
    meters = [
        SimDltMeter(NAMEPLATE, StaticFeed(VALUES)),
        SimDltMeter(OTHER, StaticFeed({"energy.import": 10})),
    ]
    async with Dlt645GatewaySim(meters, clock=clock, split_replies=True) as gw:
        link = Dlt645Link("127.0.0.1", gw.port, 1.0)
        a = Dlt645Source("88.1/ctl", "127.0.0.1", gw.port, NAMEPLATE, link=link, clock=clock.now_ms)
        b = Dlt645Source("88.1/oth", "127.0.0.1", gw.port, OTHER, link=link, dis=[0x00010000])
        samples = await a.poll()
        assert {s.quantity: s.value for s in samples} == VALUES
        assert {s.quantity: s.unit for s in samples} == {
            "energy.import": "Wh",
            "voltage.l1": "mV",
            "current.l1": "mA",
            "power": "W",
        }
        assert all(s.ts_ms == T0 and type(s.value) is int for s in samples)
        assert await _poll(b) == {"energy.import": 10}
        assert link.connects == 1 and gw.frames_in == 5
        await a.close()
        await b.close()
        assert link.users == 0


async def test_wildcard_address_reaches_the_only_meter() -> None:
    async with Dlt645GatewaySim([SimDltMeter(NAMEPLATE, StaticFeed(VALUES))], preamble=False) as gw:
        src = Dlt645Source("d", "127.0.0.1", gw.port, "AAAAAAAAAAAA", timeout=1.0)
        assert await _poll(src) == VALUES
        await src.close()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (DltFault.NO_RESPONSE, r"DI 00010000: no complete reply within 0.3 s"),
        (DltFault.PARTIAL, r"no complete reply within 0.3 s"),
        (DltFault.BAD_CHECKSUM, r"bad reply frame: checksum 0x.. does not match computed"),
        (DltFault.ERROR_REPLY, r"error reply 0x02 \(no requested data\)"),
        (DltFault.GARBAGE, r"garbage value: DI 00010000 value AB AB AB AB is not BCD"),
        (DltFault.WRONG_ADDRESS, r"reply from meter"),
    ],
)
async def test_bad_answers_raise_and_the_source_recovers(fault: DltFault, message: str) -> None:
    async with Dlt645GatewaySim([SimDltMeter(NAMEPLATE, StaticFeed(VALUES))]) as gw:
        src = Dlt645Source("d", "127.0.0.1", gw.port, NAMEPLATE, timeout=0.3)
        assert await _poll(src) == VALUES
        gw.inject(NAMEPLATE, fault, times=1)
        with pytest.raises(SourceError, match=f"dlt645 127.0.0.1:{gw.port} meter {NAMEPLATE} .*{message}"):
            await src.poll()
        assert await _poll(src) == VALUES
        assert src.failures == 1 and src.polls == 3
        await src.close()


async def test_absent_meter_and_closed_gateway() -> None:
    gw = Dlt645GatewaySim([SimDltMeter(NAMEPLATE, StaticFeed(VALUES))])
    await gw.start()
    absent = Dlt645Source("d", "127.0.0.1", gw.port, "999999999999", timeout=0.2)
    with pytest.raises(SourceError, match="no complete reply"):
        await absent.poll()
    port = gw.port
    await gw.stop()
    src = Dlt645Source("d", "127.0.0.1", port, NAMEPLATE, timeout=0.5)
    with pytest.raises(SourceError, match="cannot connect"):
        await src.poll()
    await absent.close()
    await src.close()
    await asyncio.sleep(0)


def test_unknown_data_identifiers_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="unsupported data identifiers"):
        Dlt645Source("d", "127.0.0.1", 1, NAMEPLATE, dis=[0x04000401])
    assert dlt645.describe_error(0x06) == "no requested data, password error / unauthorised"
