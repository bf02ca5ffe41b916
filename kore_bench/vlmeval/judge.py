"""The LLM judge and VLMEvalKit's judge-based scoring, rule for rule (ms-vlmeval 0.0.20).

A judge is ``--judge URL,MODEL`` (an OpenAI-compatible chat endpoint; the API key from
$KORE_BENCH_JUDGE_API_KEY or $OPENAI_API_KEY) or ``--judge hf:PATH`` (a local ``transformers``
text model). Its replies are cached on disk ($KORE_BENCH_CACHE/judge, keyed by the judge, prompt,
temperature, max_tokens and image hashes), so re-scoring makes no calls. As VLMEvalKit's API wrapper
does, a reply is stripped and an empty one counts as a failed call (``"Failed to obtain answer via
API. "``); an endpoint that cannot be reached is an error, never a lower score.

Sources transcribed (read, not imported): ``dataset/image_vqa.py`` (MathVista, MathVision) with
``utils/mathvista.py`` and ``utils/mathv.py``; ``dataset/miabench.py``; ``utils/multiple_choice.py``
(``extract_answer_from_item``, ``eval_circular_group``); ``utils/yorn.py`` (``YOrN_auxeval``);
``dataset/image_mt.py`` (``MMDUDataset.calculat_metric``) with ``utils/mmdu.py`` (``mmdu_score``).

* MathVista / MathVision: an answer is *prefetched* from the prediction when VLMEvalKit's
  ``post_check`` accepts it (a choice letter ``can_infer`` finds; a number equal to the answer);
  otherwise the judge extracts it (``max_tokens`` 128, up to 5 tries at temperature 0.5·i, a try
  failing only when its reply is VLMEvalKit's failure message). Accuracy per task, skill (MathVista)
  or subject (MathVision) and Overall, ×100. Quirks kept: MathVista's free-form ``text``/``list``
  answers never match (``post_check`` compares ``str(None)``); choices, skills and weights are read
  as Python literals (``ast.literal_eval``, VLMEvalKit ``eval``\\ s them); MathVision's ``is_equal``
  evaluates both sides as numeric Python expressions (a safe evaluator: numbers and arithmetic only)
  and then, only when ``latex2sympy2_extended`` (or ``latex2sympy2``) is installed, as LaTeX —
  kore-bench does not install it, so ``\\frac{1}{2}`` vs ``0.5`` is a miss without it.
* MIA-Bench: the judge sees the instruction's weighted components, the response and the image
  (``max_tokens`` 2048, temperature 0) and scores each component; its first sentence ("score of
  component 1: x/2, …, total score: z/10") is parsed as VLMEvalKit does (a reply that does not parse
  leaves the item out of every average). The table holds each component type's mean fraction and
  ``total_score``; the headline is ``total_score`` ×100.
* MMDU: each turn of each dialogue is judged on its own (the turn's question, reference answer and
  the model's answer to it; text only, ``max_tokens`` 2048, temperature 0, one try). The reply's text
  from its first ``{`` to its last ``}`` is read as a Python literal (VLMEvalKit ``eval``\\ s it; here
  literals and arithmetic only): a dict of scores over seven dimensions (Creativity, Richness, Visual
  Perception, Logical Coherence, Answer Accuracy, Image Relationship Understanding, Overall Score). A
  reply that does not read leaves the turn's scores empty. Every turn counts in each dimension's
  ``all`` average; a score is ``int()`` of the value clipped to 0..10, and a value ``int()`` refuses
  (a missing dimension, None, "7/10") adds 0 to ``all`` and is left out of ``valid``. Both averages
  are ×10 (0–100); the headline is ``all``'s Overall Score, the figure VLMEvalKit's table leads with.
* Multiple choice fallback (``extract_answer_from_item``): only when ``can_infer`` finds nothing in
  the prediction, up to 3 tries of VLMEvalKit's matching prompt (temperature 0); three failures
  pick a random option or Z, as VLMEvalKit does, but seeded by benchmark and index (reproducible).
* Yes/no fallback (``YOrN_auxeval``): only for predictions extracted as Unknown, up to 5 tries at
  temperature 0.5·i of VLMEvalKit's matching prompt, each reply read by ``YOrN_Extraction``.
"""
from __future__ import annotations

