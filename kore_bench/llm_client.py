"""Chat models behind one small interface, shared by the ``llm`` augmenter and the LLM judge.

* :class:`OpenAIChat` — any OpenAI-compatible chat endpoint (``POST {base_url}/chat/completions``,
  plain ``urllib``); images go as ``image_url`` content parts holding data URIs.
* :class:`LocalCausalLM` — a local ``transformers`` text model, loaded on the first call (a fully
  cached job never loads it); it cannot see images.

Both take temperature, max_tokens, an optional seed and optional images per call. :class:`ReplyCache`
keeps one reply per key on disk; :class:`CachedChat` puts a model behind it, keyed by the model's
identity, the prompt, temperature, max_tokens and the images' hashes (and the attempt number when a
caller asks the same thing again on purpose), so a rerun makes no calls.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import KoreBenchError


def json_in_reply(reply: str, opener: str = "[") -> Any | None:
    """The JSON value a model's reply holds, or None: the whole reply, else a code fence's content,
    else the span from the first ``opener`` (``[`` or ``{``) to the last matching closer."""
    text = reply.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find(opener), text.rfind({"[": "]", "{": "}"}[opener])
        try:
            return json.loads(text[start:end + 1]) if 0 <= start < end else None
        except json.JSONDecodeError:
            return None


class ChatModel(Protocol):
    model_id: str  # what the replies depend on (cache keys, provenance)
    sees_images: bool

    def complete(self, prompt: str, *, temperature: float, max_tokens: int, seed: int | None = None,
                 images: Sequence[bytes] = ()) -> str: ...


def image_mime(data: bytes) -> str:
    """The MIME type of encoded image bytes (JPEG when unrecognised)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def image_data_uri(data: bytes) -> str:
    return f"data:{image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"


class OpenAIChat:
    """POST ``{base_url}/chat/completions`` with one user message; the reply's message content.

    Transient failures (connection, timeouts, HTTP 408/429/5xx) are retried ``retries`` times with
    backoff; anything else is a :class:`KoreBenchError` naming the endpoint. ``image_detail`` is sent
    with every image (VLMEvalKit's judge wrapper sends ``"low"``)."""

    sees_images = True

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 120.0,
                 retries: int = 2, image_detail: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model, self.api_key = model, api_key
        self.model_id = model  # the identity replies are cached under (a caller may add the endpoint)
        self.timeout, self.retries, self.image_detail = timeout, retries, image_detail

    def content(self, prompt: str, images: Sequence[bytes]) -> str | list[dict[str, Any]]:
        if not images:
            return prompt
        parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        for data in images:
            url: dict[str, Any] = {"url": image_data_uri(data)}
            if self.image_detail:
                url["detail"] = self.image_detail
            parts.append({"type": "image_url", "image_url": url})
        return parts

    def complete(self, prompt: str, *, temperature: float, max_tokens: int, seed: int | None = None,
                 images: Sequence[bytes] = ()) -> str:
        body: dict[str, Any] = {"model": self.model,
                                "messages": [{"role": "user", "content": self.content(prompt, images)}],
                                "temperature": temperature, "max_tokens": max_tokens}
        if seed is not None:
            body["seed"] = seed
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
        if content is None:
            return ""
        return content if isinstance(content, str) else json.dumps(content)


class LocalCausalLM:
    """A local ``transformers`` text model, loaded on the first call (a full cache loads nothing);
    on CUDA when available. Greedy at temperature 0, sampled above."""

    sees_images = False

    def __init__(self, path: str, *, device: str | None = None):
        self.path = str(Path(path).expanduser().resolve()) if Path(path).expanduser().exists() else path
        self.model_id = f"local:{self.path}"
        self.device = device
        self._model: Any = None

    def complete(self, prompt: str, *, temperature: float, max_tokens: int, seed: int | None = None,
                 images: Sequence[bytes] = ()) -> str:
        if images:
            raise KoreBenchError(f"{self.model_id} is a text-only model and cannot be shown images")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self._model is None:
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._tok = AutoTokenizer.from_pretrained(self.path)
            self._model = AutoModelForCausalLM.from_pretrained(self.path).to(device).eval()
        tok = self._tok
        if tok.chat_template:
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                          return_dict=True, return_tensors="pt")["input_ids"]
        else:
            ids = tok(prompt, return_tensors="pt")["input_ids"]
        ids = ids.to(self._model.device)
        if seed is not None:
            torch.manual_seed(seed)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = self._model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                       pad_token_id=pad, **sampling)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


class ReplyCache:
    """One JSON file per key under ``root``; written atomically, a damaged entry is asked again."""

    def __init__(self, root: Path):
        self.root = Path(root)

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


def reply_key(model_id: str, prompt: str, temperature: float, max_tokens: int, images: Sequence[bytes] = (),
              seed: int | None = None, attempt: int = 0) -> str:
    """The cache key of one call: model, prompt, temperature, max_tokens, image hashes (seed and attempt
    only when given, so the plain call keeps one key)."""
    parts: dict[str, Any] = {"model": model_id, "prompt": prompt, "temperature": float(temperature),
                             "max_tokens": int(max_tokens),
                             "images": [hashlib.sha256(b).hexdigest() for b in images]}
    if seed is not None:
        parts["seed"] = seed
    if attempt:
        parts["attempt"] = attempt
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


class CachedChat:
    """A chat model behind a :class:`ReplyCache`; counts the calls made and the cache hits."""

    def __init__(self, model: ChatModel, cache: ReplyCache):
        self.model, self.cache = model, cache
        self.calls = self.cache_hits = 0

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def sees_images(self) -> bool:
        return self.model.sees_images

    def complete(self, prompt: str, *, temperature: float = 0.0, max_tokens: int, images: Sequence[bytes] = (),
                 seed: int | None = None, attempt: int = 0) -> str:
        """The reply to ``prompt``; ``attempt`` > 0 asks again (a fresh call, cached on its own)."""
        key = reply_key(self.model.model_id, prompt, temperature, max_tokens, images, seed, attempt)
        reply = self.cache.get(key)
        if reply is not None:
            self.cache_hits += 1
            return reply
        reply = self.model.complete(prompt, temperature=temperature, max_tokens=max_tokens, seed=seed,
                                    images=images)
        self.calls += 1
        self.cache.put(key, reply, {"model": self.model.model_id, "temperature": temperature,
                                    "max_tokens": max_tokens, "attempt": attempt, "prompt": prompt})
        return reply
