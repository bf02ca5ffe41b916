"""Throughput of the native evaluator (:func:`kore_bench.evaluate.generation.generate`) against a naive
one-sample-at-a-time ``model.generate`` loop and lm-eval's ``HFLM.generate_until``, on the same
in-memory model and the same suite samples; ratios are measured side by side in one run.

    .venv/bin/python bench/bench_eval.py --random-init            # micro world, untrained model (~1 min)
    .venv/bin/python bench/bench_eval.py                          # micro base (built on first use: minutes)
    .venv/bin/python bench/bench_eval.py --world default --threads 2

Tasks come from the ``world-retention`` suite (test + dev items, repeated up to ``--samples``):

- text (``reasoning``, arithmetic): native vs naive vs lm-eval. lm-eval's ``HFLM`` is text-only, so
  it gets the very prompts the native evaluator renders (the processor's chat template, with the
  generation prompt) as ``generate_until`` contexts, ``until`` = the end-of-turn token, the task's
  ``max_new_tokens`` as ``max_gen_toks``, greedy;
- image (``counting``): native vs naive (lm-eval's text-only ``HFLM`` cannot see images).

Every timing covers the whole path from samples to answer strings (chat template, tokenising,
image loading, generation, decoding); the fastest of ``--repeats`` interleaved runs counts. The
physical limit is a forward-only pass over the same tokens: each prompt plus the tokens the model
generated for it (but the last, which is never fed back), in batches of the same size, without
any generation loop; "generation reaches X %" is that forward's time over the generator's.

lm-eval caveat: HF ``generate`` lets a generation config's ``max_new_tokens`` (kore-tiny's says 32)
override the ``max_length`` that ``HFLM`` derives from ``max_gen_toks``, so ``HFLM`` would generate 32
tokens; the bench clears it for the lm-eval runs (and restores it) so all three stop at the same length.

``--random-init`` skips pre-training: answers are garbage (and usually run to ``max_new_tokens``)
but speed and agreement are still measured. Without it the cached base of ``--world`` is used (and
built on first use), so answers are real and the exact-match scores are shown too.

Not part of the test suite.
"""
from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


# ---------------------------------------------------------------- setup


def load_model(world: str, arch: str, random_init: bool):
    """(model, processor, description): the world's cached base, or an untrained kore-tiny."""
    from kore_bench.base import RECIPES, build_base

    if not random_init:
        ref = build_base(world, arch)
        model, processor = ref.load()
        return model, processor, f"base {ref.description}"
    from kore_bench.cache import world_dir
    from kore_bench.data import load_conversations
    from kore_bench.models.tiny import build_tiny
    from kore_bench.models.tokenizer import train_tokenizer

    recipe = RECIPES[world]
    wdir = world_dir(world)
    old = load_conversations(wdir / "train" / "old_knowledge.json", wdir)[0]
    tok = train_tokenizer((s.text() for s in old), recipe.vocab_size)
    model, processor = build_tiny(arch, tok, recipe.model_size, seed=0)
    return model, processor, f"random-init kore-tiny {arch}/{recipe.model_size} (answers are garbage)"