import ast
import math
import operator
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..cache import cache_root
from ..data import ImageRef
from ..errors import DataError, KoreBenchError
from ..llm_client import CachedChat, ChatModel, LocalCausalLM, OpenAIChat, ReplyCache
from . import judge_prompts as prompts
from .extract import UNKNOWN, extract_option, extract_yes_no

API_FAIL = "Failed to obtain answer via API. "  # VLMEvalKit's BaseAPI.fail_msg, for an empty reply
FAIL_MSG = "Failed to obtain answer via API."  # what MathVista/MathVision look for in a reply
JUDGE_MAX_TOKENS = 2048  # VLMEvalKit's OpenAIWrapper default (MC, yes/no, MIA-Bench)
EXTRACT_MAX_TOKENS = 128  # MathVista/MathVision: build_judge(max_tokens=128)
API_KEY_ENV = ("KORE_BENCH_JUDGE_API_KEY", "OPENAI_API_KEY")
IMAGE_DETAIL = "low"  # VLMEvalKit's OpenAIWrapper sends images with detail "low"
# pandas' default NA strings: VLMEvalKit reloads judge replies from a file, which reads these as NaN
_NA_STRINGS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
               "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


class NotScored(DataError):
    """A benchmark that cannot be scored as asked; the message is the reason reported."""


class Judge:
    """A chat model used as VLMEvalKit's judge, behind the on-disk reply cache."""

    def __init__(self, model: ChatModel, identity: dict[str, str], cache_dir: Path | None = None):
        self.chat = CachedChat(model, ReplyCache(cache_dir or cache_root() / "judge"))
        self.identity = identity

    @property
    def sees_images(self) -> bool:
        return self.chat.sees_images

    @property
    def stats(self) -> dict[str, int]:
        return {"calls": self.chat.calls, "cache_hits": self.chat.cache_hits}

    def __str__(self) -> str:
        if "hf" in self.identity:
            return f"hf:{self.identity['hf']}"
        return f"{self.identity['model']} at {self.identity['endpoint']}"

    def generate(self, prompt: str, *, temperature: float = 0.0, max_tokens: int = JUDGE_MAX_TOKENS,
                 images: Sequence[bytes] = (), attempt: int = 0) -> str:
        """The judge's stripped reply (VLMEvalKit strips it); an empty one is VLMEvalKit's failure message."""
        reply = self.chat.complete(prompt, temperature=temperature, max_tokens=max_tokens, images=images,
                                   attempt=attempt).strip()
        return reply or API_FAIL

    def check(self) -> None:
        """Fail fast on a judge that cannot answer (VLMEvalKit's ``model.working()``): one uncached
        call to an endpoint; a local model's folder must exist (loading it is left to the first use)."""
        model = self.chat.model
        if isinstance(model, LocalCausalLM):
            if not Path(model.path).exists() and not re.fullmatch(r"[\w.-]+/[\w.-]+", model.path):
                raise KoreBenchError(f"--judge hf:{model.path}: no such model folder (nor a hub id)")
            return
        model.complete("Hello!", temperature=0.0, max_tokens=1)


def parse_judge(spec: str, cache_dir: Path | None = None) -> Judge:
    """``URL,MODEL`` (OpenAI-compatible endpoint) or ``hf:PATH`` (a local transformers model)."""
    spec = spec.strip()
    if spec.startswith("hf:"):
        path = spec[3:].strip()
        if not path:
            raise KoreBenchError("--judge hf:PATH needs the model's folder (or hub id), "
                                 "e.g. hf:/models/Qwen2.5-7B-Instruct")
        model = LocalCausalLM(path)
        return Judge(model, {"hf": model.path}, cache_dir)
    url, sep, name = spec.rpartition(",")
    url, name = url.strip(), name.strip()
    if not sep or not url or not name or "://" not in url:
        raise KoreBenchError(f"--judge {spec!r}: expected URL,MODEL (an OpenAI-compatible endpoint, e.g. "
                             "https://api.openai.com/v1,gpt-4o-mini) or hf:PATH (a local transformers model)")
    key = next((os.environ[v] for v in API_KEY_ENV if os.environ.get(v)), None)
    model = OpenAIChat(url, name, key, timeout=300.0, retries=4, image_detail=IMAGE_DETAIL)
    # the endpoint is part of what the replies depend on (two servers may both call their model "judge")
    model.model_id = f"{name}@{model.base_url}"
    return Judge(model, {"endpoint": model.base_url, "model": name}, cache_dir)


