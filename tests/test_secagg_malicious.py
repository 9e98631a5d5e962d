"""SecAgg+ against an actively malicious server and malicious clients: each attack of issue 14,
played in full. Each attack is shown to work on the protocol without the defence (the test
computes what the server would have gathered), and to fail against the protocol as it is."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from secagg_round import Round, survivors_message

from hierfed.secagg import Client, SecAggConfig, SecAggError, shamir
from hierfed.secagg import messages as msg
from hierfed.secagg._crypto import exchange, secret_key
from hierfed.secagg.identity import Identity, IdentityRegistry
from hierfed.secagg.masks import apply_masks, pair_key, self_key
from hierfed.secagg.session import SecurityPolicy, SessionPlan

# The n = 100 and 200 plays take seconds: once per suite run, on the default backend (the
# protocol's logic does not depend on the kernel backend; test_secagg_protocol covers them).
_ONCE = os.environ.get("HIERFED_BACKEND", "cpp") in ("", "cpp")


# ---- the split view --------------------------------------------------------------------------


def split_view_plan(r: Round, target: int) -> dict[int, set[int]] | None:
    """For each client ``w``, the neighbours the server calls dropped in ``w``'s view, so that
    ``t`` holders of every neighbour of ``target`` reveal that neighbour's masking key while
    every holder of ``target`` sees it alive (its seed), each view keeping ``t - 1`` live
    peers (the old client-side checks). A max-flow over the share holders; None if none."""
    n, t = len(r.clients), r.params.t
    nbrs = [set(g) for g in r.graph]
    victims = sorted(nbrs[target])
    # nodes: 0 source, 1 .. len(victims) victims, then holders, then the sink
    vid = {v: 1 + i for i, v in enumerate(victims)}
    hid = {w: 1 + len(victims) + w for w in range(n)}
    sink = 1 + len(victims) + n
    rows, cols, caps = [], [], []
    for v in victims:
        rows.append(0), cols.append(vid[v]), caps.append(t)
        for w in nbrs[v]:
            rows.append(vid[v]), cols.append(hid[w]), caps.append(1)
    for w in range(n):
        rows.append(hid[w]), cols.append(sink), caps.append(max(0, len(nbrs[w]) - (t - 1)))
    graph = csr_matrix((caps, (rows, cols)), shape=(sink + 1, sink + 1), dtype=np.int32)
    flow = maximum_flow(graph, 0, sink)
    if flow.flow_value < t * len(victims):
        return None
    f = flow.flow.tocoo()
    dropped: dict[int, set[int]] = {w: set() for w in range(n)}
    inverse = {i: v for v, i in vid.items()}
    for a, b, value in zip(f.row, f.col, f.data, strict=True):
        if value > 0 and a in inverse and b >= 1 + len(victims) and b < sink:
            dropped[int(b) - 1 - len(victims)].add(inverse[int(a)])
    return dropped


def _recover_input(r: Round, target: int, seeds: list, keys: dict[int, list]) -> np.ndarray:
    """What the server computes from ``t`` seed shares of ``target`` and ``t`` key shares of
    each of its pair-mask peers: ``target``'s input, exactly (if the shares suffice)."""
    digest = r.plan.digest
    seed = shamir.elements_to_bytes(shamir.reconstruct(*zip(*seeds[: r.params.t], strict=True)))
    masked = msg.MaskedInput.from_bytes(r.masked[target])
    out = np.frombuffer(masked.words, "<u4").astype(np.uint32)
    mask_keys, negate = [self_key(seed, digest, target)], [True]
    for v in masked.peers:
        raw = shamir.elements_to_bytes(
            shamir.reconstruct(*zip(*keys[v][: r.params.t], strict=True))
        )
        shared = exchange(secret_key(raw), r.server._keys[target][1])
        mask_keys.append(pair_key(shared, digest, target, v))
        negate.append(target < v)
    apply_masks(mask_keys, negate, out)
    return out


