"""What the integrity tests need to know about LevelDB's files: their kinds, and how to damage a table block
so that its CRC still matches but its snappy contents do not decode."""

from __future__ import annotations

from pathlib import Path

_POLY = 0x82F63B78
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c_extend(crc: int, data: bytes) -> int:
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def first_block(table: bytes) -> tuple[int, int]:
    """(size, type) of the table's first block, which starts at offset 0: found where the 5-byte trailer's
    masked CRC-32C over contents + type byte matches."""
    crc = 0
    for n in range(len(table) - 5):
        t = table[n]
        if n > 0 and t in (0, 1):
            c = crc32c_extend(crc, bytes([t]))
            if masked(c).to_bytes(4, "little") == table[n + 1 : n + 5]:
                return n, t
        crc = crc32c_extend(crc, table[n : n + 1])
    raise ValueError("no block trailer found")


def break_compressed_block(path: Path) -> None:
    """Make the first data block of ``path`` undecodable snappy with a CRC that still matches."""
    data = bytearray(path.read_bytes())
    size, kind = first_block(bytes(data))
    if kind != 1:
        raise ValueError("the first block is not snappy-compressed")
    # Keep the uncompressed-length preamble (1-3 bytes); from byte 4 on, a copy tag whose offset points far
    # before the start of the output: the decompressor refuses it.
    for i in range(4, min(size, 40)):
        data[i] = 0xFF
    c = crc32c_extend(crc32c_extend(0, bytes(data[:size])), b"\x01")
    data[size + 1 : size + 5] = masked(c).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def file_kind(name: str) -> str:
    if name.endswith(".ldb") or name.endswith(".sst"):
        return "table .ldb"
    if name.endswith(".log"):
        return "write-ahead .log"
    if name.startswith("MANIFEST-"):
        return "MANIFEST"
    if name == "CURRENT":
        return "CURRENT"
    if name in ("LOG", "LOG.old"):
        return "info LOG"
    if name == "LOCK":
        return "LOCK"
    if name.endswith(".hwm"):
        return "high-water mark"
    if name.endswith(".cemp"):
        return "genesis"
    return "other"
