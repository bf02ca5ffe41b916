"""Calibration covariances: batching, exact scaling semantics, sharing, caching, errors."""
from __future__ import annotations

import pytest
import torch

from kore_bench.adapters.covariance import Covariances, collect_covariances, draw_calibration, prompt_only
from kore_bench.encoding import encode_prompt
from kore_bench.errors import KoreBenchError
from kore_bench.models.parts import decoder_linear_names, language_model

from kore_helpers import micro, samples


@pytest.fixture(scope="module")
def llava():
    return micro("llava")


@pytest.mark.parametrize("arch", ["llava", "qwen"])
def test_batched_with_padding_equals_one_sample_at_a_time(arch):
    model, processor = micro(arch)
    items = samples(7, seed=3, turns=2)
    batched = collect_covariances(model, processor, items, batch_size=4)
    single = collect_covariances(model, processor, items, batch_size=1)
    assert list(batched) == decoder_linear_names(model)
    for name in batched:
        assert batched[name].dtype == torch.float64
        # the fp32 model rounds differently in a batch; fp64 accumulation adds nothing
        scale = single[name].abs().max().item()
        torch.testing.assert_close(batched[name], single[name], rtol=1e-5, atol=1e-6 * scale)


def test_inputs_are_shared_by_tensor_identity(llava):
    model, processor = llava
    covs = collect_covariances(model, processor, samples(3), batch_size=2)
    for i in range(len(language_model(model).layers)):
        p = f"model.language_model.layers.{i}."
        q, k, v, o = (covs[p + f"self_attn.{x}_proj"] for x in "qkvo")
        gate, up, down = (covs[p + f"mlp.{x}_proj"] for x in ("gate", "up", "down"))
        assert q is k is v and gate is up
        assert len({id(q), id(o), id(gate), id(down)}) == 4
    assert len(covs.groups()) == 4 * len(language_model(model).layers)


def test_scaling_is_by_the_signed_maximum_and_averaged_over_samples(llava):
    """Reference computation of kore.md §2.3 with plain hooks, batch size 1."""
    model, processor = llava
    items = samples(3, seed=5)
    name = "model.language_model.layers.1.mlp.down_proj"
    seen: list[torch.Tensor] = []
    handle = model.get_submodule(name).register_forward_pre_hook(lambda m, a: seen.append(a[0][0].double()))
    with torch.no_grad():
        for s in items:
            model(**encode_prompt(processor, prompt_only(s)))
    handle.remove()
    expected = sum((x / x.max().abs()).T @ (x / x.max().abs()) for x in seen) / len(items)
    covs = collect_covariances(model, processor, items, batch_size=2)
    torch.testing.assert_close(covs[name], expected, rtol=1e-5, atol=1e-6 * expected.abs().max().item())
    assert covs.num_samples == 3
    plain = collect_covariances(model, processor, items, batch_size=2, scale="none")
    raw = sum(x.T @ x for x in seen) / 3
    torch.testing.assert_close(plain[name], raw, rtol=1e-5, atol=1e-6 * raw.abs().max().item())


def test_prompt_only_keeps_the_first_user_turn():
    s = samples(1, turns=3)[0]
    p = prompt_only(s)
    assert p.messages == s.messages[:1] and p.image == s.image and p.answer is None


def test_cache_and_save_load_keep_values_and_sharing(llava, tmp_path):
    model, processor = llava
    items = samples(3, seed=1)
    first = collect_covariances(model, processor, items, cache_dir=tmp_path, model_fingerprint="m")
    files = list(tmp_path.glob("cov-*.safetensors"))
    assert len(files) == 1 and first.fingerprint in files[0].name
    again = collect_covariances(model, processor, items, cache_dir=tmp_path, model_fingerprint="m")
    assert [len(g) for g in again.groups()] == [len(g) for g in first.groups()]
    for name in first:
        assert torch.equal(again[name], first[name])
    collect_covariances(model, processor, items[:2], cache_dir=tmp_path, model_fingerprint="m")
    collect_covariances(model, processor, items, cache_dir=tmp_path, model_fingerprint="other")
    assert len(list(tmp_path.glob("cov-*.safetensors"))) == 3
    loaded = Covariances.load(files[0])
    assert loaded.num_samples == 3 and loaded.settings["scale"] == "per_sample_max"


def test_errors_name_the_problem(llava, tmp_path):
    model, processor = llava
    with pytest.raises(KoreBenchError, match="calibration set is empty"):
        collect_covariances(model, processor, [])
    with pytest.raises(KoreBenchError, match="calibration set is empty"):
        draw_calibration([], 4, seed=0)
    with pytest.raises(KoreBenchError, match="calibration_samples"):
        draw_calibration(samples(2), 0, seed=0)
    with pytest.raises(KoreBenchError, match="scale"):
        collect_covariances(model, processor, samples(1), scale="absmax")
    with pytest.raises(KoreBenchError, match="not a readable covariance file"):
        (tmp_path / "bad.safetensors").write_text("nope")
        Covariances.load(tmp_path / "bad.safetensors")


def test_non_finite_activations_name_the_first_layer():
    model, processor = micro("llava")
    with torch.no_grad():
        language_model(model).layers[0].input_layernorm.weight.fill_(float("nan"))
    with pytest.raises(KoreBenchError, match=r"layers\.0\.self_attn\.q_proj"):
        collect_covariances(model, processor, samples(2))


def test_a_model_without_decoder_linears_is_refused():
    model, processor = micro("llava")
    language_model(model).layers = torch.nn.ModuleList()
    with pytest.raises(KoreBenchError, match="no linear layers"):
        collect_covariances(model, processor, samples(2))
