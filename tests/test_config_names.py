"""One name per thing: the trimmed share, rule names as strings, the global model, the noise
defaults announced."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import hierfed
from hierfed import _noise_notice
from hierfed.aggregator import AggregationMethod
from hierfed.federation import FederationConfig, HierarchicalFederation, noise_notice
from hierfed.layers import Layer1Aggregator, Layer1Config, Layer2Config

QUIET = FederationConfig(
    layer1=Layer1Config(apply_local_noise=False),
    layer2=Layer2Config(central_dp_epsilon=None, use_secure_aggregation=False),
)


@pytest.mark.parametrize("name", ["trim_ratio", "trim_alpha"])
def test_the_trimmed_share_under_either_name(name: str) -> None:
    cfg = Layer1Config(apply_local_noise=False, **{name: 0.3})
    assert cfg.trim_ratio == cfg.trim_alpha == 0.3
    x = np.random.default_rng(0).standard_normal((10, 7))
    basket = Layer1Aggregator(cfg).aggregate(x)
    assert basket is not None
    np.testing.assert_array_equal(basket.aggregate, hierfed.trimmed_mean(x, trim_ratio=0.3))


def test_the_trimmed_share_defaults_and_conflicts() -> None:
    assert Layer1Config().trim_ratio == Layer1Config().trim_alpha == 0.1
    assert Layer1Config(trim_ratio=0.2, trim_alpha=0.2).trim_ratio == 0.2
    with pytest.raises(ValueError, match=r"trim_ratio=0\.2 and its alias trim_alpha=0\.3 disagree"):
        Layer1Config(trim_ratio=0.2, trim_alpha=0.3)
    with pytest.raises(ValueError, match=r"trim_ratio must be in \[0, 0.5\), got 0.5"):
        Layer1Config(trim_alpha=0.5)
    with pytest.raises(TypeError, match="trim_ratio must be a real number"):
        Layer1Config(trim_ratio="0.2")  # type: ignore[arg-type]


def test_rules_by_name_in_every_config() -> None:
    bulyan = Layer1Config(aggregation_method="bulyan", method_params={"f": 1})
    assert bulyan.aggregation_method is AggregationMethod.BULYAN
    l2 = Layer2Config(robust_method="median", use_secure_aggregation=False)
    assert l2.robust_method is AggregationMethod.MEDIAN
    with pytest.raises(ValueError, match="aggregation_method must be one of mean, trimmed_mean"):
        Layer1Config(aggregation_method="average")
    with pytest.raises(ValueError, match="robust_method must be one of mean"):
        Layer2Config(robust_method="average", use_secure_aggregation=False)


def test_global_model_is_the_current_model() -> None:
    fed = HierarchicalFederation(QUIET, initial_model=np.zeros(4, np.float32))
    assert fed.global_model is fed.model
    for i in range(6):
        fed.register_client(f"c{i}", "a" if i < 3 else "b")
    for i in range(6):
        fed.submit_update(f"c{i}", np.full(4, 0.5, np.float32), base_version=0)
    assert fed.version == 1
    assert fed.global_model is fed.model
    np.testing.assert_allclose(fed.global_model, 0.5)
    assert fed.latest is not None
    np.testing.assert_allclose(fed.latest.aggregate, 0.5)


def test_the_default_noise_is_announced_once(caplog: pytest.LogCaptureFixture) -> None:
    _noise_notice._announced.clear()
    with caplog.at_level(logging.WARNING, logger="hierfed.federation"):
        HierarchicalFederation()
        HierarchicalFederation()
        HierarchicalFederation(QUIET)
    notices = [r.getMessage() for r in caplog.records if r.name == "hierfed.federation"]
    assert len(notices) == 1
    assert (
        "local Gaussian noise in every basket (epsilon 1 (delta 1e-05) per basket release"
        in (notices[0])
    )
    assert "central Gaussian noise (epsilon 1 (delta 1e-05) per round" in notices[0]
    assert "apply_local_noise=False" in notices[0] and "central_dp_epsilon=None" in notices[0]


def test_the_notice_says_what_is_on() -> None:
    assert noise_notice(QUIET.layer1, QUIET.layer2) is None
    central = FederationConfig(
        layer1=Layer1Config(apply_local_noise=False),
        layer2=Layer2Config(central_dp_noise_multiplier=0.7),
    )
    text = noise_notice(central.layer1, central.layer2)
    assert text is not None and "noise multiplier 0.7" in text and "local" not in text
