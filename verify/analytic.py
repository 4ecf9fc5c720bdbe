"""The gradients of the course, written out by hand in numpy and held against autograd.

Each entry of :data:`FORMULAS` is one textbook backward formula (lectures 2-8): the
numpy side evaluates the formula as written on the slides, in float64, on inputs drawn
from a seeded :class:`numpy.random.Generator`; the torch side builds the same forward pass
in float64 and lets autograd differentiate it. :func:`check_analytic` compares the two
with the ``analytic`` tolerance, one :class:`CheckResult` per formula and gradient.

Conventions shared by every entry:

- Layers (linear, activations, max-pool, batchnorm, LSTM cell) are differentiated through a
  random upstream gradient: the scalar is ``L = Σ dout ⊙ f(inputs)``, so ``dL/df = dout``.
  Random rather than ones, so a transposed or misrouted gradient cannot hide.
- Losses are the scalar ``L`` itself, as :mod:`nnspec.runtime.loop.objectives` defines them
  (mean reduction), and are differentiated with respect to the model output.
- Where a formula has a kink (ReLU at 0, L1 at ŷ = y, hinge at margin 0, ties in a
  max-pool window) the inputs are drawn at least 0.1 away from it, where the subgradient
  is the gradient and both sides must agree exactly.

Torch is imported inside the functions that need it, so importing this module is cheap.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

from .compare import compare
from .results import CheckResult
from .tolerances import tolerance

Arrays = dict[str, np.ndarray]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _away_from_zero(rng: np.random.Generator, shape, low: float = 0.1,
                    high: float = 2.0) -> np.ndarray:
    """Values with |v| in [low, high] and a random sign: never within ``low`` of 0."""
    return rng.uniform(low, high, size=shape) * rng.choice([-1.0, 1.0], size=shape)


class AnalyticGradient:
    """One backward formula of the course: numpy by hand vs torch autograd.

    A subclass supplies ``inputs(rng)`` (the arrays the formula reads, upstream gradients
    included), ``formula(inputs)`` (the hand-written gradients, numpy float64) and
    ``autograd(torch, inputs)`` (the same gradients by autograd, float64). Gradients are
    dicts keyed ``dL/dx``, ``dL/dW``...; both sides must give the same keys and shapes.
    """

    title: str = ""

    def inputs(self, rng: np.random.Generator) -> Arrays:
        raise NotImplementedError

    def formula(self, inputs: Arrays) -> Arrays:
        raise NotImplementedError

    def autograd(self, torch, inputs: Arrays) -> Arrays:
        raise NotImplementedError

    def numpy_gradients(self, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
        """The formula's gradients on fresh inputs drawn from ``rng``, and those inputs."""
        inputs = self.inputs(rng)
        return self.formula(inputs), inputs

    def torch_gradients(self, inputs: Arrays) -> Arrays:
        """The same gradients by torch autograd in float64, on the same inputs."""
        import torch

        with torch.enable_grad():
            grads = self.autograd(torch, inputs)
        return {k: np.asarray(v, dtype=np.float64) for k, v in grads.items()}


def _leaf(torch, array: np.ndarray):
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


def _const(torch, array: np.ndarray):
    return torch.tensor(array, dtype=torch.float64)


def _grad(t) -> np.ndarray:
    return t.grad.detach().numpy().copy()