# --------------------------------------------------------------------------------------------- helpers


def _literal(text: Any) -> Any:
    """A Python literal cell (VLMEvalKit ``eval``\\ s these: choices, skills, weights, components)."""
    return ast.literal_eval(str(text))


def _as_reloaded(reply: Any) -> Any:
    """A judge reply as VLMEvalKit reads it back from its intermediate file (NA strings become NaN)."""
    return math.nan if isinstance(reply, str) and reply in _NA_STRINGS else reply


def _can_infer(answer: Any, choices: Mapping[str, Any]) -> Any:
    """VLMEvalKit's ``can_infer``: the letter, or False."""
    return extract_option(str(answer), {k: str(v) for k, v in choices.items()}) or False


def _letters(values: Sequence[Any]) -> dict[str, Any]:
    return {chr(65 + i): v for i, v in enumerate(values)}  # list_to_dict


def _need(data: pd.DataFrame, columns: Sequence[str], benchmark: str) -> None:
    missing = [c for c in columns if c not in data]
    if missing:
        raise DataError(f"{benchmark}: the prediction table lacks column(s) {', '.join(missing)}")


def _rows(data: pd.DataFrame) -> list[dict[str, Any]]:
    return [dict(zip(data.columns, r)) for r in data.itertuples(index=False, name=None)]


def _extract_answer(judge: Judge, row: Mapping[str, Any], prompt: str, prefetch: Callable[[Any], Any]
                    ) -> tuple[str, Any]:
    """``MathVista_auxeval`` / ``MATH_V_auxeval``: (log, res)."""
    pre = prefetch(row["prediction"])
    if pre:
        return "Prefetch succeed", pre
    log = ""
    for i in range(5):
        res = judge.generate(prompt, temperature=i * 0.5, max_tokens=EXTRACT_MAX_TOKENS, attempt=i)
        if FAIL_MSG in res:
            log += f"Try {i}: output is {row['prediction']}, failed to parse.\n"
        else:
            return log + "Succeed", res
    return log + "All 5 retries failed.\n", ""


def _acc_table(name_col: str, tot: dict, fetch: dict, hit: dict) -> list[dict[str, Any]]:
    return [{name_col: k, "tot": tot[k], "prefetch": fetch[k], "hit": hit[k],
             "prefetch_rate": fetch[k] / tot[k] * 100, "acc": hit[k] / tot[k] * 100} for k in tot]


# --------------------------------------------------------------------------------------------- MathVista


def _mathvista_check(row: Mapping[str, Any], response: Any, prefetch: bool) -> Any:
    """``post_check`` of utils/mathvista.py."""
    res: Any = None
    ans = row["answer"]
    try:
        if row["question_type"] == "multi_choice":
            ans = row["answer_option"]
            res = _can_infer(response, _letters(_literal(row["choices"])))
            if prefetch:
                return res
        elif row["answer_type"] == "integer":
            res = int(response)
            ans = int(row["answer"])
        elif row["answer_type"] == "float":
            res = float(response)
            ans = float(row["answer"])
        else:
            res, ans = str(res), str(ans)  # sic: str(None), so free-form text/list answers never match
    except (ValueError, SyntaxError):  # SyntaxError: a choices cell literal_eval cannot read
        pass
    if res == ans:
        return res if prefetch else True
    return False


