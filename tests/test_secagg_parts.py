"""Shamir sharing, graph parameters, quantisation and the wire format of hierfed.secagg."""

from __future__ import annotations

import os
import struct
from dataclasses import replace

import numpy as np
import pytest

from hierfed.privacy import NoiseGenerator
from hierfed.secagg import choose_parameters, shamir
from hierfed.secagg import messages as msg
from hierfed.secagg.graph import neighbours
from hierfed.secagg.quantize import check_bits, decode_sum, encode, max_bits

S = os.urandom(32)


# ---- Shamir ---------------------------------------------------------------------------------


def test_shamir_round_trip_any_t_subset() -> None:
    secret = os.urandom(32)
    elems = shamir.bytes_to_elements(secret)
    xs = list(range(1, 11))
    shares = shamir.split(elems, xs, 4)
    for pick in ([0, 1, 2, 3], [9, 5, 2, 7], list(range(10))):
        got = shamir.reconstruct([xs[i] for i in pick], [shares[i] for i in pick])
        assert shamir.elements_to_bytes(got) == secret


def test_shamir_fewer_than_t_shares_are_uninformative() -> None:
    # With t - 1 shares, every candidate secret is consistent with some polynomial: the
    # shares of two different secrets under the same other coefficients differ uniformly.
    xs = [1, 2, 3, 4, 5]
    a = shamir.split((5,), xs, 4)
    assert shamir.reconstruct(xs[:3], a[:3]) != (5,)
    b = shamir.split((6,), xs, 4)
    assert a[:3] != b[:3]


def test_shamir_bad_arguments() -> None:
    with pytest.raises(ValueError, match="threshold"):
        shamir.split((1,), [1, 2], 3)
    with pytest.raises(ValueError, match="distinct"):
        shamir.split((1,), [1, 1], 2)
    with pytest.raises(ValueError, match="32 bytes"):
        shamir.bytes_to_elements(b"x")
    with pytest.raises(ValueError, match="corrupted"):
        shamir.elements_to_bytes((1 << 125, 0, 0))


# ---- graph ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 5, 30, 100, 1000])
def test_parameters_meet_the_bounds(n: int) -> None:
    p = choose_parameters(n)
    assert p.log2_security_failure <= -40
    if p.complete:
        assert 2 * p.t > p.k + 1 + int(0.05 * n)
    assert p.t <= p.k + 1
    if not p.complete:
        assert p.log2_correctness_failure <= -20 and p.k % 2 == 0 and p.k < n - 1
    assert p.log2_connectivity_failure <= -40


def _survivors_connected(n: int, w: int, removed: set[int]) -> bool:
    """Whether the ring positions not removed stay connected with jumps 1..w (BFS)."""
    alive = [i for i in range(n) if i not in removed]
    if not alive:
        return True
    seen, todo = {alive[0]}, [alive[0]]
    while todo:
        i = todo.pop()
        for step in range(1, w + 1):
            for j in ((i + step) % n, (i - step) % n):
                if j not in removed and j not in seen:
                    seen.add(j)
                    todo.append(j)
    return len(seen) == len(alive)


def test_connectivity_bound_holds_where_splits_are_common() -> None:
    """The split bound against simulation on a sparse ring that does split (n=40, k=8)."""
    import math
    import random

    from hierfed.secagg.graph import _log2_split

    n, k, colluders, delta = 40, 8, 4, 0.3
    bound = 2.0 ** _log2_split(n, k, colluders, delta)
    assert bound < 0.6  # informative here (about 0.57)
    rng = random.Random(7)
    trials, splits = 4000, 0
    for _ in range(trials):
        positions = rng.sample(range(n), n)
        removed = set(positions[:colluders])
        removed |= {q for q in positions[colluders:] if rng.random() < delta}
        splits += not _survivors_connected(n, k // 2, removed)
    rate = splits / trials
    assert rate > 0.02  # the regime really splits (about 6%), so the comparison means something
    assert rate <= bound + 4 * math.sqrt(rate * (1 - rate) / trials)


def test_harary_graph_is_regular_and_symmetric() -> None:
    p = choose_parameters(200)
    nb = neighbours(p, S)
    assert all(len(x) == p.k for x in nb)
    assert all(i in nb[j] and i not in nb[i] for i in range(200) for j in nb[i])
    assert nb == neighbours(p, S) and nb != neighbours(p, os.urandom(32))


def test_parameters_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n must be"):
        choose_parameters(1)
    with pytest.raises(ValueError, match="dropout_rate"):
        choose_parameters(10, dropout_rate=1.0)
    assert choose_parameters(100, complete=True).complete


# ---- quantisation ---------------------------------------------------------------------------


def test_bits_use_n_not_k() -> None:
    assert max_bits(1) == 31 and max_bits(100) == 25 and max_bits(1025) == 21
    assert 2000 << max_bits(2000) < 2**32 <= 2000 << (max_bits(2000) + 1)
    with pytest.raises(ValueError, match="wrap"):
        check_bits(23, 1025)
    with pytest.raises(ValueError, match="2\\^31"):
        max_bits(2**31)


def test_rounding_is_unbiased() -> None:
    gen = NoiseGenerator()
    x = np.full(200_000, 0.3)
    q = encode(x, 1.0, 3, gen)  # 0.3 -> 4.55 on the grid of 7 steps
    assert set(np.unique(q)) == {4, 5}
    mean = decode_sum(np.array([q.sum()], np.uint32), x.size, 1.0, 3)[0] / x.size
    assert abs(mean - 0.3) < 7 * (2 / 7) * 0.5 / np.sqrt(x.size)  # 7 sd of the mean


def test_encode_clips_and_checks() -> None:
    gen = NoiseGenerator()
    q = encode(np.array([-5.0, 5.0]), 1.0, 8, gen)
    assert list(q) == [0, 255]
    with pytest.raises(ValueError, match="finite"):
        encode(np.array([np.inf]), 1.0, 8, gen)
    with pytest.raises(ValueError, match="clip"):
        encode(np.zeros(2), -1.0, 8, gen)


# ---- messages -------------------------------------------------------------------------------

ALL = [
    msg.Advertise(S, 3, b"a" * 32, b"b" * 32),
    msg.Roster(S, ((0, b"a" * 32, b"b" * 32), (4, b"c" * 32, b"d" * 32))),
    msg.ShareKeys(S, 1, b"h" * 32, (msg.Ciphertext(0, b"n" * 12, b"xyz"),)),
    msg.Shares(S, 2, (msg.Ciphertext(1, b"n" * 12, b""), msg.Ciphertext(5, b"m" * 12, b"q"))),
    msg.MaskedInput(S, 7, np.arange(5, dtype="<u4").tobytes()),
    msg.UnmaskRequest(S, 2, (0, 1), (4,)),
    msg.UnmaskResponse(S, 2, ((0, msg.SEED, (1, 2, 3)), (4, msg.KEY, (4, 5, 6)))),
]


@pytest.mark.parametrize("m", ALL, ids=lambda m: type(m).__name__)
def test_messages_round_trip_and_reject_damage(m: object) -> None:
    cls = type(m)
    data = m.to_bytes()  # type: ignore[attr-defined]
    assert cls.from_bytes(data) == m  # type: ignore[attr-defined]
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            cls.from_bytes(data[:cut])  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        cls.from_bytes(data + b"\0")  # type: ignore[attr-defined]
    for at, bad in ((0, b"X"), (4, b"\x09"), (5, b"\x63"), (6, b"\x01")):
        with pytest.raises(ValueError):
            cls.from_bytes(data[:at] + bad + data[at + 1 :])  # type: ignore[attr-defined]
    other = ALL[(ALL.index(m) + 1) % len(ALL)].to_bytes()  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="expected"):
        cls.from_bytes(other)  # type: ignore[attr-defined]