class Linear(AnalyticGradient):
    """Linear layer y = x·Wᵀ + b, with the weight W in torch's [out, in] layout.

    On the slides the layer is y = x·V + b with V = Wᵀ of shape [in, out], and

        dL/dx = dout·Vᵀ  (= dout·W)
        dL/dV = xᵀ·dout  ([in, out])
        dL/db = Σ_n dout

    The weight gradient is reported in torch's layout, dL/dW = (xᵀ·dout)ᵀ = doutᵀ·x
    ([out, in]), the layout of ``nn.Linear.weight.grad``.
    """

    title = "linear"

    def inputs(self, rng):
        n, fan_in, fan_out = 5, 4, 3  # all different, so a transposition changes the shape
        return {"x": rng.standard_normal((n, fan_in)),
                "W": rng.standard_normal((fan_out, fan_in)),
                "b": rng.standard_normal(fan_out),
                "dout": rng.standard_normal((n, fan_out))}

    def formula(self, inputs):
        x, dout = inputs["x"], inputs["dout"]
        v = inputs["W"].T  # the slides' [in, out] weight
        dv = x.T @ dout
        return {"dL/dx": dout @ v.T, "dL/dW": dv.T, "dL/db": dout.sum(axis=0)}

    def autograd(self, torch, inputs):
        x, w, b = (_leaf(torch, inputs[k]) for k in ("x", "W", "b"))
        torch.nn.functional.linear(x, w, b).backward(_const(torch, inputs["dout"]))
        return {"dL/dx": _grad(x), "dL/dW": _grad(w), "dL/db": _grad(b)}


class SigmoidBCE(AnalyticGradient):
    """Sigmoid then binary cross-entropy, mean over the N outputs, on the logits z.

    With ŷ = σ(z) and L = -(1/N)·Σ[y·log ŷ + (1 - y)·log(1 - ŷ)], the σ'(z) = ŷ(1 - ŷ) of
    the sigmoid cancels the denominators of dL/dyhat:

        dL/dz = (ŷ - y) / N

    Torch runs the two steps separately (``torch.sigmoid`` then the project's ``bce``), so
    autograd sees the uncancelled chain.
    """

    title = "sigmoid + BCE"

    def inputs(self, rng):
        n = 8
        return {"z": rng.uniform(-3.0, 3.0, size=n),
                "y": rng.integers(0, 2, size=n).astype(np.float64)}

    def formula(self, inputs):
        z, y = inputs["z"], inputs["y"]
        return {"dL/dz": (_sigmoid(z) - y) / z.size}

    def autograd(self, torch, inputs):
        from nnspec.runtime.loop.objectives import bce

        z = _leaf(torch, inputs["z"])
        bce(torch.sigmoid(z), _const(torch, inputs["y"])).backward()
        return {"dL/dz": _grad(z)}


class SoftmaxCrossEntropy(AnalyticGradient):
    """Softmax then cross-entropy, mean over the N samples, on the logits z [N, C].

    With L = -(1/N)·Σ_n log softmax(z_n)_{y_n}:

        dL/dz = (softmax(z) - onehot(y)) / N
    """

    title = "softmax + cross-entropy"

    def inputs(self, rng):
        n, c = 6, 5
        return {"z": rng.standard_normal((n, c)) * 2.0, "y": rng.integers(0, c, size=n)}

    def formula(self, inputs):
        z, y = inputs["z"], inputs["y"]
        onehot = np.eye(z.shape[1])[y]
        return {"dL/dz": (_softmax(z) - onehot) / z.shape[0]}

    def autograd(self, torch, inputs):
        from nnspec.runtime.loop.objectives import cross_entropy

        z = _leaf(torch, inputs["z"])
        cross_entropy(z, torch.tensor(inputs["y"], dtype=torch.int64)).backward()
        return {"dL/dz": _grad(z)}


class MSE(AnalyticGradient):
    """Mean squared error L = mean (ŷ - y)² over all elements:

        dL/dyhat = 2(ŷ - y) / numel
    """

    title = "MSE"

    def inputs(self, rng):
        return {"yhat": rng.standard_normal((6, 3)), "y": rng.standard_normal((6, 3))}

    def formula(self, inputs):
        yhat, y = inputs["yhat"], inputs["y"]
        return {"dL/dyhat": 2.0 * (yhat - y) / yhat.size}

    def autograd(self, torch, inputs):
        from nnspec.runtime.loop.objectives import mse

        yhat = _leaf(torch, inputs["yhat"])
        mse(yhat, _const(torch, inputs["y"])).backward()
        return {"dL/dyhat": _grad(yhat)}


