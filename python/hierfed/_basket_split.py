"""How an oversized basket's clients are divided in two: 2-means on fingerprints, or halving.

Pure functions on arrays, kept apart from :mod:`hierfed.basket` so the partition rules can be
read and tested on their own. Both return a boolean label per client (``True``: the second
side), never leave a side empty, and are deterministic for their inputs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["random_halves", "two_means"]

LLOYD_ITERATIONS = 25


def _sq_dist_to(points: NDArray[np.float64], centers: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(n, 2)`` squared distances from every point to each of the two centres."""
    diff = points[:, None, :] - centers[None, :, :]
    out: NDArray[np.float64] = np.einsum("nkd,nkd->nk", diff, diff)
    return out


def two_means(points: NDArray[np.float64], cap: int) -> NDArray[np.bool_] | None:
    """Split ``points`` into two clusters by 2-means with a deterministic start.

    The start is the farthest pair found in two sweeps: ``a``, the point farthest from the
    centroid, and ``b``, the point farthest from ``a`` (ties to the lower index), so no random
    k-means++ draw is needed and equal inputs give equal splits. Lloyd iterations follow
    (assignment ties go to ``a``'s side) until the labels stop changing, at most
    :data:`LLOYD_ITERATIONS` times. Finally, if a side holds more than ``cap`` points, the
    points of that side with the smallest margin (distance to the other centre minus distance
    to their own) move across until it holds ``cap``, so a split can always satisfy a basket
    size limit; ``cap`` is raised to ``ceil(n / 2)`` when lower, which keeps both sides
    non-empty.

    Parameters
    ----------
    points
        ``(n, d)`` finite float64 fingerprints, ``n >= 2``.
    cap
        The largest size either side may have.

    Returns
    -------
    Boolean labels (``True``: the side of ``b``), or ``None`` when all points are equal and
    no split by position exists.
    """
    n = points.shape[0]
    centroid = points.mean(axis=0)
    a = int(np.argmax(((points - centroid) ** 2).sum(axis=1)))
    dist_a = ((points - points[a]) ** 2).sum(axis=1)
    b = int(np.argmax(dist_a))
    if dist_a[b] == 0.0:
        return None
    centers = np.stack([points[a], points[b]])
    dist = _sq_dist_to(points, centers)
    labels = dist[:, 1] < dist[:, 0]  # a is on side 0 and b on side 1 (distance 0 to itself)
    for _ in range(LLOYD_ITERATIONS):
        centers = np.stack([points[~labels].mean(axis=0), points[labels].mean(axis=0)])
        dist = _sq_dist_to(points, centers)
        new = dist[:, 1] < dist[:, 0]
        if new.all() or not new.any() or bool((new == labels).all()):
            break  # converged, or a side would empty: keep the last valid labels
        labels = new
    cap = max(int(cap), -(-n // 2))
    for side in (False, True):
        members = np.flatnonzero(labels == side)
        excess = members.size - cap
        if excess > 0:
            own, other = (0, 1) if not side else (1, 0)
            margin = dist[members, other] - dist[members, own]
            movers = members[np.argsort(margin, kind="stable")[:excess]]
            labels[movers] = not side
    return labels


def random_halves(n: int, rng: np.random.Generator) -> NDArray[np.bool_]:
    """Labels of a uniformly random halving: ``n // 2`` points get ``True``, the rest ``False``.

    The sizes differ by at most one and both sides are non-empty for ``n >= 2``.
    """
    labels = np.zeros(n, dtype=np.bool_)
    labels[rng.permutation(n)[: n // 2]] = True
    return labels
