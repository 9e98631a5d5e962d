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
    secret = shamir.draw_secret()
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
        shamir.elements_to_bytes((1 << 126, 0))


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
    msg.Advertise(S, 3, b"a" * 32, b"b" * 32, b"s" * 64),
    msg.Roster(S, ((0, b"a" * 32, b"b" * 32, b"s" * 64), (4, b"c" * 32, b"d" * 32, b"t" * 64))),
    msg.ShareKeys(S, 1, b"h" * 32, (msg.Ciphertext(0, b"n" * 12, b"xyz"),)),
    msg.Shares(S, 2, (msg.Ciphertext(1, b"n" * 12, b""), msg.Ciphertext(5, b"m" * 12, b"q"))),
    msg.MaskedInput(S, 7, (1, 3), np.arange(5, dtype="<u4").tobytes()),
    msg.Survivors(S, 2, (0, 1, 4)),
    msg.ConsistencyTags(S, 2, ((0, b"m" * 32), (4, b"n" * 32))),
    msg.ConsistencyProofs(S, 4, ((2, b"m" * 32),)),
    msg.UnmaskResponse(S, 2, ((0, msg.SEED, (1, 2)), (4, msg.KEY, (4, 5)))),
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
    r = msg.Survivors(S, 2, (0, 1, 4)).to_bytes()
    swapped = r[:-12] + struct.pack("<II", 1, 0) + r[-4:]  # ids out of order
    with pytest.raises(ValueError, match="increasing"):
        msg.Survivors.from_bytes(swapped)
    u = msg.UnmaskResponse(S, 2, ((0, msg.SEED, (1, 2)),)).to_bytes()
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
        replace(ALL[5], ids=(3, 1)).to_bytes()  # type: ignore[type-var]
    p = msg.SharePlaintext(1, 2, (1, 2), (4, 5))
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
    p = msg.SharePlaintext(1, 2, (1, 2), (4, 5)).to_bytes()
    assert msg.SharePlaintext.from_bytes(bytearray(p)).sender == 1
    assert msg.peek_type(memoryview(ALL[0].to_bytes())) == msg.MessageType.ADVERTISE  # type: ignore[attr-defined]


# ---- graph: the fast parameter search against the old exhaustive one -------------------------


def _old_log_comb(a: int, b: int) -> float:
    import math

    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def _old_log2(x: float) -> float:
    import math

    return math.log2(x) if x > 0 else -math.inf


def _old_bounds(n: int, k: int, t: int, m: int, delta: float) -> tuple[float, float]:
    """Security and correctness as the first choose_parameters summed them, in Python."""
    import math

    pop, at_least = n - 1, 2 * t - k - 1
    lo, hi = max(at_least, 0, k - (pop - m)), min(m, k)
    base = _old_log_comb(pop, k)
    sec = n * sum(
        math.exp(_old_log_comb(m, c) + _old_log_comb(pop - m, k - c) - base)
        for c in range(lo, hi + 1)
    )
    cor = 0.0
    if k - t < k and delta > 0:
        lp, lq = math.log(delta), math.log1p(-delta)
        cor = n * sum(
            math.exp(_old_log_comb(k, j) + j * lp + (k - j) * lq)
            for j in range(max(k - t + 1, 0), k + 1)
        )
    return _old_log2(sec), _old_log2(cor)


def _old_split(n: int, k: int, m: int, delta: float) -> float:
    """The connectivity bound as the first choose_parameters summed it, in Python."""
    import math

    split, honest = 0.0, n - m
    for dropped in range(honest + 1):
        removed = m + dropped
        if removed < k or delta <= 0:
            continue
        log_pmf = (
            _old_log_comb(honest, dropped)
            + dropped * math.log(delta)
            + (honest - dropped) * math.log1p(-delta)
        )
        split += math.exp(log_pmf + min(0.0, 2 * math.log(n) + k * math.log(removed / n)))
    return _old_log2(split)


