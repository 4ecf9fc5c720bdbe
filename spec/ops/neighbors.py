"""Instance-based layers: the k-nearest-neighbour classifier (course, lecture 2).

kNN has no weights to learn: "training" stores the training split, and a prediction is a
vote of the k stored samples nearest to the query. The stored set is state like a
batchnorm's running statistics, so it lives in the op's buffers, sized by the op's `memory`
argument: the IR stays honest (`nnspec check` shows the [memory, F] table and its bytes),
and `solver knn` (spec/recipe/checks.py, runtime/experiments/knn.py) checks that `memory` equals the
size of the training split and fills the buffers from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from .. import codes
from ..ir import TensorType
from .base import BadSample, Op, ShapeError, TorchCall, register, sample
from .linear import expect_float

if TYPE_CHECKING:
    import numpy as np

    from .base import OnnxGraph


@register
class KNN(Op):
    """k-nearest-neighbour vote over a stored set of M samples (Cover & Hart, 1967).

    With stored samples m_1..m_M (``memory``) and their labels as one-hot rows e_{y_1}..e_{y_M}
    (``labels``), for a query x:

        d_j = ‖x − m_j‖²  (distance=l2)   or   d_j = Σ_f |x_f − m_{j,f}|  (distance=l1)
        N(x) = the k indices j of smallest d_j; among equal distances the lower j first
        y[c] = (1/k) Σ_{j ∈ N(x)} [y_j = c]          (the fraction of the k votes for c)

    The prediction argmax_c y[c] is the majority class; a tie between classes goes to the
    smallest class index (argmax takes the first maximum), as scikit-learn's
    KNeighborsClassifier does. For l2 the lowerings rank by ‖m_j‖² − 2 x·m_j, which is
    d_j − ‖x‖²: the same order for one query, without the ‖x‖² that only adds rounding.

    Shape: [F] -> [classes] (vote fractions, summing to 1); k <= memory.
    Params: none. Buffers: memory [memory, F], labels [memory, classes] (one-hot rows):
    memory·(F + classes), filled by `solver knn` from the training split (zeros before).
    MACs: memory · F (one multiply-add per stored value: x·m_j, or |x_f − m_jf| summed).
    """

    kind: ClassVar[str] = "knn"
    family: ClassVar[str] = "neighbors"
    positional: ClassVar[tuple[str, ...]] = ("k", "classes", "memory")
    differentiable: ClassVar[bool] = False  # a vote: piecewise constant in x (see verify/sweep.py)
    samples = (
        sample({"k": 3, "classes": 4, "memory": 12}, (5,), note="l2: MatMul ranking, TopK"),
        sample({"k": 1, "classes": 3, "memory": 7, "distance": "l1"}, (4,),
               note="l1: Sub, Abs, ReduceSum"),
        sample({"k": 5, "classes": 2, "memory": 5}, (3,), note="k = memory: every sample votes"),
    )
    bad_samples = (
        BadSample(call="knn(0, classes=3, memory=10)", inputs=((4,),), code="E1007"),
        BadSample(call="knn(11, classes=3, memory=10)", inputs=((4,),), code="E1007"),
        BadSample(call="knn(3, classes=3, memory=10)", inputs=((1, 8, 8),), code="E2103"),
        BadSample(call="knn(3, classes=1, memory=10)", inputs=((4,),), code="E1007"),
    )

    k: int = Field(gt=0)
    classes: int = Field(ge=2)
    memory: int = Field(gt=0)
    distance: Literal["l2", "l1"] = "l2"

    def infer(self, inputs: Sequence[TensorType]) -> TensorType:
        (x,) = inputs
        if x.rank != 1:
            raise ShapeError(
                codes.RANK,
                f"knn compares feature vectors [F], got {x}",
                notes=[f"input {x} has rank {x.rank}; the stored samples are rows [memory, F]"],
                help="put `flatten` before `knn`",
            )
        expect_float(x, self.kind)
        if self.k > self.memory:
            raise ShapeError(
                codes.BAD_ARG,
                f"knn asks for k = {self.k} neighbours among {self.memory} stored samples",
                notes=[f"k <= memory is needed: {self.k} > {self.memory}"],
                help=f"use k <= {self.memory}",
                arg="k",
            )
        return TensorType(shape=(self.classes,))

    def buffer_shapes(self, inputs: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        (x,) = inputs
        return {"memory": (self.memory, x.shape[0]), "labels": (self.memory, self.classes)}

    def macs(self, inputs: Sequence[TensorType], output: TensorType) -> int:
        return self.memory * inputs[0].shape[0]

    def receptive_step(self, inputs: Sequence[TensorType]) -> Literal["global"]:
        return "global"

    def torch_call(self, inputs: Sequence[TensorType]) -> TorchCall:
        (x,) = inputs
        return TorchCall("KNN", {"features": x.shape[0], "memory": self.memory,
                                 "classes": self.classes, "k": self.k, "distance": self.distance})

    def to_onnx(self, g: OnnxGraph, inputs: list[str], types: Sequence[TensorType], name: str,
                params: dict[str, np.ndarray]) -> str:
        """Ranks [batch, M] (l2: ReduceSumSquare(m)ᵀ − 2·MatMul(x, mᵀ); l1: ReduceSum|x − m|),
        TopK(k, largest=0) (ties: the lower index first, as the ONNX spec says), Gather of
        the one-hot label rows [batch, k, C], ReduceMean over k."""
        import numpy as np
        memory = g.initializer(f"{name}.memory", params["memory"])
        labels = g.initializer(f"{name}.labels", params["labels"])
        x = inputs[0]
        if self.distance == "l2":
            norms = g.node("ReduceSumSquare", [memory, g.ints([1])], keepdims=0)  # [M]
            dots = g.node("MatMul", [x, g.node("Transpose", [memory], perm=[1, 0])])
            two = g.constant(np.float32(2.0))
            ranks = g.node("Sub", [norms, g.node("Mul", [dots, two])])
        else:
            diff = g.node("Sub", [g.node("Unsqueeze", [x, g.ints([1])]), memory])  # [B, M, F]
            ranks = g.node("ReduceSum", [g.node("Abs", [diff]), g.ints([2])], keepdims=0)
        nearest = g.fresh(f"{name}/nearest")  # TopK's second output: the indices [B, k]
        g.node("TopK", [ranks, g.ints([self.k])], [g.fresh(f"{name}/ranks"), nearest],
               axis=1, largest=0, sorted=1)
        votes = g.node("Gather", [labels, nearest], axis=0)  # [B, k, C]
        return g.node("ReduceMean", [votes, g.ints([1])], keepdims=0)

    def reference(self, inputs: Sequence[np.ndarray], params: Mapping[str, np.ndarray]
                  ) -> np.ndarray:
        """The distances d_j themselves (not the ranking form), a stable sort, the mean vote."""
        import numpy as np
        (x,) = inputs
        memory, labels = params["memory"], params["labels"]
        diff = x[:, None, :] - memory[None, :, :]
        d = (diff**2).sum(-1) if self.distance == "l2" else np.abs(diff).sum(-1)
        nearest = np.argsort(d, axis=1, kind="stable")[:, : self.k]
        return labels[nearest].mean(axis=1)