def _skills(cell: Any) -> list[Any]:
    try:
        value = _literal(cell)
    except (ValueError, SyntaxError):
        return [cell]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def score_mathvista(data: pd.DataFrame, judge: Judge, benchmark: str = "MathVista_MINI"):
    """MathVista.evaluate_heuristic: answers prefetched or judge-extracted, then ``MathVista_acc``."""
    from .score import Scored

    _need(data, ["index", "question", "answer", "prediction", "question_type", "answer_type", "task", "skills"],
          benchmark)
    tot: dict[Any, int] = defaultdict(int)
    fetch: dict[Any, int] = defaultdict(int)
    hit: dict[Any, int] = defaultdict(int)
    per_question = {}
    for row in _rows(data):
        log, res = _extract_answer(judge, row, prompts.mathvista_prompt(row["question"], row["prediction"]),
                                   lambda p, row=row: _mathvista_check(row, p, prefetch=True))
        cate, skills = row["task"], _skills(row["skills"])
        right = bool(_mathvista_check(row, _as_reloaded(res), prefetch=False))
        for key in ["Overall", *skills, cate]:
            tot[key] += 1
        for key in ["Overall", cate, *skills]:
            fetch[key] += log == "Prefetch succeed"
            hit[key] += right
        per_question[row["index"]] = float(right)
    return Scored(_acc_table("Task&Skill", tot, fetch, hit), per_question)


# --------------------------------------------------------------------------------------------- MathVision

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
           ast.BitXor: operator.xor, ast.BitAnd: operator.and_, ast.BitOr: operator.or_,
           ast.LShift: operator.lshift, ast.RShift: operator.rshift}
_UNOPS = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Invert: operator.invert}


def numeric_eval(text: str) -> Any:
    """``eval(text)`` for what is a number in Python syntax: numeric literals and arithmetic (``^`` is
    xor, as in Python). Anything else (names, calls, strings, containers) raises ValueError."""
    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float, complex):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, (ast.Pow, ast.LShift)) and abs(right) > 4096:
                raise ValueError("exponent too large")
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
            return _UNOPS[type(node.op)](ev(node.operand))
        raise ValueError(f"not a number: {ast.dump(node)[:60]}")

    return ev(ast.parse(text, mode="eval"))


def _latex2sympy() -> Callable[[str], Any] | None:
    try:
        from latex2sympy2_extended import latex2sympy
    except ImportError:
        try:
            from latex2sympy2 import latex2sympy
        except ImportError:
            return None
    return latex2sympy


LATEX2SYMPY = _latex2sympy()  # None: MathVision's LaTeX comparison is skipped (see the module docstring)


def is_equal(asw: Any, gt_asw: Any) -> bool:
    """MathVision's ``is_equal``: the same text, the same number, or (latex2sympy) the same LaTeX value."""
    asw, gt_asw = str(asw).lower().strip(), str(gt_asw).lower().strip()
    if gt_asw == asw:
        return True
    try:
        if abs(numeric_eval(gt_asw) - numeric_eval(asw)) < 1e-6:
            return True
    except Exception:  # noqa: BLE001 - VLMEvalKit catches everything here
        pass
    if LATEX2SYMPY is not None:
        try:
            a, b = LATEX2SYMPY(gt_asw), LATEX2SYMPY(asw)
            if abs(numeric_eval(str(a)) - numeric_eval(str(b))) < 1e-6:
                return True
            if abs(a - b) < 1e-6:
                return True
        except Exception:  # noqa: BLE001
            pass
    return False


def _mathvision_check(row: Mapping[str, Any], response: Any, prefetch: bool) -> Any:
    """``post_check`` of utils/mathv.py."""
    res: Any = None
    ans = row["answer"]
    try:
        choices = _literal(row["choices"])
        if len(choices) > 0:
            res = _can_infer(response, _letters(choices))
            if prefetch:
                return res
        else:
            res, ans = str(response), str(ans)
    except (ValueError, SyntaxError):
        pass
    try:
        if is_equal(res, ans):
            return res if prefetch else True
        return False
    except Exception:  # noqa: BLE001
        return False


def score_mathvision(data: pd.DataFrame, judge: Judge, benchmark: str = "MathVision"):
    """MathVision.evaluate_heuristic: answers prefetched or judge-extracted, then ``MATH_V_acc``."""
    from .score import Scored

    _need(data, ["index", "question", "answer", "prediction", "choices", "category"], benchmark)
    tot: dict[Any, int] = defaultdict(int)
    fetch: dict[Any, int] = defaultdict(int)
    hit: dict[Any, int] = defaultdict(int)
    per_question = {}
    for row in _rows(data):
        log, res = _extract_answer(judge, row, prompts.mathvision_prompt(row["question"], row["prediction"]),
                                   lambda p, row=row: _mathvision_check(row, p, prefetch=True))
        right = bool(_mathvision_check(row, _as_reloaded(res), prefetch=False))
        for key in ("Overall", row["category"]):
            tot[key] += 1
            fetch[key] += log == "Prefetch succeed"
            hit[key] += right
        per_question[row["index"]] = float(right)
    table = sorted(_acc_table("Subject", tot, fetch, hit), key=lambda r: r["Subject"])
    return Scored(table, per_question)


