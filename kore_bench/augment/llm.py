"""The ``llm`` augmenter: dialogue rounds written by a language model, validated and cached.

The model is any OpenAI-compatible chat endpoint (``base_url``, ``model``, ``api_key``) or a local
``transformers`` causal LM (``model_path``), both from :mod:`kore_bench.llm_client` (shared with
the LLM judge). It gets a prompt file from
``prompts/`` filled with the item's knowledge text and must reply with a JSON list of
``{"question", "answer"}`` rounds. Replies are cached on disk by (prompt file hash, model,
generation settings, item), so a rerun makes no calls; validation runs on every read, so a changed
validator needs no new calls. With a world, the branches come from the template augmenter.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import string
from pathlib import Path
from typing import Any

from ..cache import cache_root
from ..data import IMAGE_TOKEN, Sample
from ..errors import KoreBenchError, UnknownNameError
from ..llm_client import ChatModel, LocalCausalLM, OpenAIChat, ReplyCache, json_in_reply
from ..progress import track
from .core import AUGMENTERS, AugmentReport
from .template import branches, rng_for, trunk
from .world import WorldFacts

PROMPTS = Path(__file__).parent / "prompts"
GENERIC_SUBJECT = "a hypernym of the subject, such as 'the person in the image' or 'the company in the image'"
ENV = {"base_url": ("KORE_BENCH_LLM_BASE_URL", "OPENAI_BASE_URL"), "model": ("KORE_BENCH_LLM_MODEL",),
       "api_key": ("KORE_BENCH_LLM_API_KEY", "OPENAI_API_KEY")}


def load_prompt(name: str) -> tuple[str, str]:
    """(text, sha256) of ``prompts/<name>.txt`` or of the file ``name``; it must use ``$knowledge``."""
    path = Path(name)
    if not path.is_file():
        path = PROMPTS / f"{name}.txt"
        if not path.is_file():
            raise UnknownNameError("augmentation prompt", name, [p.stem for p in PROMPTS.glob("*.txt")])
    text = path.read_text(encoding="utf-8")
    if "$knowledge" not in text:
        raise KoreBenchError(f"prompt {path} does not use $knowledge")
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---- validation -------------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W\d_][\w'-]*|\d+")
_COMMON = {"the", "a", "an", "he", "she", "it", "they", "his", "her", "its", "their", "this", "that",
           "these", "those", "there", "yes", "no", "in", "on", "at", "i", "we", "you", "what", "which",
           "who", "where", "when", "sure", "mr", "ms", "mrs", "dr"}


def parse_reply(reply: str) -> list[Any] | str:
    """The reply's JSON list (code fences and surrounding prose tolerated), or why there is none."""
    data = json_in_reply(reply, "[")
    if data is None:
        return f"reply is not JSON: {reply[:80]!r}"
    if isinstance(data, dict) and isinstance(data.get("rounds", data.get("dialogue")), list):
        data = data.get("rounds", data.get("dialogue"))
    if not isinstance(data, list):
        return f"reply is JSON but not a list of rounds (got {type(data).__name__})"
    if not data:
        return "reply is an empty list"
    return data


def ungrounded(answer: str, known: str) -> list[str]:
    """Names and numbers of ``answer`` that ``known`` lacks (capitalised words and digits are checkable)."""
    vocabulary = {t.lower() for t in _TOKEN.findall(known)}
    return [t for t in _TOKEN.findall(answer)
            if (t.isdigit() or t[0].isupper()) and t.lower() not in _COMMON and t.lower() not in vocabulary]


