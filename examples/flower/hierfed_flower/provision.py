"""Provision the private path: every party's keys and pinned data, one directory each.

    python -m hierfed_flower.provision DIR [--members 6] [--domains 2] [--rounds 3]
        [--clip 10] [--sigma 0.01] [--gamma 1e-4] [--n-min DOMAINS] [--rule trimmed_mean]
        [--trim-ratio 0.2]

Member ``i`` (``partition-id=i``) is member ``"<i>"`` in basket ``domain-<i mod domains>``;
each basket gets one aggregator. Hand ``DIR/member-<i>``, ``DIR/basket-<b>`` and
``DIR/server`` to their parties (``--node-config "provision-dir='...'"``); keep
``DIR/operator`` offline (see :mod:`hierfed.integrations.private_provision`). ``--sigma`` is
the noise (model units) no coalition of the server and ``colluders`` baskets can remove;
with 2 baskets and the default it protects little (the example shows the mechanics and
reports the epsilon spent): raise it, or the number of baskets, for real privacy.
"""

from __future__ import annotations

import argparse

from hierfed import Layer1Config
from hierfed.integrations.private_provision import provision
from hierfed.privacy.distributed import DistributedDiscreteGaussian

from . import task


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and write the directories."""
    p = argparse.ArgumentParser(prog="python -m hierfed_flower.provision")
    p.add_argument("root")
    p.add_argument("--members", type=int, default=6)
    p.add_argument("--domains", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clip", type=float, default=10.0)
    p.add_argument("--sigma", type=float, default=0.01)
    p.add_argument("--gamma", type=float, default=1e-4)
    p.add_argument("--n-min", type=int, default=None, help="fewest baskets a round releases with")
    p.add_argument("--rule", default="trimmed_mean")
    p.add_argument("--trim-ratio", type=float, default=0.2)
    a = p.parse_args(argv)
    members = {str(i): f"domain-{i % a.domains}" for i in range(a.members)}
    ddg = DistributedDiscreteGaussian(
        clip=a.clip,
        gamma=a.gamma,
        sigma=a.sigma,
        n_min=a.domains if a.n_min is None else a.n_min,
        dim=task.model_size(),
    )
    layer1 = Layer1Config(
        aggregation_method=a.rule, trim_ratio=a.trim_ratio, min_updates=1, apply_local_noise=False
    )
    provision(a.root, members, ddg=ddg, layer1=layer1, rounds=a.rounds)
    print(f"provisioned {a.members} members, {a.domains} baskets, {a.rounds} rounds in {a.root}")


if __name__ == "__main__":
    main()
