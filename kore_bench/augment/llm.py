"""The ``llm`` augmenter: dialogue rounds written by a language model, validated and cached.

The model is any OpenAI-compatible chat endpoint (``base_url``, ``model``, ``api_key``; plain
``urllib``) or a local ``transformers`` causal LM (``model_path``). It gets a prompt file from
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
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from ..cache import cache_root
from ..data import IMAGE_TOKEN, Sample
from ..errors import KoreBenchError, UnknownNameError
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


class Backend(Protocol):
    model_id: str

    def complete(self, prompt: str, seed: int) -> str: ...


class OpenAIChat:
    """POST ``{base_url}/chat/completions`` with one user message; the reply's message content."""

    def __init__(self, base_url: str, model: str, api_key: str | None, *, temperature: float,
                 max_tokens: int, timeout: float, retries: int):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model_id, self.api_key = model, api_key
        self.temperature, self.max_tokens, self.timeout, self.retries = temperature, max_tokens, timeout, retries

    def complete(self, prompt: str, seed: int) -> str:
        body = {"model": self.model_id, "messages": [{"role": "user", "content": prompt}],
                "temperature": self.temperature, "max_tokens": self.max_tokens, "seed": seed}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                break
            except urllib.error.HTTPError as e:
                if e.code in (408, 429, 500, 502, 503, 504) and attempt < self.retries:
                    time.sleep(2 ** attempt)
                    continue
                detail = e.read().decode("utf-8", "replace")[:300]
                raise KoreBenchError(f"{self.url}: HTTP {e.code} {e.reason}: {detail}") from e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt < self.retries:
                    time.sleep(2 ** attempt)
                    continue
                raise KoreBenchError(f"cannot reach the chat endpoint {self.url}: {e}") from e
            except json.JSONDecodeError as e:
                raise KoreBenchError(f"{self.url}: the endpoint did not answer JSON ({e})") from e
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise KoreBenchError(f"{self.url}: not a chat completion (no choices[0].message.content): "
                                 f"{str(payload)[:300]}") from e
        return content if isinstance(content, str) else json.dumps(content)


class LocalCausalLM:
    """A local ``transformers`` text model, loaded on the first call (a full cache loads nothing)."""

    def __init__(self, path: str, *, temperature: float, max_tokens: int):
        self.path = str(Path(path).expanduser().resolve()) if Path(path).expanduser().exists() else path
        self.model_id = f"local:{self.path}"
        self.temperature, self.max_tokens = temperature, max_tokens
        self._model: Any = None

    def complete(self, prompt: str, seed: int) -> str:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._model is None:
            self._tok = AutoTokenizer.from_pretrained(self.path)
            self._model = AutoModelForCausalLM.from_pretrained(self.path).eval()
        tok = self._tok
        if tok.chat_template:
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                          return_dict=True, return_tensors="pt")["input_ids"]
        else:
            ids = tok(prompt, return_tensors="pt")["input_ids"]
        torch.manual_seed(seed)
        sampling = {"do_sample": False}
        if self.temperature > 0:
            sampling = {"do_sample": True, "temperature": self.temperature}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = self._model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_tokens,
                                       pad_token_id=pad, **sampling)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


class ReplyCache:
    """One JSON file per key under ``root``; written atomically."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))["reply"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return None  # a damaged entry is asked again and overwritten

    def put(self, key: str, reply: str, about: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({**about, "reply": reply}, fh, ensure_ascii=False, indent=1)
        os.replace(tmp, path)


# ---- validation -------------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W\d_][\w'-]*|\d+")
_COMMON = {"the", "a", "an", "he", "she", "it", "they", "his", "her", "its", "their", "this", "that",
           "these", "those", "there", "yes", "no", "in", "on", "at", "i", "we", "you", "what", "which",
           "who", "where", "when", "sure", "mr", "ms", "mrs", "dr"}


def parse_reply(reply: str) -> list[Any] | str:
    """The reply's JSON list (code fences and surrounding prose tolerated), or why there is none."""
    text = reply.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("["), text.rfind("]")
        try:
            data = json.loads(text[start:end + 1]) if 0 <= start < end else None
        except json.JSONDecodeError:
            data = None
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
        backend: Backend = LocalCausalLM(model_path, temperature=temperature, max_tokens=max_tokens)
    else:
        url, name = _setting(base_url, "base_url"), _setting(model, "model")
        if not url or not name:
            raise KoreBenchError("augmenter 'llm' needs a model: options base_url and model (or "
                                 "$KORE_BENCH_LLM_BASE_URL / $OPENAI_BASE_URL and $KORE_BENCH_LLM_MODEL), "
                                 "or model_path for a local transformers model")
        backend = OpenAIChat(url, name, _setting(api_key, "api_key"), temperature=temperature,
                             max_tokens=max_tokens, timeout=timeout, retries=retries)
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
            reply = backend.complete(string.Template(text).safe_substitute(item), seed)
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