def validate(reply: str, known: str, world: WorldFacts | None, limit: int
             ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(valid (question, answer) rounds, [(where, reason)] rejections) of one model reply."""
    data = parse_reply(reply)
    if isinstance(data, str):
        return [], [("reply", data)]
    rounds, problems, seen = [], [], set()
    for i, r in enumerate(data):
        where = f"round {i + 1}"
        if not isinstance(r, dict):
            problems.append((where, f"not an object: {r!r:.60}"))
            continue
        q, a = r.get("question"), r.get("answer")
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            a = str(a)
        if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
            problems.append((where, "question and answer must be non-empty strings"))
            continue
        q, a = " ".join(q.replace(IMAGE_TOKEN, " ").split()), a.strip().replace(IMAGE_TOKEN, "")
        missing = ungrounded(a, known)
        held_out = world.held_out_phrasing(q) if world is not None else None
        if missing:
            problems.append((where, f"answer not grounded in the knowledge text: {', '.join(missing)}"))
        elif held_out:
            problems.append((where, f"question uses a held-out phrasing ({held_out})"))
        elif q.lower() in seen:
            problems.append((where, "repeats an earlier question"))
        elif len(rounds) >= limit:
            problems.append((where, f"beyond the {limit} rounds asked for"))
        else:
            seen.add(q.lower())
            rounds.append((q, a))
    return rounds, problems


def _setting(value: str | None, key: str) -> str | None:
    return value if value is not None else next((os.environ[v] for v in ENV[key] if os.environ.get(v)), None)


@AUGMENTERS.register("llm")
def llm(samples: list[Sample], world: WorldFacts | None, seed: int, report: AugmentReport, *,
        base_url: str | None = None, model: str | None = None, api_key: str | None = None,
        model_path: str | None = None, prompt: str = "dialogue", max_rounds: int = 11,
        temperature: float = 0.0, max_tokens: int = 1024, timeout: float = 120.0, retries: int = 2,
        cache_dir: str | None = None, branch: bool = True, max_views: int | None = None,
        short_answer_suffix: bool = True) -> list[Sample]:
    """Dialogue trunks written by a model (endpoint from options or $KORE_BENCH_LLM_BASE_URL /
    $OPENAI_BASE_URL, $KORE_BENCH_LLM_MODEL, $KORE_BENCH_LLM_API_KEY / $OPENAI_API_KEY; or a local
    ``model_path``). Items whose reply yields no valid round are kept unaugmented and reported;
    rejected rounds are reported with reasons. Cache: ``cache_dir`` or $KORE_BENCH_CACHE/augment/llm.
    """
    text, prompt_sha = load_prompt(prompt)
    if model_path:
        backend: ChatModel = LocalCausalLM(model_path)
    else:
        url, name = _setting(base_url, "base_url"), _setting(model, "model")
        if not url or not name:
            raise KoreBenchError("augmenter 'llm' needs a model: options base_url and model (or "
                                 "$KORE_BENCH_LLM_BASE_URL / $OPENAI_BASE_URL and $KORE_BENCH_LLM_MODEL), "
                                 "or model_path for a local transformers model")
        backend = OpenAIChat(url, name, _setting(api_key, "api_key"), timeout=timeout, retries=retries)
    cache = ReplyCache(Path(cache_dir) if cache_dir else cache_root() / "augment" / "llm")
    settings = {"temperature": temperature, "max_tokens": max_tokens, **({"seed": seed} if temperature > 0 else {})}
    out = []
    for s in track(samples, "augmentation (llm)", unit="items"):
        user = [m["content"] for m in s.messages if m["role"] == "user"]
        answers = [m["content"] for m in s.messages if m["role"] == "assistant"]
        hit = world.match(s) if world is not None else None
        entity, view = hit if hit else (None, None)
        n = max_rounds - len(answers)
        if not answers or not answers[0].strip() or n < 1:
            why = "no knowledge text (assistant turn)" if not answers or not answers[0].strip() else \
                f"already has {len(answers)} rounds (max_rounds={max_rounds})"
            report.pass_through(s.id, why)
            out.append(s)
            continue
        question = user[0].replace(IMAGE_TOKEN, "").strip()
        item = {"question": question, "knowledge": answers[0].strip(), "n_rounds": n,
                "subject": entity.subject if entity else GENERIC_SUBJECT}
        key = hashlib.sha256(json.dumps([prompt_sha, backend.model_id, settings, item], sort_keys=True)
                             .encode("utf-8")).hexdigest()
        reply = cache.get(key)
        if reply is None:
            reply = backend.complete(string.Template(text).safe_substitute(item), temperature=temperature,
                                     max_tokens=max_tokens, seed=seed)
            cache.put(key, reply, {"model": backend.model_id, "prompt_sha256": prompt_sha, "item": s.id})
            report.calls += 1
        else:
            report.cache_hits += 1
        known = " ".join([item["knowledge"], question, entity.subject if entity else ""])
        rounds, problems = validate(reply, known, world, n)
        for where, reason in problems:
            report.reject(s.id if where == "reply" else f"{s.id} {where}", reason)
        if rounds:
            out.append(trunk(s, entity, rounds, {"model": backend.model_id, "prompt_sha256": prompt_sha[:16],
                                                 "injection_view": view}, augmenter="llm"))
            report.count("dialogue")
        else:
            report.pass_through(s.id, "the model's reply gave no valid round (see rejected)")
            out.append(s)
        if branch and entity is not None:
            out += branches(s, entity, view, world, rng_for(seed, entity.id, s.id), report, max_views=max_views,
                            short_answer_suffix=short_answer_suffix, augmenter="llm")
    return out
