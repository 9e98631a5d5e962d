"""examples/flower/run_private_deployment.sh: the private path on Flower's deployment runtime.

A SuperLink, six member SuperNodes in two domains and two basket-aggregator SuperNodes on
loopback run two rounds (the second with its own plan and seed; a round costs about 40 s here,
most of it Flower starting a ClientApp process per message); the ServerApp records every message
it sends and receives (:class:`hierfed.integrations.flower_transcript.TranscriptGrid`). No
payload holds a member's update, a basket model or the un-noised sum, as float32/float64 values
or as the DDG's fixed-point integers (unrotated, and rotated with the round's seed); the same
search finds each of them when planted (and finds the public global model in the transcript).
The global model of each round matches an independent computation on the same updates within the
noise and quantisation bounds, and the epsilon reported is the mechanism's.

It runs once, on the default backend (about 120 s alone on 2 cores, 300 s at load 9-12; at load
30-70 Flower's own runtime timed out its heartbeats before the first round). The same apps
over an in-process Grid: tests/test_flower_private.py.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import hierfed

pytest.importorskip("flwr")
pytest.importorskip("sklearn", reason="the example's data set comes from scikit-learn")

from flower_private_local import example_modules, member_update
from payload_search import contains_fixed, contains_float
from test_flower_deployment import BIN, _free_ports
from test_flower_deployment import pytestmark as _deployment_marks

from hierfed.integrations.flower_transcript import read_transcript
from hierfed.integrations.private_provision import load_server
from hierfed.privacy.distributed import randomized_hadamard

pytestmark = _deployment_marks
SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "flower" / "run_private_deployment.sh"
ROUNDS, MEMBERS = 2, 6


def _flat(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(arrays["weight"]).ravel(), np.asarray(arrays["bias"])])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    work = tmp_path_factory.mktemp("private-deployment")
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(hierfed.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    env["HIERFED_FLOWER_PORT"] = str(_free_ports(20))
    env["HIERFED_FLOWER_RECORD"] = str(work / "transcript")
    env["HIERFED_FLOWER_KEEP"] = str(work / "provision")
    run = subprocess.run(
        ["bash", str(SCRIPT), str(ROUNDS), "stage-timeout=900.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    out = run.stdout + run.stderr
    ours = [line for line in out.splitlines() if "hierfed" in line or "Error" in line]
    assert run.returncode == 0, "\n".join(ours[:60]) + "\n...\n" + out[-2000:]
    models = np.load(work / "transcript.models.npz")
    return {
        "out": out,
        "records": read_transcript(work / "transcript"),
        "models": [
            {k: models[f"{r}.{k}"] for k in ("weight", "bias")} for r in range(1, ROUNDS + 1)
        ],
        "reports": json.loads((work / "transcript.reports.json").read_text()),
        "ddg": load_server(work / "provision" / "server").ddg,
    }


def _truth(d: dict[str, object]) -> list[dict[str, object]]:
    """Per round: the base model, the members' updates, the basket models and their sum,
    recomputed here from the global models the ServerApp sent (training is deterministic)."""
    _, _, _, task = example_modules()
    ddg = d["ddg"]
    models = d["models"]
    out = []
    for r in range(ROUNDS):
        base = task.initial_arrays() if r == 0 else models[r - 1]  # type: ignore[index]
        updates = [member_update(task, base, i, MEMBERS) for i in range(MEMBERS)]
        baskets = []
        for b in range(2):
            mine = np.stack(updates[b::2]).astype(np.float64)
            m = stats.trim_mean(mine, 0.2, axis=0)
            baskets.append(m * min(1.0, ddg.clip / np.linalg.norm(m)))  # type: ignore[attr-defined]
        out.append({"base": base, "updates": updates, "baskets": baskets, "sum": sum(baskets)})
    return out


def _seeds(records: list[tuple[str, str, str, bytes]]) -> list[bytes]:
    """Each round's rotation seed, as the ServerApp sent it to the basket aggregators."""
    sent = [v for direction, _, key, v in records if direction == "S" and key.endswith("seed")]
    return list(dict.fromkeys(sent))


def _fixed(vector: np.ndarray, ddg: object, seed: bytes | None) -> np.ndarray:
    """``vector`` in the DDG's fixed point: clipped, rotated with ``seed`` (None: not),
    scaled by 1/gamma, rounded to nearest."""
    v = np.asarray(vector, np.float64)
    if seed is not None:
        v = randomized_hadamard(v, seed)
    return np.rint(v / ddg.gamma).astype(np.int64)  # type: ignore[attr-defined]


def _leaks(raw: bytes, vector: np.ndarray, ddg: object, seed: bytes, tol: int) -> list[str]:
    found = []
    if contains_float(raw, vector):
        found.append("float")
    if contains_fixed(raw, _fixed(vector, ddg, None), tol):
        found.append("fixed point")
    if contains_fixed(raw, _fixed(vector, ddg, seed), tol):
        found.append("rotated fixed point")
    return found