def task_samples(world: str, name: str, n: int):
    """The task's test + dev samples of the world-retention suite, repeated or cut to ``n``."""
    from kore_bench.cache import world_dir
    from kore_bench.suites import load_suites

    suite = load_suites()["world-retention"].with_variables(world=str(world_dir(world)))
    task = next(t for t in suite.tasks if t.name == name)
    samples = suite.task_samples(task, "test") + suite.task_samples(task, "dev")
    unique = len(samples)
    samples = (samples * (n // unique + 1))[:n]
    return samples, unique, task.generation.get("max_new_tokens", 32)


def end_of_turn(model, processor) -> list[str]:
    """The end-of-turn token(s) that end an assistant answer (the generation config's eos)."""
    tok = processor.tokenizer
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    return [tok.convert_ids_to_tokens(i) for i in eos]


# ---------------------------------------------------------------- the three generators


def run_native(model, processor, samples, max_new_tokens: int, batch_size: int) -> list[str]:
    from kore_bench.evaluate.generation import generate

    return generate(model, processor, samples, max_new_tokens, batch_size)


@torch.no_grad()
def run_naive(model, processor, samples, max_new_tokens: int, keep_ids: list | None = None) -> list[str]:
    """One ``model.generate`` per sample: no padding, no batching."""
    from kore_bench.encoding import encode_prompt

    tok = processor.tokenizer
    answers = []
    for s in samples:
        features = encode_prompt(processor, s)
        out = model.generate(**features, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        new = out[0, features["input_ids"].shape[1]:]
        if keep_ids is not None:
            keep_ids.append((features, new))
        answers.append(tok.decode(new, skip_special_tokens=True).strip())
    return answers


class LmEval:
    """lm-eval's ``HFLM`` wrapped around the same in-memory model and tokenizer."""

    def __init__(self, model, processor, batch_size: int, until: list[str]):
        import logging

        from lm_eval.models.huggingface import HFLM

        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        self.model, self.processor, self.until = model, processor, until
        self.lm = HFLM(pretrained=model, tokenizer=processor.tokenizer, batch_size=batch_size,
                       backend="causal")

    def __call__(self, samples, max_new_tokens: int) -> list[str]:
        from lm_eval.api.instance import Instance

        from kore_bench.encoding import render
        from kore_bench.evaluate.lm_eval_tasks import hflm_generation_length

        gen_kwargs = {"until": list(self.until), "max_gen_toks": max_new_tokens, "do_sample": False}
        requests = [Instance("generate_until", {}, (render(self.processor, s, True), dict(gen_kwargs)), i)
                    for i, s in enumerate(samples)]
        with hflm_generation_length(self.model):
            out = self.lm.generate_until(requests, disable_tqdm=True)
        return [a.strip() for a in out]

    def same_prompt_tokens(self, samples) -> bool:
        from kore_bench.encoding import encode_prompt, render

        return all(self.lm.tok_encode(render(self.processor, s, True)) == encode_prompt(self.processor, s)[
            "input_ids"][0].tolist() for s in samples)


# ---------------------------------------------------------------- the physical limit


def forward_batches(processor, generated: Sequence[tuple[dict, torch.Tensor]], batch_size: int) -> list[dict]:
    """Left-padded batches of prompt + generated tokens (all but the last), longest-sorted."""
    from kore_bench.encoding import collate

    pad_id = processor.tokenizer.pad_token_id
    feats = []
    for features, new in generated:
        fed = new[:-1]  # the last generated token is never fed back
        f = dict(features)
        f["input_ids"] = torch.cat([features["input_ids"], fed[None]], dim=1)
        f["attention_mask"] = torch.cat([features["attention_mask"], torch.ones_like(fed)[None]], dim=1)
        for key in ("mm_token_type_ids", "token_type_ids"):
            if key in f:
                f[key] = torch.cat([features[key], torch.zeros_like(fed)[None]], dim=1)
        feats.append((f, len(new)))
    feats.sort(key=lambda x: x[0]["input_ids"].shape[1])
    batches = []
    for start in range(0, len(feats), batch_size):
        chunk = feats[start:start + batch_size]
        batch = collate([f for f, _ in chunk], pad_id, "left")
        batch["logits_to_keep"] = max(n for _, n in chunk)  # logits for every generated position
        batches.append(batch)
    return batches


@torch.no_grad()
def run_forward(model, batches: list[dict]) -> None:
    for batch in batches:
        model(**batch, use_cache=False)


# ---------------------------------------------------------------- measurement


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def agreement(a: Sequence[str], b: Sequence[str]) -> str:
    same = sum(x == y for x, y in zip(a, b))
    text = f"{same}/{len(a)}"
    diff = [(x, y) for x, y in zip(a, b) if x != y][:2]
    return text + (f"  e.g. {diff}" if diff else "")


def exact(answers: Sequence[str], samples) -> float:
    return 100.0 * sum(a.strip().lower() == (s.answer or "").strip().lower() for a, s in zip(answers, samples)) / len(samples)


def measure(name: str, runners: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    best: dict[str, float] = {}
    outputs: dict[str, Any] = {}
    for r in range(repeats):  # interleaved, so a busy spell on a shared machine hits every runner
        for key, fn in runners.items():
            seconds, out = timed(fn)
            best[key] = min(best.get(key, float("inf")), seconds)
            outputs.setdefault(key, out)
            print(f"  {name} run {r + 1}/{repeats} {key:<8} {seconds:7.3f} s", flush=True)
    return best, outputs


def report(title: str, n: int, best: dict[str, float], tokens: tuple[float, float]) -> None:
    print(f"\n{title}: {n} samples, {tokens[0]:.1f} prompt + {tokens[1]:.1f} generated tokens per sample (mean)")
    print(f"  {'':<22}{'seconds':>9}{'samples/s':>11}")
    labels = {"native": "native (batched)", "naive": "naive (one at a time)", "lm-eval": "lm-eval HFLM",
              "forward": "forward-only floor"}
    for key, seconds in best.items():
        print(f"  {labels[key]:<22}{seconds:>9.3f}{n / seconds:>11.1f}")
    native = best["native"]
    print(f"  native / naive      {best['naive'] / native:6.2f}x throughput")
    if "lm-eval" in best:
        print(f"  native / lm-eval    {best['lm-eval'] / native:6.2f}x throughput")
    print(f"  generation reaches  {100 * best['forward'] / native:5.1f} % of the forward-only floor "
          f"(native); naive {100 * best['forward'] / best['naive']:.1f} %"
          + (f", lm-eval {100 * best['forward'] / best['lm-eval']:.1f} %" if "lm-eval" in best else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default="micro", help="world preset: micro (quick), small, default")
    parser.add_argument("--arch", default="llava", choices=["llava", "qwen"])
    parser.add_argument("--random-init", action="store_true", help="skip pre-training (answers are garbage)")
    parser.add_argument("--samples", type=int, default=128, help="samples per task (test+dev, repeated)")
    parser.add_argument("--batch-size", type=int, default=32, help="native and lm-eval batch size")
    parser.add_argument("--repeats", type=int, default=3, help="runs per generator, interleaved; the fastest counts")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared CPU)")
    parser.add_argument("--text-task", default="reasoning")
    parser.add_argument("--image-task", default="counting")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, processor, what = load_model(args.world, args.arch, args.random_init)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    until = end_of_turn(model, processor)
    print(f"{what}, {params / 1e6:.2f} M parameters, world {args.world}, batch size {args.batch_size}, "
          f"{args.threads} threads, device {next(model.parameters()).device}")
    lm = LmEval(model, processor, args.batch_size, until)

    for kind, task in (("text", args.text_task), ("image", args.image_task)):
        samples, unique, max_new = task_samples(args.world, task, args.samples)
        how = "repeated to" if len(samples) > unique else "of which the first"
        print(f"\n{kind} task {task!r}: {unique} distinct samples {how} {len(samples)}, "
              f"max_new_tokens {max_new}" + (f", lm-eval until={until}" if kind == "text" else ""))
        generated: list = []
        naive_ref = run_naive(model, processor, samples, max_new, keep_ids=generated)  # warm-up + floor tokens
        batches = forward_batches(processor, generated, args.batch_size)
        runners = {
            "native": lambda: run_native(model, processor, samples, max_new, args.batch_size),
            "naive": lambda: run_naive(model, processor, samples, max_new),
        }
        if kind == "text":
            if any(s.image is not None for s in samples):
                raise SystemExit(f"--text-task {task!r} has images")
            print(f"  lm-eval prompt tokens identical to the native ones: {lm.same_prompt_tokens(samples[:unique])}")
            runners["lm-eval"] = lambda: lm(samples, max_new)
        runners["forward"] = lambda: run_forward(model, batches)
        best, out = measure(task, runners, args.repeats)
        prompt_tokens = sum(f["input_ids"].shape[1] for f, _ in generated) / len(generated)
        new_tokens = sum(len(n) for _, n in generated) / len(generated)
        report(f"{kind} task {task!r}", len(samples), best, (prompt_tokens, new_tokens))
        print(f"  agreement native = naive    {agreement(out['native'], out['naive'])}")
        assert out["naive"] == naive_ref
        if "lm-eval" in out:
            print(f"  agreement native = lm-eval  {agreement(out['native'], out['lm-eval'])}")
        if not args.random_init:
            scores = ", ".join(f"{k} {exact(out[k], samples):.1f}" for k in ("native", "naive", "lm-eval") if k in out)
            print(f"  exact match %: {scores}")


if __name__ == "__main__":
    main()