def _old_choose(n: int, delta: float, gamma: float) -> tuple[int, int]:
    """The first choose_parameters: every t of every k, in order (O(n^3))."""
    import math

    m = min(n - 1, math.floor(gamma * n + 1e-9))
    for k in range(2, n - 1, 2):
        for t in range((k + 1) // 2 + 1, k + 1):
            sec, cor = _old_bounds(n, k, t, m, delta)
            if sec > -40:
                continue
            if cor <= -20 and _old_split(n, k, m, delta) <= -40:
                return k, t
            break
    k = n - 1
    for t in range((k + 1) // 2 + 1, k + 2):
        if _old_bounds(n, k, t, m, delta)[0] <= -40:
            return k, t
    raise AssertionError("unreachable: t = n is always secure")


SWEEP = (
    [(n, 0.1, 0.05) for n in [*range(2, 301), 1000]]
    + [
        (n, delta, gamma)
        for delta, gamma in ((0.0, 0.0), (0.3, 0.1), (0.02, 0.3), (0.0, 0.2))
        for n in range(2, 200, 13)
    ]
    + [(n, 0.5, 0.05) for n in (2, 3, 7, 40, 101)]
)


def test_choose_parameters_matches_the_old_search() -> None:
    """Binary search on t and numpy tails give the (k, t) of the exhaustive O(n^3) loop."""
    from hierfed.secagg.graph import parameter_bounds

    for n, delta, gamma in SWEEP:
        p = choose_parameters(n, dropout_rate=delta, collusion_fraction=gamma)
        assert (p.k, p.t) == _old_choose(n, delta, gamma), (n, delta, gamma)
        m = min(n - 1, int(gamma * n + 1e-9))
        got = parameter_bounds(n, p.k, p.t, m, delta, complete=p.complete)
        assert got == (
            p.log2_security_failure,
            p.log2_correctness_failure,
            p.log2_connectivity_failure,
        )
        old = _old_bounds(n, p.k, p.t, m, delta)
        assert got[:2] == pytest.approx(old, rel=1e-9, abs=0)
        if not p.complete:
            assert got[2] == pytest.approx(_old_split(n, p.k, m, delta), rel=1e-9, abs=0)


def test_parameter_bounds_against_scipy() -> None:
    from scipy import stats

    from hierfed.secagg.graph import parameter_bounds

    n, k, m, delta = 500, 60, 25, 0.1
    for t in (31, 36, 40, 45):
        sec, cor, _ = parameter_bounds(n, k, t, m, delta, complete=False)
        ref_sec = n * stats.hypergeom(n - 1, m, k).sf(2 * t - k - 2)
        ref_cor = n * stats.binom(k, delta).sf(k - t)
        assert 2.0**sec == pytest.approx(ref_sec, rel=1e-9)
        assert 2.0**cor == pytest.approx(ref_cor, rel=1e-9)
    assert parameter_bounds(50, 36, 20, 2, 0.1, complete=False)[0] == -np.inf  # 3 > 2 colluders
    assert parameter_bounds(10, 9, 6, 0, 0.0, complete=True)[1:] == (-np.inf, -np.inf)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1, 2, 2, 0, 0.1), "n must be"),
        ((10, 3, 2, 0, 0.1), "even"),
        ((10, 9, 2, 0, 0.1), "k must be in \\[2, 8\\]"),
        ((10, 4, 6, 0, 0.1), "t must be in \\[1, 5\\]"),
        ((10, 4, 0, 0, 0.1), "t must be"),
        ((10, 4, 3, 10, 0.1), "colluders"),
        ((10, 4, 3, 1, 1.0), "dropout_rate"),
        ((10, 4, 3, 1, float("nan")), "dropout_rate"),
    ],
)
def test_parameter_bounds_bad_arguments(args: tuple[int, int, int, int, float], match: str) -> None:
    from hierfed.secagg.graph import parameter_bounds

    with pytest.raises(ValueError, match=match):
        parameter_bounds(*args, complete=False)
    with pytest.raises(ValueError, match="k must be in \\[9, 9\\]"):
        parameter_bounds(10, 8, 3, 1, 0.1, complete=True)
    with pytest.raises(TypeError, match="k must be an int"):
        parameter_bounds(10, 4.0, 3, 1, 0.1, complete=False)  # type: ignore[arg-type]


