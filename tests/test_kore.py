"""KORE and CorDA: paper parameter counts, the null-space factorisation, adapter init, training
selection, artifacts and bad-input errors (micro kore-tiny model, synthetic samples)."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from kore_bench.adapters.covariance import collect_covariances, prompt_only
from kore_bench.adapters.nullspace import default_rank, matched_rank, null_space_basis, null_space_factors
from kore_bench.encoding import encode_prompt
from kore_bench.errors import KoreBenchError
from kore_bench.method import TrainContext
from kore_bench import method as method_module
from kore_bench.methods.corda import CorDA, CordaMethodConfig, add_corda
from kore_bench.methods.kore import (Kore, KoreAug, KoreConstraint, KoreV1, add_null_space_adapter,
                                     lora_trainable_parameter_count, select_trainable,
                                     trainable_parameter_count)
from kore_bench.models.parts import language_model, projector

from kore_helpers import micro, prompt_batch, samples, save_base

LAYER = "model.language_model.layers.1.mlp.down_proj"


# ---------------------------------------------------------------- paper parameter counts (kore.md §2.9)


@pytest.fixture(scope="module")
def llava_7b():
    """LLaVA-1.5-7B on the meta device: Vicuna-7B text, CLIP-L/336 vision, mlp2x_gelu projector."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(
        text_config=LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=32, vocab_size=32064),
        vision_config=CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                       num_attention_heads=16, image_size=336, patch_size=14,
                                       projection_dim=768),
        projector_hidden_act="gelu", vision_feature_layer=-2, image_token_index=32000,
    )
    with torch.device("meta"):
        return LlavaForConditionalGeneration(config)


@pytest.mark.parametrize("rank, millions", [(64, 108.0), (128, 195.0), (235, 340.5), (256, 369.1)])
def test_paper_kore_trainable_parameters(llava_7b, rank, millions):
    assert round(trainable_parameter_count(llava_7b, rank) / 1e6, 1) == millions


def test_paper_lora_trainable_parameters_and_matched_rank(llava_7b):
    assert round(lora_trainable_parameter_count(llava_7b, 128) / 1e6, 1) == 340.8
    assert default_rank(llava_7b) == 128
    assert matched_rank(llava_7b, default_rank(llava_7b)) == 235
    # training A too (the v1 ablation) is LoRA's A+B at the same rank
    assert trainable_parameter_count(llava_7b, 235, train_A=True) == lora_trainable_parameter_count(llava_7b, 235)
    # counting leaves the model as it was
    assert not any("lora_" in n for n, _ in llava_7b.named_parameters())
    assert all(p.requires_grad for p in llava_7b.parameters())


# ---------------------------------------------------------------- the factorisation (kore.md §2.4)


def _spd(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3 * n, n, generator=g, dtype=torch.float64) * torch.logspace(0, -3, n, dtype=torch.float64)
    return x.T @ x / (3 * n)


@pytest.mark.parametrize("m, n, rank", [(24, 16, 5), (6, 16, 9)])
def test_factors_reconstruct_the_weight_and_match_the_literal_formula(m, n, rank):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(m, n, generator=g, dtype=torch.float64)
    cov = _spd(n)
    b, a, residual = null_space_factors(w, cov, rank)
    assert b.shape == (m, rank) and a.shape == (rank, n)
    torch.testing.assert_close(b @ a + residual, w)
    # literal §2.4: U_null = last r singular vectors of C; SVD of the m×n W P, top r
    u_c, _, _ = torch.linalg.svd(cov)
    q = u_c[:, -rank:]
    wp = w @ q @ q.T
    torch.testing.assert_close(b @ a, wp)
    torch.testing.assert_close(residual, w - wp)
    u, s, vh = torch.linalg.svd(wp, full_matrices=False)
    k = min(m, rank)
    a_ref = s[:k, None].sqrt() * vh[:k]
    signs = torch.sign((a[:k] * a_ref).sum(1))
    torch.testing.assert_close(a[:k] * signs[:, None], a_ref)
    torch.testing.assert_close(b[:, :k] * signs, u[:, :k] * s[:k].sqrt())
    # every row of A lies in the null space
    torch.testing.assert_close(a - a @ q @ q.T, torch.zeros_like(a))
    if rank > m:  # extra components: zero B columns, unit null-space directions in A
        assert torch.all(b[:, m:] == 0)
        torch.testing.assert_close(a[m:] @ a[m:].T, torch.eye(rank - m, dtype=torch.float64))