@pytest.mark.parametrize(
    "n",
    [
        50,
        pytest.param(100, marks=pytest.mark.skipif(not _ONCE, reason="once")),
        pytest.param(200, marks=pytest.mark.skipif(not _ONCE, reason="once")),
    ],
)
def test_split_view_is_detected_and_reveals_nothing(n: int) -> None:
    r = Round(n, d=16, seed=n)
    target = 0
    sets = r.to_survivors()
    plan = split_view_plan(r, target)
    assert plan is not None, "the split-view plan exists at this n (issue 14)"
    # Without the consistency round the plan works: what each holder would reveal under its
    # own view gives t seed shares of the target and t key shares of every pair-mask peer.
    seeds = [(w + 1, r.clients[w]._held[target].seed_share) for w in r.graph[target]]
    seeds.append((target + 1, r.clients[target]._own.seed_share))  # type: ignore[union-attr]
    keys: dict[int, list] = {}
    for w, gone in plan.items():
        for v in gone:
            if v in r.clients[w]._held:
                keys.setdefault(v, []).append((w + 1, r.clients[w]._held[v].key_share))
    np.testing.assert_array_equal(_recover_input(r, target, seeds, keys), r.x[target])
    # Against the protocol: every client gets its own view; tags of different views fail.
    alive = set(msg.Survivors.from_bytes(sets[target]).ids)
    for w, c in enumerate(r.clients):
        tags = c.consistency(survivors_message(r, w, alive - plan[w]))
        r.server.receive_consistency_tags(tags)
    revealed: list[msg.UnmaskResponse] = []
    refused = 0
    for w, proofs in r.server.consistency_proofs().items():
        try:
            revealed.append(msg.UnmaskResponse.from_bytes(r.clients[w].unmask(proofs)))
        except SecAggError as exc:
            assert "confirming the same survivor set" in str(exc)
            refused += 1
    split = [w for w in range(n) if plan[w]]
    assert refused >= len(split)  # every client shown a split view refuses
    got_keys: dict[int, int] = {}
    for resp in revealed:
        for owner, kind, _ in resp.shares:
            if kind == msg.KEY:
                got_keys[owner] = got_keys.get(owner, 0) + 1
    assert all(got_keys.get(v, 0) < r.params.t for v in r.graph[target])


def test_split_view_on_the_complete_graph_aborts() -> None:
    # Odd holders are told client 0 dropped, even ones that it is alive.
    r = Round(10, complete=True)
    alive = set(msg.Survivors.from_bytes(r.to_survivors()[1]).ids)
    for w, c in enumerate(r.clients):
        view = alive - {0} if w % 2 else alive
        if w in view:
            r.server.receive_consistency_tags(c.consistency(survivors_message(r, w, view)))
    for w, proofs in r.server.consistency_proofs().items():
        with pytest.raises(SecAggError, match="same survivor set"):
            r.clients[w].unmask(proofs)


# ---- keys, parameters, plans ---------------------------------------------------------------


def test_roster_key_substitution_is_refused() -> None:
    r = Round(12, complete=True)
    for c in r.clients:
        r.server.receive_advertise(c.advertise())
    rosters = r.server.rosters()
    evil = X25519PrivateKey.generate()
    evil_pub = evil.public_key().public_bytes_raw()
    roster = msg.Roster.from_bytes(rosters[0])
    swapped = tuple(
        (i, evil_pub, evil_pub, sig) if i in (1, 2) else (i, c, s, sig)
        for i, c, s, sig in roster.entries
    )
    sent = msg.ShareKeys.from_bytes(
        r.clients[0].share_keys(replace(roster, entries=swapped).to_bytes())
    )
    assert {c.peer for c in sent.ciphertexts} == set(range(3, 12))  # nothing for 1 and 2
    assert "signed" in r.clients[0].rejected[1] and "signed" in r.clients[0].rejected[2]
    # Substituting every neighbour leaves fewer than t: the client refuses outright.
    other = msg.Roster.from_bytes(rosters[1])
    all_swapped = tuple(
        (i, c, s, sig) if i == 1 else (i, evil_pub, evil_pub, sig) for i, c, s, sig in other.entries
    )
    with pytest.raises(SecAggError, match="fewer than the threshold"):
        r.clients[1].share_keys(replace(other, entries=all_swapped).to_bytes())