def test_forged_bodies_raise() -> None:
    r = msg.UnmaskRequest(S, 2, (0, 1), (4,)).to_bytes()
    swapped = r[:-16] + struct.pack("<II", 1, 0) + r[-8:]  # alive ids out of order
    with pytest.raises(ValueError, match="increasing"):
        msg.UnmaskRequest.from_bytes(swapped)
    u = msg.UnmaskResponse(S, 2, ((0, msg.SEED, (1, 2, 3)),)).to_bytes()
    with pytest.raises(ValueError, match="kind"):
        msg.UnmaskResponse.from_bytes(u[:56] + b"\x07" + u[57:])
    with pytest.raises(ValueError, match=">= P"):
        msg.UnmaskResponse.from_bytes(u[:57] + b"\xff" * 16 + u[73:])
    huge = msg.Roster(S, ()).to_bytes()[:-4] + struct.pack("<I", 2**32 - 1)
    with pytest.raises(ValueError, match="count"):
        msg.Roster.from_bytes(huge)
    with pytest.raises(TypeError):
        msg.Advertise.from_bytes("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        replace(ALL[5], alive=(3, 1)).to_bytes()  # type: ignore[type-var]
    p = msg.SharePlaintext(1, 2, (1, 2, 3), (4, 5, 6))
    assert msg.SharePlaintext.from_bytes(p.to_bytes()) == p
    with pytest.raises(ValueError):
        msg.SharePlaintext.from_bytes(p.to_bytes()[:-1])


@pytest.mark.parametrize("m", ALL, ids=lambda m: type(m).__name__)
def test_random_damage_raises_value_error_or_parses(m: object) -> None:
    cls = type(m)
    data = bytearray(m.to_bytes())  # type: ignore[attr-defined]
    rng = np.random.default_rng(len(data))
    for _ in range(300):
        bad = bytearray(data)
        for at in rng.integers(0, len(bad), size=rng.integers(1, 4)):
            bad[at] = int(rng.integers(0, 256))
        try:
            out = cls.from_bytes(bytes(bad))  # type: ignore[attr-defined]
        except ValueError:
            continue
        assert out.to_bytes() == bytes(bad)  # whatever parses is a well-formed message


@pytest.mark.parametrize("parse", [msg.peek_type, msg.SharePlaintext.from_bytes])
@pytest.mark.parametrize("blob", [2**45, 105, [1, 2], "HFSA", None])
def test_parsers_refuse_what_is_not_bytes(parse: object, blob: object) -> None:
    """Found by fuzzing: peek_type and SharePlaintext.from_bytes called bytes(x) on anything,
    so an int asked for that many zero bytes (2**45: MemoryError) and a list forged bytes."""
    with pytest.raises(TypeError, match="must be bytes"):
        parse(blob)  # type: ignore[operator]
    p = msg.SharePlaintext(1, 2, (1, 2, 3), (4, 5, 6)).to_bytes()
    assert msg.SharePlaintext.from_bytes(bytearray(p)).sender == 1
    assert msg.peek_type(memoryview(ALL[0].to_bytes())) == msg.MessageType.ADVERTISE  # type: ignore[attr-defined]