class L1(AnalyticGradient):
    """Mean absolute error L = mean |ŷ - y| over all elements:

        dL/dyhat = sign(ŷ - y) / numel

    The inputs keep |ŷ - y| >= 0.1, away from the kink at ŷ = y.
    """

    title = "L1"

    def inputs(self, rng):
        y = rng.standard_normal((6, 3))
        return {"yhat": y + _away_from_zero(rng, y.shape), "y": y}

    def formula(self, inputs):
        yhat, y = inputs["yhat"], inputs["y"]
        return {"dL/dyhat": np.sign(yhat - y) / yhat.size}

    def autograd(self, torch, inputs):
        from nnspec.runtime.loop.objectives import l1

        yhat = _leaf(torch, inputs["yhat"])
        l1(yhat, _const(torch, inputs["y"])).backward()
        return {"dL/dyhat": _grad(yhat)}


class Hinge(AnalyticGradient):
    """Multi-class hinge (Weston-Watkins, torch's ``multi_margin_loss``) on scores s [N, C]:

        L = (1/N)·Σ_n Σ_{j≠y_n} max(0, 1 - s_{n,y_n} + s_{n,j}) / C

    With the margin m_{n,j} = 1 - s_{n,y_n} + s_{n,j} and [·] the indicator, the subgradient:

        dL/ds_{n,j}   = [m_{n,j} > 0] / (N·C)                   for j ≠ y_n
        dL/ds_{n,y_n} = -Σ_{j≠y_n} [m_{n,j} > 0] / (N·C)

    The scores are built so that every margin has |m| in [0.1, 1.5], some active and some
    not, away from the kinks at m = 0.
    """

    title = "multi-class hinge"

    def inputs(self, rng):
        n, c = 6, 4
        y = rng.integers(0, c, size=n)
        s_true = rng.standard_normal(n)
        margins = _away_from_zero(rng, (n, c), high=1.5)
        s = s_true[:, None] - 1.0 + margins  # so that 1 - s_y + s_j = margin
        s[np.arange(n), y] = s_true
        return {"s": s, "y": y}

    def formula(self, inputs):
        s, y = inputs["s"], inputs["y"]
        n, c = s.shape
        rows = np.arange(n)
        margin = 1.0 - s[rows, y][:, None] + s
        active = (margin > 0).astype(np.float64)
        active[rows, y] = 0.0
        ds = active / (n * c)
        ds[rows, y] = -active.sum(axis=1) / (n * c)
        return {"dL/ds": ds}

    def autograd(self, torch, inputs):
        from nnspec.runtime.loop.objectives import hinge

        s = _leaf(torch, inputs["s"])
        hinge(s, torch.tensor(inputs["y"], dtype=torch.int64)).backward()
        return {"dL/ds": _grad(s)}


class ReLU(AnalyticGradient):
    """ReLU y = max(0, x):

        dL/dx = dout ⊙ [x > 0]

    The inputs keep |x| >= 0.1, away from the kink at 0.
    """

    title = "ReLU"

    def inputs(self, rng):
        return {"x": _away_from_zero(rng, (4, 5)), "dout": rng.standard_normal((4, 5))}

    def formula(self, inputs):
        return {"dL/dx": inputs["dout"] * (inputs["x"] > 0)}

    def autograd(self, torch, inputs):
        x = _leaf(torch, inputs["x"])
        torch.relu(x).backward(_const(torch, inputs["dout"]))
        return {"dL/dx": _grad(x)}


