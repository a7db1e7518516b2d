"""Error codes shared by the API, the mempool and the apply path.

A ``CempError`` carries a stable machine code and a sentence a person can act on. The same code is stored
in a ``TxResult`` when a tx inside a committed block turns out invalid, so every node records the same
outcome. ``http_status`` maps each code to the 4xx status the API answers with.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    OK = 0
    MALFORMED = 1
    NON_CANONICAL = 2
    BAD_TYPE = 3
    TOO_LARGE = 4
    WRONG_CHAIN = 5
    BAD_SIGNATURE = 6
    NONCE_REPLAYED = 7
    NONCE_GAP = 8
    UNKNOWN_KIND = 9
    UNKNOWN_DEVICE = 10
    WRONG_DEVICE_KEY = 11
    SEQUENCE_BACKWARDS = 12
    BAD_TIMESTAMP = 13
    NOT_AUTHORIZED = 14
    ALREADY_EXISTS = 15
    INVALID_PAYLOAD = 16
    NOT_FOUND = 17
    MEMPOOL_FULL = 18
    BAD_REQUEST = 19
    UNAVAILABLE = 20
    TIMEOUT = 21
    UNAUTHENTICATED = 22
    KEY_RETIRED = 23
    """The sender's key was an org admin key that a rotation replaced (``node.adminkeys``)."""


_STATUS = {
    Code.MALFORMED: 400,
    Code.NON_CANONICAL: 400,
    Code.BAD_TYPE: 400,
    Code.TOO_LARGE: 413,
    Code.WRONG_CHAIN: 400,
    Code.BAD_SIGNATURE: 401,
    Code.NONCE_REPLAYED: 409,
    Code.NONCE_GAP: 409,
    Code.UNKNOWN_KIND: 400,
    Code.UNKNOWN_DEVICE: 404,
    Code.WRONG_DEVICE_KEY: 403,
    Code.SEQUENCE_BACKWARDS: 409,
    Code.BAD_TIMESTAMP: 422,
    Code.NOT_AUTHORIZED: 403,
    Code.ALREADY_EXISTS: 409,
    Code.INVALID_PAYLOAD: 422,
    Code.NOT_FOUND: 404,
    Code.MEMPOOL_FULL: 429,
    Code.BAD_REQUEST: 400,
    Code.UNAVAILABLE: 503,
    Code.TIMEOUT: 504,
    Code.UNAUTHENTICATED: 401,
    Code.KEY_RETIRED: 403,
}


def http_status(code: Code) -> int:
    return _STATUS.get(code, 400)


class CempError(Exception):
    """A refusal with a stable code and a human sentence."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return http_status(self.code)

    def to_json(self) -> dict[str, object]:
        return {"code": self.code.name.lower(), "message": self.message}