def test_colluder_split_bound() -> None:
    import math

    from hierfed.secagg.graph import colluder_count, colluder_split_bound

    assert [colluder_count(n, g) for n, g in ((1000, 0.05), (20, 0.15), (3, 0.49))] == [50, 3, 1]
    with pytest.raises(ValueError, match="collusion_fraction"):
        colluder_count(10, 0.5)
    assert colluder_split_bound(1000, 82, 50) == -math.inf  # 50 < k: k-connected
    got = colluder_split_bound(100, 10, 20)
    assert got == pytest.approx(math.log2(100**2 * 0.2**10))
    assert colluder_split_bound(20, 4, 19) == 0.0  # min(1, ...)
    with pytest.raises(ValueError, match="colluders"):
        colluder_split_bound(10, 4, 10)


# ---- graph: one client's view -----------------------------------------------------------------


def _bfs_connected(nb: list[tuple[int, ...]], alive: set[int]) -> bool:
    if not alive:
        return True
    start = next(iter(alive))
    seen, todo = {start}, [start]
    while todo:
        for j in nb[todo.pop()]:
            if j in alive and j not in seen:
                seen.add(j)
                todo.append(j)
    return seen == alive


@pytest.mark.parametrize("n", [3, 12, 50, 123])
def test_client_neighbours_and_ring_positions_match_the_graph(n: int) -> None:
    from hierfed.secagg.graph import client_neighbours, ring_positions

    for p in (choose_parameters(n), choose_parameters(n, complete=True)):
        session = os.urandom(32)
        nb = neighbours(p, session)
        assert [client_neighbours(p, session, i) for i in range(n)] == nb
        pos = ring_positions(p, session)
        assert sorted(pos) == list(range(n))
        if not p.complete:
            w = p.k // 2
            for i in range(n):
                ring = {
                    j
                    for j in range(n)
                    if 0 < min((pos[i] - pos[j]) % n, (pos[j] - pos[i]) % n) <= w
                }
                assert ring == set(nb[i])
    p = choose_parameters(n)
    with pytest.raises(ValueError, match="index"):
        client_neighbours(p, S, n)
    with pytest.raises(TypeError, match="session_id"):
        ring_positions(p, "s")  # type: ignore[arg-type]