class Tanh(AnalyticGradient):
    """tanh:

        dL/dx = dout ⊙ (1 - tanh²(x))
    """

    title = "tanh"

    def inputs(self, rng):
        return {"x": rng.standard_normal((4, 5)) * 1.5, "dout": rng.standard_normal((4, 5))}

    def formula(self, inputs):
        t = np.tanh(inputs["x"])
        return {"dL/dx": inputs["dout"] * (1.0 - t * t)}

    def autograd(self, torch, inputs):
        x = _leaf(torch, inputs["x"])
        torch.tanh(x).backward(_const(torch, inputs["dout"]))
        return {"dL/dx": _grad(x)}


class Sigmoid(AnalyticGradient):
    """Logistic sigmoid σ(x) = 1 / (1 + e^-x):

        dL/dx = dout ⊙ σ(x)·(1 - σ(x))
    """

    title = "sigmoid"

    def inputs(self, rng):
        return {"x": rng.standard_normal((4, 5)) * 2.0, "dout": rng.standard_normal((4, 5))}

    def formula(self, inputs):
        s = _sigmoid(inputs["x"])
        return {"dL/dx": inputs["dout"] * s * (1.0 - s)}

    def autograd(self, torch, inputs):
        x = _leaf(torch, inputs["x"])
        torch.sigmoid(x).backward(_const(torch, inputs["dout"]))
        return {"dL/dx": _grad(x)}


class MaxPool(AnalyticGradient):
    """Max-pooling, 2×2 windows, stride 2, on x [N, C, H, W] (H, W even).

    The gradient is routed: each window's upstream value dout[n, c, i, j] goes to the
    position of that window's maximum, and every other position gets 0:

        dL/dx[n, c, 2i + a, 2j + b] = dout[n, c, i, j] · [(a, b) = argmax of the window]

    The inputs are a shuffled set of distinct values, so no window has a tie.
    """

    title = "max-pool 2x2"

    def inputs(self, rng):
        shape = (2, 3, 4, 6)
        x = (rng.permutation(int(np.prod(shape))) / 10.0 - 3.0).reshape(shape)
        return {"x": x, "dout": rng.standard_normal((2, 3, 2, 3))}

    def formula(self, inputs):
        x, dout = inputs["x"], inputs["dout"]
        n, c, h, w = x.shape
        # windows[n, c, i, j, 2a + b] = x[n, c, 2i + a, 2j + b]
        windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
        windows = windows.reshape(n, c, h // 2, w // 2, 4)
        route = np.eye(4)[windows.argmax(axis=-1)]  # one-hot at each window's maximum
        dx = (route * dout[..., None]).reshape(n, c, h // 2, w // 2, 2, 2)
        return {"dL/dx": dx.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)}

    def autograd(self, torch, inputs):
        x = _leaf(torch, inputs["x"])
        torch.nn.functional.max_pool2d(x, 2, 2).backward(_const(torch, inputs["dout"]))
        return {"dL/dx": _grad(x)}


class BatchNorm(AnalyticGradient):
    """Batch normalisation in training mode (batch statistics), per channel of x [N, C, H, W].

    Forward, with m the number of values per channel (N·H·W; the slides' N for x [N, D]):
    μ = mean x, σ = sqrt(var x + ε) (biased variance), x̂ = (x - μ)/σ, y = γ·x̂ + β.
    The standard backward, sums over the m values of a channel:

        dL/dx = (1/m)·(γ/σ)·(m·dy - Σ dy - x̂·Σ(dy ⊙ x̂))
        dL/dγ = Σ dy ⊙ x̂
        dL/dβ = Σ dy
    """

    title = "batchnorm (training)"
    eps = 1e-5

    def inputs(self, rng):
        n, c, h, w = 4, 3, 2, 3
        return {"x": rng.standard_normal((n, c, h, w)) * 2.0 + 0.5,
                "gamma": rng.uniform(0.5, 2.0, size=c) * rng.choice([-1.0, 1.0], size=c),
                "beta": rng.standard_normal(c),
                "dout": rng.standard_normal((n, c, h, w))}

    def formula(self, inputs):
        x, dy = inputs["x"], inputs["dout"]
        axes = (0, 2, 3)
        m = x.size // x.shape[1]
        gamma = inputs["gamma"].reshape(1, -1, 1, 1)
        mu = x.mean(axis=axes, keepdims=True)
        sigma = np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + self.eps)
        xhat = (x - mu) / sigma
        sum_dy = dy.sum(axis=axes, keepdims=True)
        sum_dy_xhat = (dy * xhat).sum(axis=axes, keepdims=True)
        dx = (1.0 / m) * (gamma / sigma) * (m * dy - sum_dy - xhat * sum_dy_xhat)
        return {"dL/dx": dx, "dL/dgamma": sum_dy_xhat.reshape(-1), "dL/dbeta": sum_dy.reshape(-1)}

    def autograd(self, torch, inputs):
        x, gamma, beta = (_leaf(torch, inputs[k]) for k in ("x", "gamma", "beta"))
        y = torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True,
                                           eps=self.eps)
        y.backward(_const(torch, inputs["dout"]))
        return {"dL/dx": _grad(x), "dL/dgamma": _grad(gamma), "dL/dbeta": _grad(beta)}