def test_private_deployment_runs_two_rounds(deployment: dict[str, object]) -> None:
    out = str(deployment["out"])
    assert "Using SuperLink: loopback" in out
    for r in range(1, ROUNDS + 1):
        assert f"hierfed-flower: private round {r} released; dropped {{}}" in out
    reports = deployment["reports"]
    assert [r["survivors"] for r in reports] == [["domain-0", "domain-1"]] * ROUNDS  # type: ignore[attr-defined]
    assert all(r["relayed"] == {"domain-0": 3, "domain-1": 3} for r in reports)  # type: ignore[attr-defined]


def test_no_payload_holds_an_update_a_basket_model_or_the_sum(
    deployment: dict[str, object],
) -> None:
    records = deployment["records"]
    ddg = deployment["ddg"]
    truth = _truth(deployment)
    seeds = _seeds(records)  # type: ignore[arg-type]
    assert len(seeds) == ROUNDS
    raw = b"".join(v for _, _, _, v in records)  # type: ignore[misc]
    assert len(raw) > 100_000
    kinds = {(d, k) for d, k, _, _ in records}  # type: ignore[misc]
    assert ("R", "train") in kinds and ("S", "train.hierfed_secagg") in kinds
    # positive control on the real transcript: the global model it sent is public and found
    assert contains_float(raw, _flat(truth[1]["base"]))  # type: ignore[arg-type]
    for r, t in enumerate(truth):
        seed = seeds[r]
        for i, u in enumerate(t["updates"]):  # type: ignore[arg-type]
            assert _leaks(raw, u, ddg, seed, 2) == [], f"round {r + 1}: member {i}'s update"
        for b, m in enumerate(t["baskets"]):  # type: ignore[arg-type]
            assert _leaks(raw, m, ddg, seed, 2) == [], f"round {r + 1}: basket {b}'s model"
        total = t["sum"]
        assert _leaks(raw, total, ddg, seed, 4) == [], f"round {r + 1}: the sum"  # type: ignore[arg-type]
        assert _leaks(raw, total / 2, ddg, seed, 4) == [], f"round {r + 1}: the mean"  # type: ignore[operator]


def test_the_search_finds_each_vector_when_planted(deployment: dict[str, object]) -> None:
    ddg = deployment["ddg"]
    t = _truth(deployment)[0]
    seed = _seeds(deployment["records"])[0]  # type: ignore[arg-type]
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, 3001, dtype=np.uint8).tobytes()
    gen = hierfed.privacy.NoiseGenerator(seed=3, secure=False)
    member, (basket, other), total = t["updates"][0], t["baskets"], t["sum"]  # type: ignore[index,misc]
    encoded = [ddg.quantize(m, gen, seed) for m in (basket, other)]  # type: ignore[attr-defined]
    plants = [  # name, bytes, the vector searched for, tolerance
        ("float32 update", np.asarray(member, "<f4").tobytes(), member, 2),
        ("float64 basket model", np.asarray(basket, "<f8").tobytes(), basket, 2),
        ("fixed-point update", _fixed(member, ddg, None).astype("<i4").tobytes(), member, 2),
        # the DDG's own quantisation (rotation, stochastic rounding), as uint32 words
        ("encoded basket model", encoded[0].astype("<u4").tobytes(), basket, 2),
        ("encoded sum", (encoded[0] + encoded[1]).astype("<u4").tobytes(), total, 4),
    ]
    for name, planted, vector, tol in plants:
        raw = noise[:1001] + planted + noise[1001:]  # at an odd offset
        assert _leaks(raw, vector, ddg, seed, tol), name  # type: ignore[arg-type]
        assert not _leaks(noise, vector, ddg, seed, tol), name  # type: ignore[arg-type]


def test_global_model_matches_the_reference_within_the_noise(
    deployment: dict[str, object],
) -> None:
    ddg = deployment["ddg"]
    models = deployment["models"]
    for r, t in enumerate(_truth(deployment)):
        expected = _flat(t["base"]) + t["sum"] / 2  # type: ignore[arg-type,operator]
        error = np.linalg.norm(_flat(models[r]) - expected)  # type: ignore[index]
        d = ddg.encoded_dim  # type: ignore[attr-defined]
        bound = (2 * ddg.gamma * math.sqrt(d) + 1.25 * ddg.sigma * math.sqrt(d)) / 2  # type: ignore[attr-defined]
        floor = 0.5 * ddg.sigma * math.sqrt(ddg.dim) / 2  # type: ignore[attr-defined]
        assert floor < error < bound, (r + 1, error, floor, bound)
    epsilon = deployment["reports"][-1]["stats"]["privacy_spent"][0]  # type: ignore[index]
    assert epsilon == pytest.approx(ddg.epsilon(1e-5, rounds=ROUNDS), rel=1e-9)  # type: ignore[attr-defined]