# --------------------------------------------------------------------------------------------- MIA-Bench


def parse_mia_score(component_types: Sequence[str], raw: Any) -> dict[str, float]:
    """``process_rawscore``: the judge's first sentence, "score of component 1: x/2, …, total score: z/10",
    as {component type: x/2, …, "total_score": z/10}; raises on anything else (as VLMEvalKit)."""
    first = raw.split(".")[0].split(",")
    scores: dict[str, float] = {}
    for i in range(len(first) - 1):
        part = first[i].split(":")[1][1:].split("/")
        scores[component_types[i]] = int(part[0]) / int(part[1])
    if len(first) < 2:
        raise ValueError("no component score")  # VLMEvalKit: an unbound loop variable
    part = first[-1].split(":")[1][1:].split("/")
    scores["total_score"] = int(part[0]) / int(part[1])
    return scores


def score_miabench(data: pd.DataFrame, judge: Judge, images: Mapping[str, ImageRef | bytes] | None,
                   benchmark: str = "MIA-Bench"):
    """MIABench.evaluate: the judge grades each response against the instruction's components (seeing
    the image); ``get_score_dict`` averages every component type and the total over the parsed items."""
    from .score import Scored

    _need(data, ["index", "question", "prediction", "components", "component_weight", "num_of_component",
                 "component_type"], benchmark)
    if not judge.sees_images:
        raise NotScored(f"not scored: VLMEvalKit's MIA-Bench judge sees the image, and the judge {judge} is a "
                        "text-only model (use an endpoint serving a vision model: --judge URL,MODEL)")
    images = images or {}
    by_type: dict[str, list[float]] = {}
    per_question: dict[Any, float] = {}
    for row in _rows(data):
        image = images.get(str(row["index"]))
        if image is None:
            raise DataError(f"{benchmark}: no image for index {row['index']} (the judge sees it): give the "
                            "benchmark's data (kore-bench score --data LMUData) or a table with its image column")
        n = int(row["num_of_component"])
        try:
            prompt = prompts.miabench_prompt(row["question"], _literal(row["components"]),
                                             _literal(row["component_weight"]), n, row["prediction"])
        except (ValueError, SyntaxError, IndexError) as e:
            raise DataError(f"{benchmark}: index {row['index']}: unreadable components ({e})") from e
        raw = judge.generate(prompt, images=[image.read_bytes() if isinstance(image, ImageRef) else image])
        try:
            types = row["component_type"][2:-2].split("', '")  # a non-string cell raises: left out
            scores = parse_mia_score(types, _as_reloaded(raw))
        except Exception:  # noqa: BLE001 - VLMEvalKit leaves an unparsed item out of every average
            continue
        for key, value in scores.items():
            by_type.setdefault(key, []).append(value)
        per_question[row["index"]] = scores["total_score"]
    table = {key: sum(v) / len(v) for key, v in by_type.items()}
    return Scored([table], per_question)


# --------------------------------------------------------------------------------------------- fallbacks


def judge_option(judge: Judge, item: Mapping[str, Any], choices: Mapping[str, Any], benchmark: str) -> str:
    """``extract_answer_from_item`` after ``can_infer`` found nothing in the prediction: up to 3 tries of
    the matching prompt; then a random option or Z (seeded by benchmark and index)."""
    prompt = prompts.mc_match_prompt(item["question"], choices, item["prediction"])
    for attempt in range(3):
        reply = judge.generate(prompt, attempt=attempt)
        if "Failed to obtain answer via API" not in reply:
            found = _can_infer(reply, choices)
            if found:
                return found
    options = list(choices) + ["Z"] if "Z" not in choices else list(choices)
    return random.Random(f"{benchmark}/{item['index']}").choice(options)