@pytest.mark.parametrize(
    ("n", "k", "t", "complete", "colluding", "match"),
    [
        (10, 4, 2, False, 0.05, "2t > k \\+ 1"),
        (10, 9, 5, True, 0.05, "2t > k \\+ 1"),
        (1000, 20, 15, False, 0.05, "security bound"),
        (1000, 4, 3, False, 0.0, "connectivity bound"),
        (100, 46, 45, False, 0.05, "correctness bound"),
        (100, 47, 30, False, 0.05, "even k"),
    ],
)
def test_weak_plans_are_refused_by_the_client(
    n: int, k: int, t: int, complete: bool, colluding: float, match: str
) -> None:
    operator = Identity()
    ids = {i: Identity() for i in range(n)}
    reg = IdentityRegistry(operator.public_bytes, {i: c.public_bytes for i, c in ids.items()})
    plan = SessionPlan(os.urandom(32), tuple(range(n)), k, t, complete, 8, 0.1)
    with pytest.raises(SecAggError, match=match):
        Client(ids[0], 0, reg, plan.signed(operator), SecurityPolicy(colluding))


def test_plans_not_signed_by_the_operator_are_refused() -> None:
    r = Round(4, complete=True)
    server_key = Identity()
    with pytest.raises(SecAggError, match="not signed by the operator"):
        Client(r.identities[0], 0, r.registry, r.plan.signed(server_key))
    forged = bytearray(r.signed)
    forged[40] ^= 1  # another session id under the operator's old signature
    with pytest.raises(SecAggError, match="not signed by the operator"):
        Client(r.identities[0], 0, r.registry, bytes(forged))
    with pytest.raises(SecAggError, match="not enrolled"):
        Client(Identity(), 0, r.registry, r.signed)


def test_a_stricter_policy_refuses_the_default_plan() -> None:
    with pytest.raises(SecAggError, match="security bound"):
        Round(100, policy=SecurityPolicy(collusion_fraction=0.3))


# ---- a bad client is a dropped client --------------------------------------------------------


def test_a_short_first_input_drops_only_its_sender() -> None:
    r = Round(12)
    routed = r.to_shares()
    bad = msg.MaskedInput.from_bytes(r.clients[0].masked_input(routed[0], r.x[0]))
    with pytest.raises(ValueError, match="the plan has 64"):
        r.server.receive_masked_input(replace(bad, words=bad.words[:4]).to_bytes())
    for i in range(1, 12):
        r.server.receive_masked_input(r.clients[i].masked_input(routed[i], r.x[i]))
    for i, m in r.server.survivors().items():
        r.server.receive_consistency_tags(r.clients[i].consistency(m))
    for i, m in r.server.consistency_proofs().items():
        r.server.receive_unmask_response(r.clients[i].unmask(m))
    total, survivors = r.server.finalize()
    assert survivors == tuple(range(1, 12)) and "plan has 64" in r.server.rejected[0]
    np.testing.assert_array_equal(total, r.expected(survivors))


@pytest.mark.parametrize("how_many", [1, "all"])
def test_garbage_ciphertexts_drop_their_sender(how_many: object) -> None:
    r = Round(14)
    for c in r.clients:
        r.server.receive_advertise(c.advertise())
    rosters = r.server.rosters()
    for i, c in enumerate(r.clients):
        m = msg.ShareKeys.from_bytes(c.share_keys(rosters[i]))
        if i == 5:
            cts = list(m.ciphertexts)
            for j in range(len(cts) if how_many == "all" else 1):
                cts[j] = replace(cts[j], data=os.urandom(len(cts[j].data)))
            m = replace(m, ciphertexts=tuple(cts))
        r.server.receive_share_keys(m.to_bytes())
    for i, m in r.server.route_shares().items():
        r.masked[i] = r.clients[i].masked_input(m, r.x[i])  # nobody raises
        r.server.receive_masked_input(r.masked[i])
    for i, m in r.server.survivors().items():
        r.server.receive_consistency_tags(r.clients[i].consistency(m))
    for i, m in r.server.consistency_proofs().items():
        r.server.receive_unmask_response(r.clients[i].unmask(m))
    total, survivors = r.server.finalize()
    assert 5 not in survivors and len(survivors) == 13 and 5 in r.server.excluded
    np.testing.assert_array_equal(total, r.expected(survivors))


