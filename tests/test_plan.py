"""``kore-bench plan`` on config-only 7B models (meta device, nothing downloaded)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pathlib import Path

from kore_bench.errors import KoreBenchError
from kore_bench.plan import Settings, plan, read_accelerate_config
from kore_bench.registry import load_methods

# LLaVA-1.5-7B: CLIP ViT-L/14-336 + Vicuna-7B (Llama), 2-layer MLP projector 1024→4096→4096
LLAVA_7B = dict(
    model_type="llava", image_token_index=32000, projector_hidden_act="gelu", vision_feature_layer=-2,
    vision_feature_select_strategy="default", tie_word_embeddings=False,
    vision_config=dict(model_type="clip_vision_model", hidden_size=1024, intermediate_size=4096,
                       num_hidden_layers=24, num_attention_heads=16, image_size=336, patch_size=14,
                       projection_dim=768),
    text_config=dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, vocab_size=32064,
                     max_position_embeddings=4096))
QWEN_7B = dict(
    model_type="qwen2_5_vl", image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
    vision_end_token_id=151653, tie_word_embeddings=False,
    text_config=dict(model_type="qwen2_5_vl_text", hidden_size=3584, intermediate_size=18944,
                     num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                     max_position_embeddings=128000, rms_norm_eps=1e-6, tie_word_embeddings=False,
                     rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
    vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3,
                       out_hidden_size=3584, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                       window_size=112, fullatt_block_indexes=[7, 15, 23, 31], hidden_act="silu"))


def _methods(*names, **overrides):
    reg = load_methods()
    return {n: reg.get(n).from_overrides(overrides.get(n.replace("-", "_"), {})) for n in names}


def test_llava_7b_counts_match_the_paper_and_memory_adds_up():
    plans = {p.method: p for p in plan(LLAVA_7B, _methods("lora", "kore", lora={"rank": 128}), Settings(gpus=8))}
    lora, kore = plans["lora"], plans["kore"]
    # kore.md §2.9: LoRA r=128 on the 7 LM linears + projector ≈ 340.8M; KORE r=235 ≈ 340.5M
    assert lora.trainable_params == 340_795_392
    assert kore.trainable_params == 340_549_632
    assert kore.config["rank"] is None  # the default rank is the matched one (235)
    # by hand: weights bf16, grads bf16, AdamW m+v fp32 + fp32 master = 12 B per trainable parameter
    ddp = lora.modes["ddp"]
    assert ddp.weights == 2 * lora.total_params and ddp.optimizer == 12 * 340_795_392
    assert lora.modes["zero2"].optimizer == ddp.optimizer / 8 and lora.modes["zero3"].weights == ddp.weights / 8
    # KORE's covariances: 4 distinct inputs per layer (qkv, o, gate/up, down), fp64
    c = kore.calibration
    assert c.matrices == 128
    assert c.bytes_all_layers == 32 * (3 * 4096**2 + 11008**2) * 8
    assert c.strategy == "all layers at once"
    # the null-space init needs whole weights: refused under ZeRO-3 with the method's reason
    assert kore.modes["zero3"].refused and not kore.modes["zero3"].fits and kore.modes["zero2"].fits


def test_qwen_7b_full_ft_fits_only_sharded_and_small_gpus_need_streaming():
    plans = {p.method: p for p in plan(QWEN_7B, _methods("full-ft", "kore"),
                                       Settings(gpus=8, gpu_memory=40e9, modes=("ddp", "zero3")))}
    full = plans["full-ft"]
    assert full.total_params == 8_292_166_656  # Qwen2.5-VL-7B
    assert not full.modes["ddp"].fits and full.modes["zero3"].fits
    c = plans["kore"].calibration
    assert c.matrices == 4 * 28
    assert c.bytes_all_layers == 28 * (3 * 3584**2 + 18944**2) * 8
    assert c.strategy == "per-layer streaming"  # 16.6 GB weights + 95 GB of fp64 matrices > 36 GB


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kore_bench", *args], capture_output=True, text=True)


def test_cli_plan_prints_counts_and_refuses_bad_input(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(LLAVA_7B))
    r = _cli("plan", "--model", str(cfg), "--methods", "lora", "--set", "lora.rank=128", "--gpus", "8",
             "--accelerate-config", "configs/accelerate/zero3.yaml")
    assert r.returncode == 0, r.stderr
    assert "340,795,392" in r.stdout and "zero3" in r.stdout
    for args, message in [(("--gpu-memory", "80XB"), "--gpu-memory"), (("--gpus", "0"), "--gpus"),
                          (("--accelerate-config", "configs/accelerate/ddp.yaml", "--gpus", "4"), "8 processes"),
                          (("--methods", "lorra"), "did you mean 'lora'")]:
        r = _cli("plan", "--model", str(cfg), *args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
    r = _cli("plan", "--model", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "missing.json" in r.stderr


def test_accelerate_configs_are_valid_and_name_their_mode():
    from accelerate.commands.config.config_args import load_config_from_file

    for mode in ("ddp", "fsdp", "zero2", "zero3"):
        path = f"configs/accelerate/{mode}.yaml"
        assert load_config_from_file(path).mixed_precision == "bf16"
        assert read_accelerate_config(Path(path), 8) == (mode, 8)
    with pytest.raises(KoreBenchError, match="asks for 8 processes"):
        read_accelerate_config(Path("configs/accelerate/zero2.yaml"), 2)
