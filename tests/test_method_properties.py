"""Each new method's defining property, on the micro base (small, separate from the matrix)."""
from __future__ import annotations

import pytest
import torch

from kore_bench.errors import KoreBenchError
from kore_bench.method import TrainContext
from kore_bench.models.parts import unwrap


@pytest.fixture(scope="module")
def data(micro_world):
    from kore_bench.suites import load_suites

    suites = load_suites()
    new = suites["world-new"].with_variables(world=str(micro_world)).train_samples()[:8]
    old = suites["world-retention"].with_variables(world=str(micro_world)).train_samples()[:8]
    return new, old


def batch(processor, samples):
    from kore_bench.encoding import collate
    from kore_bench.train import _pad_id, encode_all

    return collate(encode_all(processor, samples), _pad_id(processor))


def test_ewc_penalty_zero_at_init_and_rises_with_the_fisher_of_what_moves(micro_base, data):
    from kore_bench.train import encode_all
    from kore_bench.methods.ewc import EwcConfig, compute_fisher, ewc_penalty
    from kore_bench.methods.lora import add_lora

    model, processor = micro_base.load()
    fisher = compute_fisher(model, encode_all(processor, data[1]))
    model = add_lora(model, EwcConfig())
    assert ewc_penalty(model, fisher, 400.0).item() == 0.0  # B = 0: nothing moved
    name = max(fisher, key=lambda n: fisher[n].max())
    f = fisher[name]
    layer = unwrap(model).get_submodule(name)
    s = layer.scaling["default"]

    def move(entry: int) -> float:
        i, j = divmod(entry, f.shape[1])
        with torch.no_grad():
            layer.lora_A["default"].weight.zero_()[0, j] = 1.0
            layer.lora_B["default"].weight.zero_()[i, 0] = 0.1
        return ewc_penalty(model, fisher, 400.0).item()

    high, low = move(int(f.argmax())), move(int(f.argmin()))
    assert high == pytest.approx(0.5 * 400 * f.max().item() * (0.1 * s) ** 2, rel=1e-4)
    assert high > 0 and high > low


def test_ewc_without_old_data_is_a_clear_error(micro_base, data, tmp_path):
    from kore_bench.methods.ewc import EWC

    ctx = TrainContext(micro_base, data[0], [], 0, tmp_path / "a", progress=False)
    with pytest.raises(KoreBenchError, match="old-knowledge data"):
        EWC().train(ctx)


@pytest.mark.parametrize("projector_lr", [None, 2e-4])  # adapter disabled / frozen copy
def test_lwf_loss_zero_at_init_and_positive_once_the_student_moves(micro_base, data, projector_lr, tmp_path):
    from kore_bench.methods.lwf import LwF

    method = LwF.from_overrides({"projector_lr": projector_lr})
    model, processor = micro_base.load()
    loss = method.penalty(model, processor, TrainContext(micro_base, data[0], [], 0, tmp_path, progress=False))
    model = method.prepare(model, processor, None).eval()
    b = batch(processor, data[0])
    assert loss(model, b, model(**b)).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    assert loss(model, b, model(**b)).item() > 1e-3


def test_moelora_router_weights_sum_to_one_and_layer_is_the_expert_mixture():
    from kore_bench.methods.moelora import MoELoRALinear

    torch.manual_seed(0)
    layer = MoELoRALinear(torch.nn.Linear(16, 12), rank=8, experts=4, alpha=16, dropout=0.0)
    with torch.no_grad():
        torch.nn.init.normal_(layer.experts_B)
    x = torch.randn(3, 5, 16)
    g = layer.gates(x)
    assert g.shape == (3, 5, 4) and torch.allclose(g.sum(-1), torch.ones(3, 5)) and (g > 0).all()
    r = 2
    explicit = layer.base_layer(x) + layer.scaling * sum(
        g[..., e:e + 1] * (x @ layer.experts_A[e * r:(e + 1) * r].T @ layer.experts_B[:, e * r:(e + 1) * r].T)
        for e in range(4))
    assert torch.allclose(layer(x), explicit, atol=1e-5)
    with pytest.raises(KoreBenchError, match="divisible"):
        MoELoRALinear(torch.nn.Linear(16, 12), rank=6, experts=4, alpha=12, dropout=0.0)


def test_o_lora_penalty_zero_for_orthogonal_factors(micro_base):
    from kore_bench.methods.lora import add_lora, linear_shapes
    from kore_bench.methods.o_lora import OLoraConfig, orthogonality_penalty

    model = add_lora(micro_base.load()[0], OLoraConfig(rank=4))
    names = list(linear_shapes(model))
    torch.manual_seed(0)
    old, complement = {}, {}
    for name in names:
        n = unwrap(model).get_submodule(name).in_features
        q, _ = torch.linalg.qr(torch.randn(n, n))
        old[name], complement[name] = q[:, :4].T.contiguous(), q[:, 4:8].T.contiguous()
    with torch.no_grad():
        for name in names:
            unwrap(model).get_submodule(name).lora_A["default"].weight.copy_(complement[name])
    assert orthogonality_penalty(model, old, 0.05).item() == pytest.approx(0.0, abs=1e-3)
    with torch.no_grad():
        for name in names:
            unwrap(model).get_submodule(name).lora_A["default"].weight.copy_(old[name])
    assert orthogonality_penalty(model, old, 0.05).item() == pytest.approx(0.05 * 4 * len(names), rel=1e-3)


def test_mks2_equals_the_base_at_init_and_stage2_starts_from_stage1(micro_base, data):
    from kore_bench.methods.mks2 import MKS2, add_mks2, mixtures

    base, processor = micro_base.load()
    b = batch(processor, data[0])
    model = micro_base.load()[0]
    add_mks2(model, **MKS2().structure(model))
    with torch.no_grad():
        assert torch.equal(model.eval()(**b).logits, base.eval()(**b).logits)
        mix = mixtures(model)[0]
        mix.gate.fill_(0.7)  # an opened memory (as after stage 1)
        x = torch.randn(2, 3, mix.router.in_features)
        assert torch.allclose(mix.weights(x).sum(-1), torch.ones(2, 3))
        parallel = mix.mlp(x) + torch.tanh(mix.gate) * mix.memory(x)
        assert torch.allclose(mix(x), parallel, atol=1e-6)  # zero router, B = 0: stage 1's parallel sum