def test_factor_precision_is_configurable():
    w = torch.randn(8, 12)
    b, a, residual = null_space_factors(w, _spd(12).float(), 4, dtype=torch.float32)
    assert b.dtype == a.dtype == residual.dtype == torch.float32
    torch.testing.assert_close(b @ a + residual, w, rtol=1e-5, atol=1e-5)


def test_rank_at_least_the_input_dimension_names_the_layer():
    with pytest.raises(KoreBenchError, match=r"input dimension 12 of layer my\.layer"):
        null_space_factors(torch.randn(8, 12), _spd(12), 12, name="my.layer")


# ---------------------------------------------------------------- the adapter on a micro model


@pytest.fixture(scope="module")
def micro_llava():
    return micro("llava")


@pytest.fixture(scope="module")
def calibration():
    return samples(10, seed=11)


@pytest.fixture(scope="module")
def adapted(micro_llava, calibration):
    """(base model, processor, covariances, KORE model at the default matched rank)."""
    model, processor = micro_llava
    covs = collect_covariances(model, processor, calibration, batch_size=4)
    fresh, _ = micro("llava")
    rank = matched_rank(fresh, default_rank(fresh))
    return model, processor, covs, add_null_space_adapter(fresh, covs, rank), rank


def test_outputs_unchanged_at_initialisation(adapted):
    model, processor, _, kore, _ = adapted
    batch = prompt_batch(processor, samples(3, seed=2))
    with torch.no_grad():
        delta = (kore(**batch).logits - model(**batch).logits).abs().max().item()
    assert delta < 1e-4


def test_merged_adapter_equals_the_original_weight(adapted):
    model, _, _, kore, _ = adapted
    layer = kore.get_base_model().get_submodule(LAYER)
    merged = layer.lora_B["default"].weight @ layer.lora_A["default"].weight + layer.get_base_layer().weight
    torch.testing.assert_close(merged, model.get_submodule(LAYER).weight, rtol=1e-5, atol=1e-6)
    assert layer.scaling["default"] == 1.0


