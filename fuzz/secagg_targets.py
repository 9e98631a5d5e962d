"""Harnesses of :mod:`hierfed.secagg.messages`: truncated, forged and random wire messages.

Each target builds a valid message from the fuzzer's bytes, then (usually) damages it:
truncation, a flipped byte, a forged length or count field, trailing bytes, or bytes that
were never a message. Parsing must raise ValueError (or TypeError for what is not bytes), or
return a message whose wire form is exactly the bytes parsed (parsing is strict and canonical).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from _compare import WrongResultError
from _data import Data

from hierfed.secagg import messages as msg
from hierfed.secagg.shamir import ELEMENTS, P

Target = Callable[[Data], None]
BYTES_LIKE = (bytes, bytearray, memoryview)


def _ids(data: Data, most: int = 6) -> tuple[int, ...]:
    ids = sorted({data.pick((0, 1, 2, 7, msg.MAX_ID, data.int(0, 1000))) for _ in range(most)})
    return tuple(ids[: data.int(0, len(ids))])


def _fe(data: Data) -> int:
    return data.pick((0, 1, P - 1, data.int(0, P - 1)))


def _share(data: Data) -> tuple[int, ...]:
    return tuple(_fe(data) for _ in range(ELEMENTS))


def _cts(data: Data) -> tuple[msg.Ciphertext, ...]:
    return tuple(msg.Ciphertext(p, data.take(12), data.take(data.int(0, 80))) for p in _ids(data))


def _build(kind: str, data: Data) -> Any:
    """A valid message of ``kind`` with fields from the input."""
    s = data.take(32)
    if kind == "Advertise":
        return msg.Advertise(
            s, data.int(0, msg.MAX_ID), data.take(32), data.take(32), data.take(64)
        )
    if kind == "Roster":
        entries = tuple((i, data.take(32), data.take(32), data.take(64)) for i in _ids(data))
        return msg.Roster(s, entries)
    if kind == "ShareKeys":
        return msg.ShareKeys(s, data.int(0, msg.MAX_ID), data.take(32), _cts(data))
    if kind == "Shares":
        return msg.Shares(s, data.int(0, msg.MAX_ID), _cts(data))
    if kind == "MaskedInput":
        words = data.take(4 * data.int(0, 64))
        return msg.MaskedInput(s, data.int(0, msg.MAX_ID), _ids(data), words)
    if kind == "Survivors":
        return msg.Survivors(s, data.int(0, msg.MAX_ID), _ids(data))
    if kind in ("ConsistencyTags", "ConsistencyProofs"):
        tags = tuple((p, data.take(32)) for p in _ids(data))
        return getattr(msg, kind)(s, data.int(0, msg.MAX_ID), tags)
    if kind == "UnmaskResponse":
        shares = tuple((o, data.int(0, 1), _share(data)) for o in _ids(data))
        return msg.UnmaskResponse(s, data.int(0, msg.MAX_ID), shares)
    return msg.SharePlaintext(
        data.int(0, msg.MAX_ID), data.int(0, msg.MAX_ID), _share(data), _share(data)
    )


def _damage(raw: bytes, data: Data) -> Any:
    """``raw`` as it is, or damaged in one of several ways, or something that is not bytes."""
    how = data.int(0, 9)
    if how <= 1 or not raw:
        return raw
    if how == 2:
        return raw[: data.int(0, len(raw) - 1)]
    if how == 3:
        i = data.int(0, len(raw) - 1)
        return raw[:i] + bytes([raw[i] ^ (1 << data.int(0, 7))]) + raw[i + 1 :]
    if how == 4:  # a forged u32 (length, count or id) anywhere
        i = data.int(0, max(0, len(raw) - 4))
        v = data.pick((0, 1, 0xFFFFFFFF, 0x7FFFFFFF, data.int(0, 2**32 - 1)))
        return raw[:i] + struct.pack("<I", v) + raw[i + 4 :]
    if how == 5:
        return raw + data.take(data.int(1, 8))
    if how == 6:  # the body length field (offset 40) forged
        return raw[:40] + struct.pack("<I", data.int(0, 2**32 - 1)) + raw[44:]
    if how == 7:
        return data.remaining()
    if how == 8:
        return data.pick((bytearray(raw), memoryview(raw)))
    return data.pick((None, 0, 105, 2**20, "HFSA", [1, 2], raw.hex(), 1.5))


def _check(parse: Callable[[Any], Any], blob: Any) -> Any:
    """Parse ``blob``: None for an accepted error, else the message (TypeError iff not bytes)."""
    try:
        parsed = parse(blob)
    except TypeError:
        if isinstance(blob, BYTES_LIKE):
            raise WrongResultError("TypeError for bytes input") from None
        return None
    except ValueError:
        if not isinstance(blob, BYTES_LIKE):
            what = type(blob).__name__
            raise WrongResultError(f"{what} input: ValueError, not TypeError") from None
        return None
    if not isinstance(blob, BYTES_LIKE):
        raise WrongResultError(f"parsed a {type(blob).__name__} as a message")
    return parsed


def _message_target(kind: str) -> Target:
    cls = getattr(msg, kind)

    def target(data: Data) -> None:
        raw = _build(kind, data).to_bytes()
        blob = _damage(raw, data)
        parsed = _check(cls.from_bytes, blob)
        if parsed is not None and parsed.to_bytes() != bytes(blob):
            raise WrongResultError(f"{kind}: parsed, but its wire form differs from the input")

    return target


def peek_type(data: Data) -> None:
    kind = data.pick(("Advertise", "Roster", "MaskedInput", "Survivors", "ShareKeys"))
    blob = _damage(_build(kind, data).to_bytes(), data)
    got = _check(msg.peek_type, blob)
    if got is not None:
        raw = bytes(blob)
        if raw[:4] != msg.MAGIC or len(raw) < 44 or got != raw[5]:
            raise WrongResultError(f"peek_type accepted {raw[:8]!r}")


TARGETS: dict[str, Target] = {
    kind: _message_target(kind)
    for kind in (
        "Advertise",
        "Roster",
        "ShareKeys",
        "Shares",
        "MaskedInput",
        "Survivors",
        "ConsistencyTags",
        "ConsistencyProofs",
        "UnmaskResponse",
        "SharePlaintext",
    )
}
TARGETS["peek_type"] = peek_type
