"""Recurrent layers over a sequence [T, F]: rnn, lstm, gru (torch.nn.RNN / LSTM / GRU).

Common to the three (G gate blocks per layer: rnn 1, lstm 4, gru 3; dirs = 2 when
bidirectional, else 1; in_k = F for layer 0, H·dirs above it):

- select=sequence: every step's hidden state of the last layer, [T, H·dirs];
- select=last: the final hidden state h_n of the last layer, [H·dirs], directions
  concatenated (forward after x_T, backward after x_1). For a bidirectional net this is
  not output[-1], whose backward half has read x_T alone; for one direction it is.
- Params, torch's names (suffix `_reverse` for the backward direction), per layer k and
  direction: weight_ih_l{k} [G·H, in_k], weight_hh_l{k} [G·H, H], bias_ih_l{k} [G·H],
  bias_hh_l{k} [G·H] (biases when bias).
- MACs = T · Σ_k dirs · G·H·(in_k + H): the two matrix products per step; biases and the
  gates' elementwise products are not counted.
- Lowering: torch with batch_first=True; h_n is [layers·dirs, N, H], the last layer's
  directions are its last dirs rows. ONNX: one RNN / LSTM / GRU node per layer (they are
  single-layer) on [T, N, F] (layout 0: onnxruntime has no batch-major layout), the gate
  blocks of each weight reordered in the graph (Gather of rows; the initializers stay the
  state_dict's tensors), Y [T, dirs, N, H] reshaped to [T, N, H·dirs] for the next layer,
  and Y_h [dirs, N, H] of the last layer to [N, H·dirs] for select=last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from .. import codes
from ..ir import TensorType
from .arith import expect_rank
from .base import BadSample, Op, TorchCall, register, sample
from .linear import expect_float

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph


def _sigmoid(v: np.ndarray) -> np.ndarray:
    """σ(v) = 1 / (1 + e^-v), as e^-log(1 + e^-v) so that no e^-v overflows."""
    import numpy as np
    return np.exp(-np.logaddexp(0.0, -v))


class _Recurrent(Op):
    """Shared by rnn, lstm and gru: only the number of gate blocks G differs."""

    family: ClassVar[str] = "recurrent"
    positional: ClassVar[tuple[str, ...]] = ("hidden", "layers")
    gates: ClassVar[int] = 1
    torch_cls: ClassVar[str] = ""  # the batch-first wrapper in compiler/torch_modules.py
    onnx_op: ClassVar[str] = ""
    onnx_gates: ClassVar[tuple[int, ...]] = (0,)  # ONNX's gate blocks, as torch block indices

    hidden: int = Field(gt=0)
    layers: int = Field(default=1, gt=0)
    bidirectional: bool = False
    bias: bool = True
    select: Literal["last", "sequence"] = "last"

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    def _in_sizes(self, x: TensorType) -> list[int]:
        return [x.shape[1]] + [self.hidden * self.dirs] * (self.layers - 1)

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        expect_rank(x.rank, (2,), self.kind, "[T, F]: time steps, features")
        expect_float(x, self.kind)
        width = self.hidden * self.dirs
        return TensorType(shape=(x.shape[0], width) if self.select == "sequence" else (width,))

    def param_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        rows = self.gates * self.hidden
        shapes: dict[str, tuple[int, ...]] = {}
        for k, in_k in enumerate(self._in_sizes(inputs[0])):
            for suffix in ("", "_reverse")[: self.dirs]:
                shapes[f"weight_ih_l{k}{suffix}"] = (rows, in_k)
                shapes[f"weight_hh_l{k}{suffix}"] = (rows, self.hidden)
                if self.bias:
                    shapes[f"bias_ih_l{k}{suffix}"] = (rows,)
                    shapes[f"bias_hh_l{k}{suffix}"] = (rows,)
        return shapes

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        (x,) = inputs
        per_step = sum(
            self.dirs * self.gates * self.hidden * (in_k + self.hidden)
            for in_k in self._in_sizes(x)
        )
        return x.shape[0] * per_step

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        return TorchCall(self.torch_cls, {
            "input_size": x.shape[1], "hidden_size": self.hidden, "num_layers": self.layers,
            "bias": self.bias, "bidirectional": self.bidirectional, "select": self.select,
        })

    def onnx_attrs(self) -> dict[str, object]:
        return {}

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        (x,) = types
        steps, hidden, dirs = x.shape[0], self.hidden, self.dirs
        suffixes = ("", "_reverse")[:dirs]

        def stacked(keys: list[str], shape: list[int]) -> str:
            """Concatenate the blocks of G·H rows, put each block's gates in ONNX order."""
            tensors = [g.initializer(f"{name}.{key}", params[key]) for key in keys]
            joined = tensors[0] if len(tensors) == 1 else g.node("Concat", tensors, axis=0)
            rows = [block * self.gates * hidden + gate * hidden + i
                    for block in range(len(keys)) for gate in self.onnx_gates for i in range(hidden)]
            reordered = g.node("Gather", [joined, g.ints(rows)], axis=0)
            return g.reshape(reordered, shape)

        sequence = g.node("Transpose", inputs, perm=[1, 0, 2])  # [T, N, F]
        rows = self.gates * hidden
        state = ""
        for k, in_k in enumerate(self._in_sizes(x)):
            w = stacked([f"weight_ih_l{k}{s}" for s in suffixes], [dirs, rows, in_k])
            r = stacked([f"weight_hh_l{k}{s}" for s in suffixes], [dirs, rows, hidden])
            b = stacked([f"bias_{io}_l{k}{s}" for s in suffixes for io in ("ih", "hh")],
                        [dirs, 2 * rows]) if self.bias else ""
            last = k == self.layers - 1
            y = "" if last and self.select == "last" else g.fresh(f"{name}/Y_l{k}")
            state = g.fresh(f"{name}/Y_h_l{k}")
            g.node(self.onnx_op, [sequence, w, r, b], outputs=[y, state], hidden_size=hidden,
                   direction="bidirectional" if dirs == 2 else "forward", **self.onnx_attrs())
            if y and not last:  # [T, dirs, N, H] -> [T, N, H·dirs]
                sequence = g.reshape(g.node("Transpose", [y], perm=[0, 2, 1, 3]),
                                     [steps, 0, dirs * hidden])
        if self.select == "sequence":  # [T, dirs, N, H] -> [N, T, H·dirs]
            return g.reshape(g.node("Transpose", [y], perm=[2, 0, 1, 3]), [0, steps, dirs * hidden])
        # h_n of the last layer [dirs, N, H] -> [N, H·dirs], forward then backward
        return g.reshape(g.node("Transpose", [state], perm=[1, 0, 2]), [0, dirs * hidden])

    def cell(self, gi: np.ndarray, gh: np.ndarray, h: np.ndarray, c: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """One step from gi = W_ih·x_t + b_ih and gh = W_hh·h_{t-1} + b_hh ([N, G·H] each,
        torch's gate blocks): the new (h_t, c_t); c is the LSTM's cell, carried unused by the
        others."""
        raise NotImplementedError

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """An explicit loop over the steps of each layer and direction (the backward one from
        x_T down to x_1), h_0 = c_0 = 0; a layer's input is the one below's outputs, the
        directions concatenated. select=last: the last layer's final h of each direction."""
        import numpy as np
        sequence = np.asarray(inputs[0], np.float64)  # [N, T, F]
        n, steps = sequence.shape[:2]
        rows = self.gates * self.hidden
        finals: list[np.ndarray] = []
        for k in range(self.layers):
            outputs, finals = [], []
            for suffix in ("", "_reverse")[: self.dirs]:
                w_ih, w_hh = params[f"weight_ih_l{k}{suffix}"], params[f"weight_hh_l{k}{suffix}"]
                b_ih = params[f"bias_ih_l{k}{suffix}"] if self.bias else np.zeros(rows)
                b_hh = params[f"bias_hh_l{k}{suffix}"] if self.bias else np.zeros(rows)
                h = np.zeros((n, self.hidden))
                c = np.zeros((n, self.hidden))
                ys = np.zeros((n, steps, self.hidden))
                order = range(steps) if not suffix else range(steps - 1, -1, -1)
                for t in order:
                    h, c = self.cell(sequence[:, t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh, h, c)
                    ys[:, t] = h
                outputs.append(ys)
                finals.append(h)
            sequence = np.concatenate(outputs, axis=-1)  # [N, T, H·dirs]
        return sequence if self.select == "sequence" else np.concatenate(finals, axis=-1)


@register
class RNN(_Recurrent):
    """Elman recurrent layer.

    h_t = act(W_ih·x_t + b_ih + W_hh·h_{t-1} + b_hh), h_0 = 0, act = tanh or relu.

    Shape: [T, F] -> [H·dirs] (select=last) or [T, H·dirs] (select=sequence).
    Params: per layer k and direction: weight_ih_l{k} [H, in_k], weight_hh_l{k} [H, H],
    bias_ih_l{k} [H], bias_hh_l{k} [H] (G = 1; see the module docstring).
    MACs: T · Σ_k dirs · H·(in_k + H).
    """

    kind: ClassVar[str] = "rnn"
    gates: ClassVar[int] = 1
    torch_cls: ClassVar[str] = "RNN"
    onnx_op: ClassVar[str] = "RNN"

    nonlinearity: Literal["tanh", "relu"] = "tanh"

    samples = (
        sample({"hidden": 5}, (7, 3), note="select=last, one direction"),
        sample({"hidden": 5, "layers": 2, "nonlinearity": "relu", "bidirectional": True,
                "select": "sequence"}, (7, 3), note="relu; ONNX: a layer's Y feeds the next"),
    )
    bad_samples = (
        BadSample(call="rnn(0)", inputs=((7, 3),), code=codes.BAD_ARG),
        BadSample(call="rnn(5)", inputs=((7,),), code=codes.RANK),
        BadSample(call='rnn(5, nonlinearity="sigmoid")', inputs=((7, 3),), code=codes.BAD_ARG),
    )

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        call = super().torch_call(inputs)
        return TorchCall(call.cls, {**call.kwargs, "nonlinearity": self.nonlinearity})

    def onnx_attrs(self) -> dict[str, object]:
        return {"activations": [self.nonlinearity.capitalize()] * self.dirs}

    def cell(self, gi: np.ndarray, gh: np.ndarray, h: np.ndarray, c: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """h_t = act(W_ih·x_t + b_ih + W_hh·h_{t-1} + b_hh)."""
        import numpy as np
        pre = gi + gh
        return (np.tanh(pre) if self.nonlinearity == "tanh" else np.maximum(pre, 0.0)), c


@register
class LSTM(_Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), torch's form:

    i_t = σ(W_ii·x_t + b_ii + W_hi·h_{t-1} + b_hi)        input gate
    f_t = σ(W_if·x_t + b_if + W_hf·h_{t-1} + b_hf)        forget gate
    g_t = tanh(W_ig·x_t + b_ig + W_hg·h_{t-1} + b_hg)     candidate cell
    o_t = σ(W_io·x_t + b_io + W_ho·h_{t-1} + b_ho)        output gate
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t,  h_t = o_t ⊙ tanh(c_t),  h_0 = c_0 = 0

    The rows of weight_ih are [W_ii; W_if; W_ig; W_io] (torch order i, f, g, o; ONNX LSTM
    wants i, o, f, c: the lowering permutes the blocks). select=last returns h_n, not c_n.

    Shape: [T, F] -> [H·dirs] (select=last) or [T, H·dirs] (select=sequence).
    Params: per layer k and direction: weight_ih_l{k} [4H, in_k], weight_hh_l{k} [4H, H],
    bias_ih_l{k} [4H], bias_hh_l{k} [4H] (G = 4; see the module docstring).
    MACs: T · Σ_k dirs · 4H·(in_k + H).
    """

    kind: ClassVar[str] = "lstm"
    gates: ClassVar[int] = 4
    torch_cls: ClassVar[str] = "LSTM"
    onnx_op: ClassVar[str] = "LSTM"
    onnx_gates: ClassVar[tuple[int, ...]] = (0, 3, 1, 2)  # ONNX i, o, f, c = torch i, o, f, g

    samples = (
        sample({"hidden": 6, "bidirectional": True}, (5, 4),
               note="select=last: h_n of both directions, not output[-1]"),
        sample({"hidden": 6, "layers": 2, "bidirectional": True, "select": "sequence"}, (5, 4)),
        sample({"hidden": 3, "bias": False}, (5, 4), note="ONNX: no B input"),
        sample({"hidden": 4, "layers": 3, "bidirectional": True}, (6, 5),
               note="ONNX: middle layer between two, last layer without Y"),
    )
    bad_samples = (
        BadSample(call="lstm(5, 0)", inputs=((7, 3),), code=codes.BAD_ARG),
        BadSample(call="lstm(5)", inputs=((7, 3, 2),), code=codes.RANK),
    )

    def cell(self, gi: np.ndarray, gh: np.ndarray, h: np.ndarray, c: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """Gates i, f, g, o from the row blocks in torch order; c_t = f⊙c + i⊙g,
        h_t = o⊙tanh(c_t)."""
        import numpy as np
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c


@register
class GRU(_Recurrent):
    """Gated recurrent unit (Cho et al. 2014), torch's form:

    r_t = σ(W_ir·x_t + b_ir + W_hr·h_{t-1} + b_hr)        reset gate
    z_t = σ(W_iz·x_t + b_iz + W_hz·h_{t-1} + b_hz)        update gate
    n_t = tanh(W_in·x_t + b_in + r_t ⊙ (W_hn·h_{t-1} + b_hn))
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1},  h_0 = 0

    Rows in torch order r, z, n (ONNX GRU wants z, r, h and linear_before_reset=1 for this
    form, with the reset applied after the product).

    Shape: [T, F] -> [H·dirs] (select=last) or [T, H·dirs] (select=sequence).
    Params: per layer k and direction: weight_ih_l{k} [3H, in_k], weight_hh_l{k} [3H, H],
    bias_ih_l{k} [3H], bias_hh_l{k} [3H] (G = 3; see the module docstring).
    MACs: T · Σ_k dirs · 3H·(in_k + H).
    """

    kind: ClassVar[str] = "gru"
    gates: ClassVar[int] = 3
    torch_cls: ClassVar[str] = "GRU"
    onnx_op: ClassVar[str] = "GRU"
    onnx_gates: ClassVar[tuple[int, ...]] = (1, 0, 2)  # ONNX z, r, h = torch z, r, n

    samples = (
        sample({"hidden": 5, "layers": 2}, (6, 3)),
        sample({"hidden": 5, "bidirectional": True, "select": "sequence"}, (6, 3)),
        sample({"hidden": 5, "layers": 3, "bidirectional": True}, (6, 3)),
        sample({"hidden": 4, "bias": False, "select": "sequence"}, (6, 5),
               note="ONNX: no B input, Y of one direction"),
    )
    bad_samples = (
        BadSample(call="gru(0)", inputs=((7, 3),), code=codes.BAD_ARG),
        BadSample(call="gru(5)", inputs=((7,),), code=codes.RANK),
        BadSample(call='gru(5, select="first")', inputs=((7, 3),), code=codes.BAD_ARG),
    )

    def onnx_attrs(self) -> dict[str, object]:
        return {"linear_before_reset": 1}  # torch applies r_t to (W_hn·h + b_hn)

    def cell(self, gi: np.ndarray, gh: np.ndarray, h: np.ndarray, c: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """Gates r, z, n from the row blocks in torch order; the reset r scales W_hn·h + b_hn."""
        import numpy as np
        i_r, i_z, i_n = np.split(gi, 3, axis=-1)
        h_r, h_z, h_n = np.split(gh, 3, axis=-1)
        r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
        n = np.tanh(i_n + r * h_n)
        return (1.0 - z) * n + z * h, c