def test_survivors_connected_matches_bfs() -> None:
    from hierfed.secagg.graph import GraphParameters, survivors_connected

    rng = np.random.default_rng(3)
    splits = 0
    cases = [GraphParameters(40, 8, 6, False, 0, 0), GraphParameters(15, 2, 2, False, 0, 0)]
    cases += [choose_parameters(30), choose_parameters(9, complete=True)]
    for p in cases:
        session = os.urandom(16)
        nb = neighbours(p, session)
        for size in (0, 1, 2, 3, p.n // 2, p.n - 2, p.n):
            for _ in range(60):
                alive = set(rng.choice(p.n, size=size, replace=False).tolist())
                want = _bfs_connected(nb, alive)
                assert survivors_connected(p, session, alive) == want, (p, sorted(alive))
                splits += not want
    assert splits > 50  # the sparse cases really split, so agreement means something
    with pytest.raises(ValueError, match="survivors"):
        survivors_connected(cases[0], S, [0, 40])


# ---- quantisation: the clip's encodable range -------------------------------------------------


@pytest.mark.parametrize("clip", [1e308, 2.0**961, 1e-310, 2.0**-961, 5e-324])
def test_clip_outside_the_encodable_range_is_refused(clip: float) -> None:
    """Found by issue 18: clip=1e308 summed to NaN and clip=1e-310 decoded -clip as +clip."""
    from hierfed.secagg import SecAggConfig

    with pytest.raises(ValueError, match="clip must be in \\[2\\^-960, 2\\^960\\]"):
        SecAggConfig(clip=clip)
    with pytest.raises(ValueError, match="clip must be in"):
        encode(np.array([-clip, clip]), clip, 8, NoiseGenerator())
    with pytest.raises(ValueError, match="clip must be in"):
        decode_sum(np.zeros(2, np.uint32), 2, clip, 8)


@pytest.mark.parametrize(
    ("clip", "max_weight", "match"),
    [
        (1e200, 1e200, "clip \\* max_weight must be finite"),
        (2.0**500, 2.0**500, "clip \\* max_weight \\(a weighted sum's bound\\) must be in"),
        (2.0**-500, 2.0**-500, "clip \\* max_weight \\(a weighted sum's bound\\) must be in"),
        (1.0, 1e-300, "max_weight must be in"),
    ],
)
def test_weighted_bound_outside_the_range_is_refused(
    clip: float, max_weight: float, match: str
) -> None:
    from hierfed.secagg import SecAggConfig

    with pytest.raises(ValueError, match=match):
        SecAggConfig(clip=clip, max_weight=max_weight)


@pytest.mark.parametrize("clip", [2.0**-960, 1e-200, 1.0, 1e200, 2.0**960])
def test_extreme_clips_in_range_encode_and_decode_within_the_bound(clip: float) -> None:
    from hierfed.secagg import SecAggConfig, secure_sum

    bits, gen = 31, NoiseGenerator()
    x = np.array([-clip, -0.5 * clip, 0.0, 0.25 * clip, clip, -2 * clip, 2 * clip])
    want = np.clip(x, -clip, clip)
    step = 2 * clip / (2**bits - 1)
    q = encode(x, clip, bits, gen)
    got = decode_sum(q, 1, clip, bits)
    assert np.all(np.abs(got - want) <= step * (1 + 1e-9)), (got, want)
    assert got[0] == -clip and got[4] == clip  # the ends are exact
    inputs = {i: np.array([-clip, clip]) for i in range(3)}
    total = secure_sum(inputs, config=SecAggConfig(clip=clip)).total
    assert np.isfinite(total).all()
    assert total == pytest.approx([-3 * clip, 3 * clip], rel=1e-6)


def test_survivor_messages_for_each_receiver_match_one_by_one() -> None:
    ids = (0, 3, 9, 2**32 - 1)
    many = msg.Survivors.for_each(S, ids)
    assert many == {u: msg.Survivors(S, u, ids).to_bytes() for u in ids}
    with pytest.raises(ValueError, match="increasing"):
        msg.Survivors.for_each(S, (3, 1))
    with pytest.raises(ValueError, match="ints"):
        msg.Survivors(S, 0, (-1, 2)).to_bytes()


def test_an_x25519_key_survives_sharing_as_its_251_used_bits() -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from hierfed.secagg._crypto import key_secret, secret_key

    for _ in range(50):
        sk = X25519PrivateKey.generate()
        peer = X25519PrivateKey.generate().public_key()
        secret = key_secret(sk.private_bytes_raw())
        assert int.from_bytes(secret, "little") < 2**shamir.SECRET_BITS
        back = secret_key(shamir.elements_to_bytes(shamir.bytes_to_elements(secret)))
        assert back.public_key().public_bytes_raw() == sk.public_key().public_bytes_raw()
        assert back.exchange(peer) == sk.exchange(peer)
    with pytest.raises(ValueError, match="X25519"):
        secret_key((1 << 251).to_bytes(32, "little"))
    with pytest.raises(ValueError, match="below 2"):
        shamir.bytes_to_elements(b"\xff" * 32)
    assert all(int.from_bytes(shamir.draw_secret(), "little") >> 252 == 0 for _ in range(100))