def judge_yes_no(judge: Judge, question: Any, prediction: Any) -> str:
    """``YOrN_auxeval`` for a prediction extracted as Unknown: up to 5 tries at temperature 0.5·i."""
    prompt = prompts.yes_no_match_prompt(question, prediction)
    for i in range(5):
        answer = extract_yes_no(judge.generate(prompt, temperature=0.5 * i, attempt=i))
        if answer != UNKNOWN:
            return answer
    return UNKNOWN


# --------------------------------------------------------------------------------------------- MMDU

MMDU_DIMS = ("Creativity", "Richness", "Visual Perception", "Logical Coherence", "Answer Accuracy",
             "Image Relationship Understanding", "Overall Score")


def _python_value(node: ast.AST) -> Any:
    """What ``eval`` gives for a literal display whose numbers may be arithmetic (``8/10``); else ValueError."""
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("dict unpacking")
        return {_python_value(k): _python_value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_python_value(e) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Constant):
        return node.value
    return numeric_eval(ast.unparse(node))


def parse_mmdu_reply(reply: str) -> dict[str, Any]:
    """``mmdu_score``'s reading of a reply: from the first ``{`` to the last ``}``, ``eval``\\ ed (here:
    literals and arithmetic). Raises on a reply that does not read, or does not read as a dict."""
    start, end = reply.find("{"), reply.rfind("}") + 1
    try:
        value = _python_value(ast.parse(reply[start:end], mode="eval").body)
    except RecursionError as e:
        raise ValueError("too deeply nested") from e
    if not isinstance(value, dict):
        raise ValueError(f"not a dict: {type(value).__name__}")
    return value


def _mmdu_points(value: Any) -> int | None:
    """``calculat_metric``: ``int(value)`` clipped to 0..10; None where VLMEvalKit skips the value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        return min(max(int(value), 0), 10)
    except Exception:  # noqa: BLE001 - VLMEvalKit catches everything here ("Failed to parse the score")
        return None


def score_mmdu(data: pd.DataFrame, judge: Judge, benchmark: str = "MMDU"):
    """MMDUDataset.evaluate: ``mmdu_score`` judges every turn of every row, ``calculat_metric`` averages
    each dimension over all turns (``all``) and over the turns that gave it a score (``valid``), ×10."""
    from .score import Scored

    _need(data, ["index", "question", "answer", "prediction"], benchmark)
    total: dict[str, int] = defaultdict(int)
    points: dict[str, int] = defaultdict(int)
    valid: dict[str, int] = defaultdict(int)
    per_question: dict[Any, float] = {}
    for row in _rows(data):
        try:
            question, gt, prediction = (_literal(row[k]) for k in ("question", "answer", "prediction"))
            if not all(isinstance(v, (list, tuple)) for v in (question, gt, prediction)):
                raise ValueError("not a list")
        except (ValueError, SyntaxError) as e:
            raise DataError(f"{benchmark}: index {row['index']}: question, answer and prediction must be "
                            f"Python list literals, one item per turn ({e})") from e
        overall = 0
        for j in range(len(question)):
            try:
                prompt = prompts.mmdu_prompt(question[j], gt[j], prediction[j])
            except (IndexError, TypeError):  # VLMEvalKit: the turn's scores are all None
                scores: dict[str, Any] = {}
            else:
                try:
                    scores = parse_mmdu_reply(judge.generate(prompt))
                except (ValueError, SyntaxError):
                    scores = {}
            for dim in MMDU_DIMS:
                total[dim] += 1
                value = _mmdu_points(scores.get(dim))
                if value is not None:
                    points[dim] += value
                    valid[dim] += 1
            overall += _mmdu_points(scores.get("Overall Score")) or 0
        if question:
            per_question[row["index"]] = overall / len(question) * 10
    table = [{"set": "all", **{d: points[d] / total[d] * 10 if total[d] else math.nan for d in MMDU_DIMS}},
             {"set": "valid", **{d: points[d] / valid[d] * 10 if valid[d] else math.nan for d in MMDU_DIMS}}]
    return Scored(table, per_question)


JUDGED: dict[str, Callable[..., Any]] = {
    "MathVista_MINI": lambda data, judge, images: score_mathvista(data, judge),
    "MathVision": lambda data, judge, images: score_mathvision(data, judge),
    "MIA-Bench": score_miabench,
    "MMDU": lambda data, judge, images: score_mmdu(data, judge),
}