class LSTMCell(AnalyticGradient):
    """One LSTM cell step, torch's ``nn.LSTMCell`` (gate order i, f, g, o):

        a = x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh = [a_i, a_f, a_g, a_o]   ([N, 4H])
        i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
        c' = f⊙c + i⊙g,  h' = o⊙tanh(c')

    Backward from random upstream dh', dc' (L = Σ dh'⊙h' + Σ dc'⊙c'):

        δc = dc' + dh'⊙o⊙(1 - tanh²(c'))          (the total gradient reaching c')
        do = dh'⊙tanh(c'), di = δc⊙g, dg = δc⊙i, df = δc⊙c
        da = [di⊙i(1-i), df⊙f(1-f), dg⊙(1-g²), do⊙o(1-o)]
        dx = da·W_ih, dh = da·W_hh, dc = δc⊙f
        dW_ih = daᵀ·x, dW_hh = daᵀ·h  (torch's [4H, in] and [4H, H] layouts)
        db_ih = db_hh = Σ_n da
    """

    title = "LSTM cell"

    def inputs(self, rng):
        n, d, hidden = 3, 4, 5
        scale = 1.0 / np.sqrt(hidden)
        return {"x": rng.standard_normal((n, d)),
                "h": rng.standard_normal((n, hidden)),
                "c": rng.standard_normal((n, hidden)),
                "W_ih": rng.uniform(-scale, scale, size=(4 * hidden, d)) * 2.0,
                "W_hh": rng.uniform(-scale, scale, size=(4 * hidden, hidden)) * 2.0,
                "b_ih": rng.standard_normal(4 * hidden) * 0.5,
                "b_hh": rng.standard_normal(4 * hidden) * 0.5,
                "dh_next": rng.standard_normal((n, hidden)),
                "dc_next": rng.standard_normal((n, hidden))}

    def formula(self, inputs):
        x, h, c = inputs["x"], inputs["h"], inputs["c"]
        w_ih, w_hh = inputs["W_ih"], inputs["W_hh"]
        dh_next, dc_next = inputs["dh_next"], inputs["dc_next"]
        a = x @ w_ih.T + inputs["b_ih"] + h @ w_hh.T + inputs["b_hh"]
        a_i, a_f, a_g, a_o = np.split(a, 4, axis=1)
        i, f, g, o = _sigmoid(a_i), _sigmoid(a_f), np.tanh(a_g), _sigmoid(a_o)
        c_next = f * c + i * g
        t = np.tanh(c_next)
        dc_total = dc_next + dh_next * o * (1.0 - t * t)
        d_o = dh_next * t
        d_i, d_g, d_f = dc_total * g, dc_total * i, dc_total * c
        da = np.concatenate([d_i * i * (1.0 - i), d_f * f * (1.0 - f),
                             d_g * (1.0 - g * g), d_o * o * (1.0 - o)], axis=1)
        db = da.sum(axis=0)
        return {"dL/dx": da @ w_ih, "dL/dh": da @ w_hh, "dL/dc": dc_total * f,
                "dL/dW_ih": da.T @ x, "dL/dW_hh": da.T @ h,
                "dL/db_ih": db, "dL/db_hh": db.copy()}

    def autograd(self, torch, inputs):
        names = ("x", "h", "c", "W_ih", "W_hh", "b_ih", "b_hh")
        x, h, c, w_ih, w_hh, b_ih, b_hh = (_leaf(torch, inputs[k]) for k in names)
        h_next, c_next = torch.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
        loss = ((h_next * _const(torch, inputs["dh_next"])).sum()
                + (c_next * _const(torch, inputs["dc_next"])).sum())
        loss.backward()
        return {"dL/dx": _grad(x), "dL/dh": _grad(h), "dL/dc": _grad(c),
                "dL/dW_ih": _grad(w_ih), "dL/dW_hh": _grad(w_hh),
                "dL/db_ih": _grad(b_ih), "dL/db_hh": _grad(b_hh)}