@pytest.mark.parametrize(("n", "liars"), [(30, 4), (50, 8)])
def test_random_shares_from_e_holders_are_corrected_and_named(n: int, liars: int) -> None:
    r = Round(n, complete=n == 30)
    t, k = r.params.t, r.params.k
    assert k + 1 >= t + 2 * liars  # every secret has t + 2e holders
    rng = np.random.default_rng(n)
    bad = set(rng.choice(n, liars, replace=False).tolist())
    for i, m in r.to_proofs().items():
        resp = msg.UnmaskResponse.from_bytes(r.clients[i].unmask(m))
        if i in bad:
            noise = tuple(
                (o, kind, tuple(int(rng.integers(0, 2**62)) for _ in s))
                for o, kind, s in resp.shares
            )
            resp = replace(resp, shares=noise)
        r.server.receive_unmask_response(resp.to_bytes())
    total, survivors = r.server.finalize()
    np.testing.assert_array_equal(total, r.expected(survivors))
    assert {h for h, _ in r.server.corrupted_shares} == bad


# ---- replayed and misaddressed messages leave the stage unused ------------------------------


def test_replayed_and_misaddressed_requests_leave_the_real_one_answered() -> None:
    r = Round(10)
    other = Round(10)
    other.to_survivors()
    sets = r.to_survivors()
    c = r.clients[3]
    with pytest.raises(SecAggError, match="addressed to client 4"):
        c.consistency(sets[4])
    with pytest.raises(SecAggError, match="another session"):
        c.consistency(survivors_message(other, 3, range(10)))
    with pytest.raises(ValueError):
        c.consistency(sets[3][:-2])
    tags = {i: r.clients[i].consistency(m) for i, m in sets.items()}
    for m in tags.values():
        r.server.receive_consistency_tags(m)
    proofs = r.server.consistency_proofs()
    with pytest.raises(SecAggError, match="addressed to client 5"):
        c.unmask(proofs[5])
    with pytest.raises(SecAggError, match="out of order"):
        c.consistency(sets[3])  # replayed: the set is final once tagged
    empty = msg.ConsistencyProofs(r.session, 3, ()).to_bytes()
    with pytest.raises(SecAggError, match="same survivor set"):
        c.unmask(empty)
    for i, m in proofs.items():
        r.server.receive_unmask_response(r.clients[i].unmask(m))
    total, survivors = r.server.finalize()
    np.testing.assert_array_equal(total, r.expected(survivors))


def test_a_forked_client_refuses_to_go_on() -> None:
    r = Round(4, complete=True)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the same keys and seed as the parent's client
        try:
            r.clients[0].advertise()
            os.write(write, b"advertised")
        except SecAggError:
            os.write(write, b"refused")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 32) == b"refused"
    r.clients[0].advertise()  # the parent's client is unaffected


def test_config_defaults_still_meet_the_policy() -> None:
    assert SecAggConfig().collusion_fraction == SecurityPolicy().collusion_fraction


def test_a_signed_registry_is_accepted_only_from_the_pinned_operator() -> None:
    operator, mallory = Identity(), Identity()
    clients = {3: Identity().public_bytes, 9: Identity().public_bytes}
    signed = IdentityRegistry(operator.public_bytes, clients).signed(operator)
    got = IdentityRegistry.from_signed(signed, operator.public_bytes)
    assert got.ids == (3, 9) and got.public_bytes(9) == clients[9]
    forged = bytearray(signed)
    forged[45] ^= 1  # a client's key swapped under the operator's signature
    with pytest.raises(ValueError, match="signature is invalid"):
        IdentityRegistry.from_signed(bytes(forged), operator.public_bytes)
    own = IdentityRegistry(mallory.public_bytes, clients).signed(mallory)
    with pytest.raises(ValueError, match="another operator"):
        IdentityRegistry.from_signed(own, operator.public_bytes)
    with pytest.raises(ValueError, match="operator is not"):
        IdentityRegistry(operator.public_bytes, clients).signed(mallory)
    with pytest.raises(ValueError, match="own key"):
        IdentityRegistry(operator.public_bytes, {1: clients[3], 2: clients[3]})


def test_a_replayed_plan_is_refused_by_a_client_that_keeps_its_sessions() -> None:
    r = Round(4, complete=True)
    joined: set[bytes] = set()
    Client(r.identities[0], 0, r.registry, r.signed, joined=joined)
    assert joined == {r.session}
    with pytest.raises(SecAggError, match="replay"):
        Client(r.identities[0], 0, r.registry, r.signed, joined=joined)