def test_A_nearly_annihilates_calibration_activations(adapted, calibration):
    """Energy of calibration inputs along A's rows vs along random directions (kore.md §2.6)."""
    model, processor, covs, kore, rank = adapted
    for name in (LAYER, "model.language_model.layers.0.self_attn.q_proj"):
        a = kore.get_base_model().get_submodule(name).lora_A["default"].weight.double()
        rows = a / a.norm(dim=1, keepdim=True)
        cov = covs[name]
        null_energy = torch.einsum("ij,jk,ik->i", rows, cov, rows).mean()
        rand = torch.randn(200, cov.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        rand = rand / rand.norm(dim=1, keepdim=True)
        random_energy = torch.einsum("ij,jk,ik->i", rand, cov, rand).mean()
        assert null_energy / random_energy < 1e-2, name
    # the same holds for the actual activations of a calibration prompt (not just the matrix)
    seen = []
    base_layer = kore.get_base_model().get_submodule(LAYER)
    handle = base_layer.register_forward_pre_hook(lambda m, args: seen.append(args[0][0].double()))
    with torch.no_grad():
        kore(**encode_prompt(processor, prompt_only(calibration[0])))
    handle.remove()
    x = seen[0]
    a = base_layer.lora_A["default"].weight.double()
    ratio = (x @ (a / a.norm(dim=1, keepdim=True)).T).pow(2).mean() / x.pow(2).mean()
    assert ratio < 1e-2


def test_shared_covariances_give_one_null_space(adapted):
    _, _, covs, kore, rank = adapted
    p = "model.language_model.layers.0.self_attn."
    q = null_space_basis(covs[p + "q_proj"], rank)
    for x in "qkv":
        a = kore.get_base_model().get_submodule(p + f"{x}_proj").lora_A["default"].weight.double()
        torch.testing.assert_close(a - a @ q @ q.T, torch.zeros_like(a), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("train_A", [False, True])
def test_only_B_and_the_projector_train(micro_llava, train_A):
    model, _ = micro("llava")
    from kore_bench.methods.kore import add_adapter_structure

    kore = add_adapter_structure(model, 4)
    groups = select_trainable(kore, train_A, 1e-3)
    trainable = {n for n, p in kore.named_parameters() if p.requires_grad}
    proj = {id(p) for p in projector(kore).parameters()}
    for n, p in kore.named_parameters():
        expected = ".lora_B." in n or (train_A and ".lora_A." in n) or id(p) in proj
        assert (n in trainable) == expected, n
    assert [g.name for g in groups] == ["projector"]
    assert sum(p.numel() for n, p in kore.named_parameters() if n in trainable) == \
        trainable_parameter_count(micro_llava[0], 4, train_A=train_A)


# ---------------------------------------------------------------- the registered methods


def _ctx(tmp_path, base, new, old, seed=0):
    return TrainContext(base, new, old, seed, tmp_path / "artifact", progress=False)


@pytest.fixture(scope="module")
def base_ref(micro_llava, tmp_path_factory):
    return save_base(*micro_llava, tmp_path_factory.mktemp("base") / "micro")


SHORT = {"steps": 2, "batch_size": 2, "calibration_samples": 6}


@pytest.mark.parametrize("cls, train_A", [(KoreConstraint, False), (KoreV1, True)])
def test_training_moves_only_what_it_should_and_reloads_exactly(cls, train_A, base_ref, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kore_bench.augment",
                        types.SimpleNamespace(augment=lambda name, s, world, seed: list(s)))
    method = cls.from_overrides(SHORT)
    ctx = _ctx(tmp_path, base_ref, samples(4, seed=1), samples(8, seed=2))
    model, processor = base_ref.load()
    init = method.prepare(model, processor, ctx)
    a0 = init.get_base_model().get_submodule(LAYER).lora_A["default"].weight.clone()
    res0 = init.get_base_model().get_submodule(LAYER).get_base_layer().weight.clone()
    trained = method.train(ctx)
    layer = trained.model.get_base_model().get_submodule(LAYER)
    assert torch.equal(layer.get_base_layer().weight, res0)
    assert torch.equal(layer.lora_A["default"].weight, a0) != train_A
    fresh, _ = base_ref.load()
    rank = matched_rank(fresh, default_rank(fresh))
    assert trained.info.trainable_params == trainable_parameter_count(fresh, rank, train_A=train_A)
    reloaded = method.load(ctx)
    batch = prompt_batch(processor, samples(2, seed=3))
    with torch.no_grad():
        assert torch.equal(trained.model(**batch).logits, reloaded.model(**batch).logits)


def test_kore_and_kore_aug_train_on_the_augmented_data(base_ref, tmp_path, monkeypatch):
    calls = []
    extra = samples(3, seed=9)

    def fake_augment(name, items, world_dir, seed):
        calls.append((name, len(items), world_dir, seed))
        return list(items) + extra

    monkeypatch.setitem(sys.modules, "kore_bench.augment", types.SimpleNamespace(augment=fake_augment))
    seen = []
    real_train = method_module.train_model
    monkeypatch.setattr(method_module, "train_model", lambda m, p, s, *a, **k: seen.append(len(s)) or real_train(m, p, s, *a, **k))
    new = samples(4, seed=1)
    Kore.from_overrides(SHORT).train(_ctx(tmp_path / "k", base_ref, new, samples(8, seed=2), seed=5))
    assert calls == [("auto", 4, None, 5)] and seen == [7]  # auto: llm, kore74k, template or text
    aug = KoreAug.from_overrides({"steps": 1, "batch_size": 2, "augmenter": "llm"})
    trained = aug.train(_ctx(tmp_path / "a", base_ref, new, [], seed=5))
    assert calls[-1] == ("llm", 4, None, 5)
    model, _ = base_ref.load()
    assert trained.info.trainable_params == lora_trainable_parameter_count(model) == \
        trainable_parameter_count(model, matched_rank(model, default_rank(model)))


def test_kore_records_what_augmented_it_and_refuses_when_nothing_does(base_ref, tmp_path, monkeypatch):
    """Real augmentation (no world facts): auto runs the text augmenter and train_info says so; data
    no augmenter can use is refused before training, never trained on unaugmented."""
    from kore_bench.data import Sample

    for name in ("KORE_BENCH_LLM_BASE_URL", "OPENAI_BASE_URL", "KORE_BENCH_LLM_MODEL", "KORE_BENCH_KORE74K"):
        monkeypatch.delenv(name, raising=False)
    item = samples(1, seed=4)[0]
    real = Sample("evoke-1", [{"role": "user", "content": "<image>\nCan you describe the company depicted in the image?"},
                              {"role": "assistant", "content": "Mirex Labs is a robotics company founded by Dravo Kelt "
                                                               "in 2011."}], item.image)
    trained = KoreAug.from_overrides({"steps": 1, "batch_size": 2}).train(_ctx(tmp_path / "a", base_ref, [real], []))
    assert trained.info.augmentation["augmenter"] == "text" and trained.info.augmentation["requested"] == "auto"
    assert trained.info.samples > 1
    monkeypatch.setattr(method_module, "train_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    with pytest.raises(KoreBenchError, match="augmented none of the 2 injection items"):
        Kore.from_overrides(SHORT).train(_ctx(tmp_path / "k", base_ref, samples(2, seed=1), samples(8, seed=2)))


def test_corda_keeps_outputs_at_init_and_reloads_exactly(base_ref, tmp_path):
    model, processor = base_ref.load()
    batch = prompt_batch(processor, samples(2, seed=3))
    with torch.no_grad():
        before = model(**batch).logits
        corda = add_corda(model, processor, samples(6, seed=2), CordaMethodConfig())
        assert (corda(**batch).logits - before).abs().max().item() < 1e-4
    method = CorDA.from_overrides({"steps": 2, "batch_size": 2, "calibration_samples": 6})
    ctx = _ctx(tmp_path, base_ref, samples(4, seed=1), samples(8, seed=2))
    trained = method.train(ctx)
    assert trained.info.trainable_params == lora_trainable_parameter_count(base_ref.load()[0])
    with torch.no_grad():
        assert torch.equal(trained.model(**batch).logits, method.load(ctx).model(**batch).logits)


# ---------------------------------------------------------------- bad input, before any training


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(method_module, "train_model", refuse)


@pytest.mark.parametrize("overrides, old, match", [
    ({"rank": 128}, 8, r"input dimension 128 of layer model\.language_model\.layers\.0\.self_attn\.q_proj"),
    ({}, 0, "calibration set is empty.*give --old-data"),
    ({"calibration_samples": 0}, 8, "calibration_samples"),
    ({"covariance_dtype": "int8"}, 8, "covariance_dtype"),
])
def test_bad_settings_fail_before_training(base_ref, tmp_path, no_training, overrides, old, match):
    method = KoreConstraint.from_overrides(overrides)
    with pytest.raises(KoreBenchError, match=match):
        method.train(_ctx(tmp_path, base_ref, samples(2), samples(old, seed=2)))


def test_nan_covariance_fails_before_training_naming_the_layer(tmp_path, no_training):
    model, processor = micro("llava")
    with torch.no_grad():
        language_model(model).layers[1].post_attention_layernorm.weight.fill_(float("inf"))
    base = save_base(model, processor, tmp_path / "bad")
    with pytest.raises(KoreBenchError, match=r"layers\.1\.mlp\.gate_proj"):
        KoreConstraint.from_overrides({"cache_covariances": False}).train(
            _ctx(tmp_path, base, samples(2), samples(4, seed=2)))


def test_a_model_without_matching_linears_is_refused(tmp_path):
    model, _ = micro("llava")
    language_model(model).layers = torch.nn.ModuleList()
    with pytest.raises(KoreBenchError, match="no linear layers"):
        matched_rank(model, 4)
    with pytest.raises(KoreBenchError, match="no linear layers"):
        trainable_parameter_count(model, 4)
