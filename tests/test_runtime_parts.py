"""Losses, schedules, optimizers, penalties, init and checkpoints against their formulas."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nnspec.runtime.loop import checkpoint as ckpt  # noqa: E402
from nnspec.runtime.loop.init import expected_std, init_tensor  # noqa: E402
from nnspec.runtime.loop.objectives import LOSSES, MetricSums  # noqa: E402
from nnspec.runtime.loop.optim import apply_max_norm, make_optimizer, penalty  # noqa: E402


def test_losses_match_their_textbook_formulas():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, size=6)
    shifted = z - z.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    ce = -log_softmax[np.arange(6), y].mean()
    assert LOSSES["cross_entropy"](torch.tensor(z), torch.tensor(y)).item() == pytest.approx(ce, rel=1e-12)
    assert LOSSES["nll"](torch.tensor(log_softmax), torch.tensor(y)).item() == pytest.approx(ce, rel=1e-12)
    margins = np.maximum(0, 1 - z[np.arange(6), y][:, None] + z)
    margins[np.arange(6), y] = 0
    assert LOSSES["hinge"](torch.tensor(z), torch.tensor(y)).item() == pytest.approx(margins.sum(1).mean() / 4)
    p, t = 1 / (1 + np.exp(-z[:, :1])), rng.integers(0, 2, size=6)
    bce = -(t * np.log(p[:, 0]) + (1 - t) * np.log(1 - p[:, 0])).mean()
    assert LOSSES["bce"](torch.tensor(p), torch.tensor(t)).item() == pytest.approx(bce, rel=1e-12)
    assert LOSSES["bce_logits"](torch.tensor(z[:, :1]), torch.tensor(t)).item() == pytest.approx(bce, rel=1e-12)
    target = rng.normal(size=6)
    assert LOSSES["mse"](torch.tensor(z[:, :1]), torch.tensor(target)).item() == pytest.approx(
        ((z[:, 0] - target) ** 2).mean())
    assert LOSSES["l1"](torch.tensor(z[:, :1]), torch.tensor(target)).item() == pytest.approx(
        np.abs(z[:, 0] - target).mean())


def test_metric_sums_are_exact_over_uneven_batches():
    sums = MetricSums("cross_entropy", ("accuracy",))
    sums.add(torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 1, 1]), torch.tensor(1.0))
    sums.add(torch.tensor([[0.0, 5.0]]), torch.tensor([1]), torch.tensor(3.0))
    assert sums.result("val_") == {"val_loss": (3 * 1.0 + 3.0) / 4, "val_accuracy": 0.75}


def test_momentum_and_adam_steps_match_hand_computation():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = make_optimizer([w], "momentum", 0.1, {"beta": 0.9})
    for _ in range(2):
        opt.zero_grad()
        (w * w).sum().backward()  # ∇ = 2w
        opt.step()
    # v1 = ∇0 = 2w0; w1 = w0 - 0.1·v1; v2 = 0.9·v1 + 2w1; w2 = w1 - 0.1·v2
    w0 = np.array([1.0, -2.0])
    v1 = 2 * w0
    w1 = w0 - 0.1 * v1
    w2 = w1 - 0.1 * (0.9 * v1 + 2 * w1)
    np.testing.assert_allclose(w.detach().numpy(), w2, rtol=1e-6)

    w = torch.nn.Parameter(torch.tensor([0.5]))
    opt = make_optimizer([w], "adam", 0.01, {"betas": (0.9, 0.999), "eps": 1e-8})
    opt.zero_grad()
    (3 * w).sum().backward()  # ∇ = 3: bias-corrected m̂ = 3, v̂ = 9, step = α·3/(3 + ε)
    opt.step()
    assert w.item() == pytest.approx(0.5 - 0.01 * 3 / (3 + 1e-8), rel=1e-6)


def test_penalty_and_max_norm():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [0.3, 0.4]]))
    assert penalty([w], 0.1, 0.01).item() == pytest.approx(0.1 * 7.7 + 0.01 * 25.25)
    apply_max_norm([w], 1.0)
    np.testing.assert_allclose(w.detach().numpy(), [[0.6, 0.8], [0.3, 0.4]], rtol=1e-5)


@pytest.mark.parametrize("scheme", ["xavier_normal", "kaiming_normal", "normal"])
def test_init_schemes_reach_their_target_std(scheme):
    torch.manual_seed(0)
    weight = torch.empty(400, 300)
    init_tensor(weight, scheme, {"std": 0.05})
    assert weight.std().item() == pytest.approx(expected_std(scheme, 300, 400, {"std": 0.05}), rel=0.03)
    init_tensor(weight, "zeros", {})
    assert weight.abs().sum().item() == 0


def test_init_schemes_leave_every_norm_at_identity():
    """γ = 1, β = 0 for every op of the norm family (rmsnorm included) under any scheme."""
    from nnspec.api import load
    from nnspec.compiler.torch_build import build_module
    from nnspec.runtime.loop.init import initialise

    model = load(text="model M {\n    input x: [4, 6, 6]\n    x -> conv(8, 3) -> batchnorm -> "
                      "groupnorm(2) -> layernorm -> flatten -> linear(16) -> rmsnorm -> "
                      "linear(3) -> output\n}\n")
    module = build_module(model.graph)
    applied = initialise(module, model.graph, ("normal", {"std": 0.5}), {})
    assert set(applied) == {"conv_1", "linear_1", "linear_2"}
    for node in model.graph.nodes:
        if node.op in ("batchnorm", "groupnorm", "layernorm", "rmsnorm"):
            for name, tensor in module.get_submodule(node.name).named_parameters():
                assert torch.all(tensor == (1.0 if name == "weight" else 0.0)), (node.name, name)


def test_checkpoints_round_trip_and_reject_other_specs(tmp_path):
    state = {"conv_1.weight": torch.randn(4, 3, 3, 3), "conv_1.bias": torch.zeros(4)}
    path = tmp_path / "last.safetensors"
    ckpt.save_weights(path, state, {"epoch": 3, "spec_sha256": "abc"})
    tensors, meta = ckpt.load_weights(path)
    assert torch.equal(tensors["conv_1.weight"], state["conv_1.weight"]) and meta["epoch"] == "3"
    assert (tmp_path / "last.json").read_text().startswith("{")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    with pytest.raises(ckpt.CheckpointError, match="has shape \\[4, 3, 3, 3\\], the spec needs \\[8, 3, 3, 3\\]"):
        ckpt.check_state_dict({"conv_1.weight": torch.zeros(8, 3, 3, 3), "conv_1.bias": torch.zeros(8)},
                              tensors, path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ckpt.CheckpointError, match="not a readable safetensors file"):
        ckpt.load_weights(path)
    bad = tmp_path / "state.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ckpt.CheckpointError, match="not a readable training state"):
        ckpt.load_state(bad)


def test_training_state_refuses_pickled_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "state.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load_state(path)
