"""Models in numpy on flat float64 parameter vectors, and a client's local SGD.

Two models, both trained with the mean softmax cross-entropy plus ``l2 / 2 |weights|^2``
(biases are not decayed):

- :class:`LogisticRegression`: multinomial logistic regression, ``theta = [W (p x C), b (C)]``;
  starts at zero.
- :class:`MLP`: one hidden layer of ``tanh`` units,
  ``theta = [W1 (p x H), b1 (H), W2 (H x C), b2 (C)]``; weights start at
  ``N(0, 1 / fan_in)``, biases at zero.

:func:`local_sgd` is what an honest client runs: a few epochs of minibatch SGD from the
global model on its own data, returning the model delta clipped to an L2 norm. Everything
is deterministic given the generator passed in.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["MLP", "MODELS", "LogisticRegression", "Model", "accuracy", "local_sgd", "make_model"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

MODELS = ("logreg", "mlp")


class Model(Protocol):
    """What the simulation needs of a model."""

    n_params: int

    def init(self, rng: np.random.Generator) -> FloatArray:
        """Starting parameters."""
        ...

    def logits(self, theta: FloatArray, x: FloatArray) -> FloatArray:
        """Class scores ``(n, C)``."""
        ...

    def loss_grad(self, theta: FloatArray, x: FloatArray, y: IntArray) -> tuple[float, FloatArray]:
        """Mean regularised cross-entropy on ``(X, y)`` and its gradient."""
        ...

    def per_example_grads(self, theta: FloatArray, x: FloatArray, y: IntArray) -> FloatArray:
        """``(n, n_params)``: row ``i`` is the gradient of the regularised loss on record
        ``i`` alone (for DP-SGD's per-record clipping)."""
        ...


def _outer(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise outer products ``a_i b_i^T``, flattened: ``(n, p * q)``."""
    out: FloatArray = (a[:, :, None] * b[:, None, :]).reshape(a.shape[0], -1)
    return out


def _softmax_ce(logits: FloatArray, y: IntArray) -> tuple[float, FloatArray]:
    """Mean cross-entropy and its gradient with respect to the logits (stable)."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = y.size
    loss = -float(log_p[np.arange(n), y].mean())
    d = np.exp(log_p)
    d[np.arange(n), y] -= 1.0
    return loss, d / n


class LogisticRegression:
    """Multinomial logistic regression on ``n_features`` inputs and ``n_classes`` classes."""

    def __init__(self, n_features: int, n_classes: int, l2: float = 1e-4) -> None:
        self.p, self.c, self.l2 = n_features, n_classes, l2
        self.n_params = n_features * n_classes + n_classes

    def _unpack(self, theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        k = self.p * self.c
        return theta[:k].reshape(self.p, self.c), theta[k:]

    def init(self, rng: np.random.Generator) -> FloatArray:
        """Zeros (the loss is convex; no symmetry to break)."""
        return np.zeros(self.n_params)

    def logits(self, theta: FloatArray, x: FloatArray) -> FloatArray:
        """``X W + b``."""
        w, b = self._unpack(theta)
        out: FloatArray = x @ w + b
        return out

    def loss_grad(self, theta: FloatArray, x: FloatArray, y: IntArray) -> tuple[float, FloatArray]:
        """Mean cross-entropy plus ``l2 / 2 |W|^2``, and its gradient."""
        w, b = self._unpack(theta)
        loss, d = _softmax_ce(x @ w + b, y)
        grad = np.empty_like(theta)
        gw, gb = self._unpack(grad)
        np.matmul(x.T, d, out=gw)
        gw += self.l2 * w
        gb[:] = d.sum(axis=0)
        return loss + 0.5 * self.l2 * float(np.dot(w.ravel(), w.ravel())), grad

    def per_example_grads(self, theta: FloatArray, x: FloatArray, y: IntArray) -> FloatArray:
        """Each record's gradient: ``[x_i d_i^T + l2 W, d_i]`` with ``d_i`` its softmax
        minus one-hot."""
        w, b = self._unpack(theta)
        d = _softmax_ce(x @ w + b, y)[1] * y.size
        k = self.p * self.c
        out = np.empty((y.size, self.n_params))
        out[:, :k] = _outer(x, d) + self.l2 * w.ravel()
        out[:, k:] = d
        return out


class MLP:
    """One hidden layer of ``n_hidden`` tanh units."""

    def __init__(self, n_features: int, n_hidden: int, n_classes: int, l2: float = 1e-4) -> None:
        self.p, self.h, self.c, self.l2 = n_features, n_hidden, n_classes, l2
        self.n_params = n_features * n_hidden + n_hidden + n_hidden * n_classes + n_classes

    def _unpack(self, theta: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        p, h, c = self.p, self.h, self.c
        a, b_, cc = p * h, p * h + h, p * h + h + h * c
        return theta[:a].reshape(p, h), theta[a:b_], theta[b_:cc].reshape(h, c), theta[cc:]

    def init(self, rng: np.random.Generator) -> FloatArray:
        """Weights ``N(0, 1 / fan_in)``, biases zero."""
        theta = np.zeros(self.n_params)
        w1, _, w2, _ = self._unpack(theta)
        w1[:] = rng.normal(0.0, 1.0 / np.sqrt(self.p), size=w1.shape)
        w2[:] = rng.normal(0.0, 1.0 / np.sqrt(self.h), size=w2.shape)
        return theta

    def logits(self, theta: FloatArray, x: FloatArray) -> FloatArray:
        """``tanh(X W1 + b1) W2 + b2``."""
        w1, b1, w2, b2 = self._unpack(theta)
        out: FloatArray = np.tanh(x @ w1 + b1) @ w2 + b2
        return out

    def loss_grad(self, theta: FloatArray, x: FloatArray, y: IntArray) -> tuple[float, FloatArray]:
        """Mean cross-entropy plus ``l2 / 2 (|W1|^2 + |W2|^2)``, and its gradient."""
        w1, b1, w2, b2 = self._unpack(theta)
        hid = np.tanh(x @ w1 + b1)
        loss, d = _softmax_ce(hid @ w2 + b2, y)
        grad = np.empty_like(theta)
        gw1, gb1, gw2, gb2 = self._unpack(grad)
        np.matmul(hid.T, d, out=gw2)
        gw2 += self.l2 * w2
        gb2[:] = d.sum(axis=0)
        dh = (d @ w2.T) * (1.0 - hid * hid)
        np.matmul(x.T, dh, out=gw1)
        gw1 += self.l2 * w1
        gb1[:] = dh.sum(axis=0)
        reg = 0.5 * self.l2 * (float(np.sum(w1 * w1)) + float(np.sum(w2 * w2)))
        return loss + reg, grad

    def per_example_grads(self, theta: FloatArray, x: FloatArray, y: IntArray) -> FloatArray:
        """Each record's gradient, by the same backpropagation row by row."""
        w1, b1, w2, b2 = self._unpack(theta)
        hid = np.tanh(x @ w1 + b1)
        d = _softmax_ce(hid @ w2 + b2, y)[1] * y.size
        dh = (d @ w2.T) * (1.0 - hid * hid)
        p, h, c = self.p, self.h, self.c
        a, b_, cc = p * h, p * h + h, p * h + h + h * c
        out = np.empty((y.size, self.n_params))
        out[:, :a] = _outer(x, dh) + self.l2 * w1.ravel()
        out[:, a:b_] = dh
        out[:, b_:cc] = _outer(hid, d) + self.l2 * w2.ravel()
        out[:, cc:] = d
        return out


def make_model(name: str, n_features: int, n_classes: int, hidden: int = 32) -> Model:
    """The model ``name`` (``"logreg"`` or ``"mlp"``) for this problem size."""
    if name == "logreg":
        return LogisticRegression(n_features, n_classes)
    if name == "mlp":
        return MLP(n_features, hidden, n_classes)
    raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")


def accuracy(model: Model, theta: FloatArray, x: FloatArray, y: IntArray) -> tuple[float, float]:
    """Accuracy and mean (unregularised) cross-entropy of ``theta`` on ``(X, y)``."""
    logits = model.logits(theta, x)
    loss, _ = _softmax_ce(logits, y)
    return float(np.mean(np.argmax(logits, axis=1) == y)), loss


def local_sgd(
    model: Model,
    theta: FloatArray,
    x: FloatArray,
    y: IntArray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    clip_norm: float,
    rng: np.random.Generator,
) -> FloatArray:
    """A client's update: ``epochs`` of minibatch SGD from ``theta``, the delta clipped.

    Each epoch visits the samples in an order drawn from ``rng``, in batches of
    ``batch_size`` (the last may be smaller). Returns ``theta_local - theta`` scaled down to
    L2 norm ``clip_norm`` when longer (per-client clipping).
    """
    w = theta.copy()
    n = y.size
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            _, g = model.loss_grad(w, x[batch], y[batch])
            w -= learning_rate * g
    delta = w - theta
    norm = float(np.linalg.norm(delta))
    if norm > clip_norm:
        delta *= clip_norm / norm
    return delta