FORMULAS: dict[str, AnalyticGradient] = {
    "linear": Linear(),
    "sigmoid_bce": SigmoidBCE(),
    "softmax_cross_entropy": SoftmaxCrossEntropy(),
    "mse": MSE(),
    "l1": L1(),
    "hinge": Hinge(),
    "relu": ReLU(),
    "tanh": Tanh(),
    "sigmoid": Sigmoid(),
    "maxpool": MaxPool(),
    "batchnorm": BatchNorm(),
    "lstm_cell": LSTMCell(),
}


def _rng(seed: int, name: str) -> np.random.Generator:
    """A generator per formula, so a formula's inputs do not depend on which others ran."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def check_analytic(names: Iterable[str] | None = None, seed: int = 0) -> list[CheckResult]:
    """Every formula of ``names`` (default: all of :data:`FORMULAS`) against autograd.

    One result per formula and gradient, subject ``"<title>: dL/d<input>"``; ``error`` is
    the largest absolute difference, ``tolerance`` the ``analytic`` bound, and ``detail``
    names the worst element (by excess over its bound) with both values.
    """
    chosen = list(FORMULAS) if names is None else list(names)
    unknown = [n for n in chosen if n not in FORMULAS]
    if unknown:
        raise KeyError(f"unknown analytic formula(s) {', '.join(map(repr, unknown))}; "
                       f"known: {', '.join(FORMULAS)}")
    tol = tolerance("analytic")
    try:
        import torch  # noqa: F401
    except ImportError:
        return [CheckResult("analytic", FORMULAS[n].title or n, "skip", tolerance=tol.bound,
                            detail="torch is not installed", data={"formula": n})
                for n in chosen]

    results: list[CheckResult] = []
    for name in chosen:
        entry = FORMULAS[name]
        title = entry.title or name
        ours, inputs = entry.numpy_gradients(_rng(seed, name))
        theirs = entry.torch_gradients(inputs)
        for grad in list(theirs) + [k for k in ours if k not in theirs]:
            subject = f"{title}: {grad}"
            data = {"formula": name, "gradient": grad, "seed": seed}
            if grad not in ours or grad not in theirs:
                side = "the formula" if grad not in ours else "autograd"
                results.append(CheckResult("analytic", subject, "fail", float("inf"), tol.bound,
                                           f"{side} gives no {grad}", data=data))
                continue
            cmp = compare(ours[grad], theirs[grad], tol)
            data.update(index=list(cmp.index), shape=list(np.shape(theirs[grad])))
            results.append(CheckResult("analytic", subject, "pass" if cmp.ok else "fail",
                                       cmp.max_error, tol.bound, cmp.describe(grad), data=data))
    return results
