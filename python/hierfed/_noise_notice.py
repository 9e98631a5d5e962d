"""The one sentence saying which noise a federation's two layers add (logged once)."""

from __future__ import annotations

import logging

from .layers import Layer1Config, Layer2Config

_log = logging.getLogger("hierfed.federation")
_announced: set[str] = set()


def _level(multiplier: float | None, epsilon: float | None, delta: float, per: str) -> str:
    if multiplier is not None:
        return f"noise multiplier {multiplier:g}"
    return f"epsilon {epsilon:g} (delta {delta:g}) per {per}"


def noise_notice(layer1: Layer1Config, layer2: Layer2Config) -> str | None:
    """The noise the two layers add, in one sentence (``None`` when they add none)."""
    parts = []
    if layer1.apply_local_noise:
        level = _level(
            layer1.local_noise_multiplier,
            layer1.local_epsilon,
            layer1.local_delta,
            "basket release",
        )
        parts.append(
            f"local Gaussian noise in every basket ({level}, updates clipped to "
            f"{layer1.local_clip_norm:g}; Layer1Config(apply_local_noise=False) turns it off)"
        )
    if layer2.central_dp:
        level = _level(
            layer2.central_dp_noise_multiplier,
            layer2.central_dp_epsilon,
            layer2.central_dp_delta,
            "round",
        )
        parts.append(
            f"central Gaussian noise ({level}, basket models clipped to {layer2.clip_norm:g}; "
            "Layer2Config(central_dp_epsilon=None) turns it off)"
        )
    for where, cfg in (("every basket (per client)", layer1), ("Layer 2 (per basket)", layer2)):
        dp = cfg.dp_fedavg
        if dp is not None:
            clip = "adaptive clip norm from" if dp.adaptive else "clip norm"
            parts.append(
                f"DP-FedAvg noise in {where} (noise multiplier {dp.noise_multiplier:g}, "
                f"sampling rate {dp.sample_rate:g}, {clip} {dp.initial_clip_norm:g})"
            )
    return "HierarchicalFederation adds " + " and ".join(parts) if parts else None


def announce(layer1: Layer1Config, layer2: Layer2Config) -> None:
    """Log :func:`noise_notice` on ``hierfed.federation`` (WARNING), once per process and
    distinct message."""
    notice = noise_notice(layer1, layer2)
    if notice is not None and notice not in _announced:
        _announced.add(notice)
        _log.warning(notice)
