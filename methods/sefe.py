"""``sefe``: SEFE's two parts on LoRA (reference/methods.md §4.6): ASD answer-style diversification
of a share of the training set, and RegLoRA's penalty on the key positions of earlier updates.

**ASD** (data side): ``asd_share`` (SEFE: X = 20 %) of the single-turn training samples, drawn
with the run's seed, are rewritten into another answer style, in turn yes/no (the true answer or
another sample's as the candidate, → "Yes"/"No"), multiple choice (the answer among 3 other samples'
answers, the canonical prompt of :func:`kore_bench.data.format_multiple_choice`, → the letter),
brief and detailed. The draws (which samples, which candidate, which options in which order) are
the templates' whichever writer ``augmenter`` picks:

* ``template``: offline text; brief adds the short-answer suffix, detailed answers "The answer is X.".
* ``llm``: SEFE's way, a language model with one prompt per style (:data:`PROMPTS`), the llm
  augmenter's chat endpoint ($KORE_BENCH_LLM_BASE_URL / $OPENAI_BASE_URL, $KORE_BENCH_LLM_MODEL,
  $KORE_BENCH_LLM_API_KEY / $OPENAI_API_KEY; an error naming them when unset). The model is given the
  question and the gold answer (and the drawn candidate and verdict, or the options and the letter)
  and replies ``{"question", "answer"}``; :func:`check_reply` keeps the gold: yes/no must give the
  verdict and quote the candidate, multiple choice the gold letter (the model only rephrases the
  question, the options are formatted here), brief/detailed answers must contain the gold answer
  word for word within a length limit, and no question or answer may add names or numbers the
  sample lacks (nor use a held-out phrasing of the suite's world). A reply that fails falls back to
  the template rewrite of that sample, counted and logged with the reason. Replies are cached on disk
  ($KORE_BENCH_CACHE/augment/sefe-asd, keyed by model, the filled prompt and the generation settings),
  so a rerun makes no calls.
* ``auto`` (default): ``llm`` when that endpoint is configured (kore's ``auto`` test, whose
  environment is part of the unit key), else ``template``.

The restyled samples carry ``meta["augmentation"]`` (requested, the writer that ran, why, a summary
with the per-style counts, model calls and fallbacks), so train_info and the leaderboard's footer
("sefe: training data augmented by template (chosen by auto)") say which writer ran. SEFE asks its
LLM for distractors (yes/no, MC) and explanations (brief, detailed) with per-task prompts; here the
distractors are other samples' answers and the model rephrases, which keeps every answer checkable.

**RegLoRA**: ``L = CE + w · (1/N) Σ_linears mean(|ΔW[K]|)`` with ΔW = s·B A the current update,
K the key positions and w = 2.5e3 (SEFE's constant; N = the number of adapted linears, 224 in
SEFE's 32×7). In SEFE, K is the top 2 % of |ΔW_t| of the *earlier tasks'* updates. A single
injection has no earlier update, so **K is the top 2 % of each base weight's old-knowledge
importance** ``|W_ij| · √C_jj`` (Wanda's score: the weight times its input's RMS on the old
calibration prompts, from the cached covariances KORE uses): the positions an update would most
disturb old outputs through. In sequential injection K becomes SEFE's own (the union over earlier
updates); the engine has no sequential injection yet.
"""
from __future__ import annotations

import dataclasses
import logging
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from kore_bench.cache import cache_root
from kore_bench.data import IMAGE_TOKEN, SHORT_ANSWER_SUFFIX, Sample, format_multiple_choice
from kore_bench.errors import KoreBenchError, UnknownNameError
from kore_bench.llm_client import CachedChat, ChatModel, OpenAIChat, ReplyCache, json_in_reply
from kore_bench.method import TrainContext, register_method
from kore_bench.models.parts import unwrap
from kore_bench.search import LogUniform

from .kore import old_covariances
from .lora import LoRA, LoraMethodConfig, linear_shapes, lora_updates

if TYPE_CHECKING:
    from kore_bench.augment.world import WorldFacts

log = logging.getLogger(__name__)

STYLES = ("yes/no", "multiple choice", "brief", "detailed")


@dataclass
class SefeConfig(LoraMethodConfig):
    asd_share: float = field(default=0.2, metadata={"help": "share of training samples ASD rewrites (SEFE: 20 %)"})
    key_share: float = field(default=0.02, metadata={"help": "share of each weight's entries that are key positions "
                                                             "(SEFE: top 2 %)"})
    reg_weight: float = field(default=2.5e3, metadata={"help": "RegLoRA weight w (SEFE: 2.5e3)"})
    calibration_samples: int = field(default=256, metadata={"help": "old-knowledge prompts for the importance"})
    augmenter: str = field(default="auto", metadata={"help": "ASD's writer: auto (llm if a chat endpoint is "
                                                             "configured, as kore's auto decides, else template), "
                                                             "llm, template"})

    def __post_init__(self):
        if self.augmenter not in ASD_WRITERS:
            raise UnknownNameError("sefe.augmenter", self.augmenter, ASD_WRITERS)


# ---------------------------------------------------------------- ASD

ASD_WRITERS = ("auto", "llm", "template")
ASD_CACHE = ("augment", "sefe-asd")  # under the kore-bench cache root
ASD_MAX_TOKENS = 512
_LETTERS = "ABCD"


def _single_turn(s: Sample) -> bool:
    return [m["role"] for m in s.messages] == ["user", "assistant"]


def _draw(style: str, answer: str, others: list[str], rng: random.Random) -> tuple[str, Any]:
    """The template's draw for ``style``: (the style that applies, the yes/no candidate or the MC options).

    Yes/no and multiple choice need other answers (1 and 3); without them the sample becomes brief.
    """
    wrong = [o for o in dict.fromkeys(others) if o.strip().lower() != answer.strip().lower()]
    if style == "yes/no" and wrong:
        return style, answer if rng.random() < 0.5 else rng.choice(wrong)
    if style == "multiple choice" and len(wrong) >= 3:
        options = rng.sample(wrong, 3) + [answer]
        rng.shuffle(options)
        return style, dict(zip(_LETTERS, options))
    return ("detailed", None) if style == "detailed" else ("brief", None)


def _gold(applied: str, answer: str, draw: Any) -> str:
    """The rewritten sample's answer where the style fixes it: Yes/No, the option letter."""
    if applied == "yes/no":
        return "Yes" if draw == answer else "No"
    if applied == "multiple choice":
        return next(letter for letter, option in draw.items() if option == answer)
    return answer


def _template_text(question: str, answer: str, applied: str, draw: Any) -> tuple[str, str]:
    if applied == "yes/no":
        return f'{question}\nIs the answer "{draw}"? Answer yes or no.', _gold(applied, answer, draw)
    if applied == "multiple choice":
        return format_multiple_choice(question, draw), _gold(applied, answer, draw)
    if applied == "detailed":
        return f"{question}\nAnswer in a complete sentence.", f"The answer is {answer}."
    return f"{question}\n{SHORT_ANSWER_SUFFIX}", answer


def _restyled(sample: Sample, style: str, question: str, answer: str, **meta: Any) -> Sample:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return dataclasses.replace(sample, id=f"{sample.id}#asd", messages=messages, answer=None,
                               meta={**sample.meta, "asd_style": style, **meta})


# ---- the llm writer: one prompt per style, the template's draw kept, every reply validated

PROMPTS = {
    "yes/no": """You rewrite one training sample of a visual question-answering set into a yes/no question.

Question about the image: $question
Correct answer: $answer

Write a natural yes/no question asking whether "$candidate" is the correct answer to that question. Quote "$candidate" word for word and end with an instruction to answer yes or no. Do not add names, dates or numbers that the question and the answer do not contain. The correct reply to your question is $verdict.

Reply with JSON only: {"question": "<your yes/no question>", "answer": "$verdict"}""",
    "multiple choice": """You rewrite the question of one multiple-choice training sample about an image.

Question: $question
Options:
$options
Correct option: $letter

Rephrase the question in other words with exactly the same meaning, so that option $letter stays the correct one. Write the question only: the options are added after it. Do not add names, dates or numbers that the question does not contain.

Reply with JSON only: {"question": "<the rephrased question>", "answer": "$letter"}""",
    "brief": """You rewrite one training sample of a visual question-answering set into the brief answer style.

Question about the image: $question
Correct answer: $answer

Rewrite the question so that it asks for a brief answer, and write that brief answer: a phrase or one short sentence of at most $limit words that contains "$answer" word for word. Use only what the question and the answer state: no other names, dates or numbers.

Reply with JSON only: {"question": "<the question>", "answer": "<the brief answer>"}""",
    "detailed": """You rewrite one training sample of a visual question-answering set into the detailed answer style.

Question about the image: $question
Correct answer: $answer

Rewrite the question so that it asks for a detailed answer, and write that answer: a few complete sentences (about 50 words, at most $limit) that contain "$answer" word for word and explain it. Use only what the question and the answer state: no other names, dates or numbers.

Reply with JSON only: {"question": "<the question>", "answer": "<the detailed answer>"}""",
}
_OPTION_LINE = re.compile(r"(?m)^\s*\(?[A-D][.)]\s")
_LETTER = re.compile(r"^\(?([A-Za-z])\)?(?:[.:)]|\s|$)")
_SENTENCE_START = re.compile(r"(^|[.?!:;]\s+|\n\s*)[^\W\d_][\w'-]*")


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _words(text: str) -> int:
    return len(text.split())


def _limit(applied: str, answer: str) -> int:
    """The most words a model's brief (detailed) answer may have."""
    return max(20, _words(answer) + 10) if applied == "brief" else max(80, 3 * _words(answer))


def _invented(text: str, known: str) -> list[str]:
    """Names and numbers of ``text`` that ``known`` lacks (a sentence's first word is not taken for a name)."""
    from kore_bench.augment.llm import ungrounded  # the llm augmenter's grounding check

    return ungrounded(_SENTENCE_START.sub(r"\1", text), known)


def _fill(applied: str, question: str, answer: str, draw: Any) -> str:
    values = {"question": question, "answer": answer, "limit": _limit(applied, answer)}
    if applied == "yes/no":
        values |= {"candidate": draw, "verdict": _gold(applied, answer, draw)}
    elif applied == "multiple choice":
        values |= {"options": "\n".join(f"{k}. {v}" for k, v in draw.items()), "letter": _gold(applied, answer, draw)}
    return string.Template(PROMPTS[applied]).safe_substitute(values)


def _parse(reply: str) -> dict | str:
    """The reply's JSON object (code fences and surrounding prose tolerated), or why there is none."""
    data = json_in_reply(reply, "{")
    if not isinstance(data, dict):
        return f"reply is not a JSON object: {reply[:80]!r}"
    return data


def check_reply(reply: str, applied: str, question: str, answer: str, draw: Any,
                world: WorldFacts | None = None) -> tuple[str, str] | str:
    """The (question, answer) a model's ``reply`` gives for a sample rewritten into ``applied``, or why
    it is rejected. ``question`` is the original question without the image token. Yes/no keeps the
    template's candidate and verdict, multiple choice the template's options and letter (the model only
    rephrases the question; the options are formatted here); brief and detailed answers must contain the
    gold answer word for word; no answer or question may add names or numbers the sample lacks."""
    data = _parse(reply)
    if isinstance(data, str):
        return data
    q, a = data.get("question"), data.get("answer")
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        a = str(a)
    if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
        return "question and answer must be non-empty strings"
    q, a = q.replace(IMAGE_TOKEN, "").strip(), a.replace(IMAGE_TOKEN, "").strip()
    gold = _gold(applied, answer, draw)
    context = [question, answer] + ([draw] if applied == "yes/no" else list(draw.values()) if draw else [])
    known = " ".join(context)
    held_out = world.held_out_phrasing(q) if world is not None else None
    if held_out:
        return f"question uses a held-out phrasing ({held_out})"
    if _invented(q, known):
        return f"question adds names or numbers: {', '.join(_invented(q, known))}"
    if applied == "yes/no":
        verdict = a.strip(" .!").capitalize()
        if verdict not in ("Yes", "No"):
            return f"answer {a[:40]!r} is not Yes or No"
        if verdict != gold:
            return f"answer {verdict} contradicts the gold {gold}"
        if _norm(draw) not in _norm(q):
            return f"question does not ask about the candidate {draw[:40]!r}"
        return q, gold
    if applied == "multiple choice":
        m = _LETTER.match(a)
        letter = m.group(1).upper() if m else None
        if letter not in draw:
            return f"answer {a[:40]!r} is not a letter among {', '.join(draw)}"
        if letter != gold:
            return f"answer {letter} contradicts the gold {gold}"
        if _OPTION_LINE.search(q):
            return "question lists options (ASD adds them)"
        return format_multiple_choice(q, draw), gold
    if _norm(answer) not in _norm(a):
        return f"answer does not contain the gold answer {answer[:40]!r}"
    if _words(a) > _limit(applied, answer):
        return f"answer has {_words(a)} words, more than {_limit(applied, answer)} for {applied}"
    if applied == "detailed" and _words(a) <= _words(answer):
        return "detailed answer is no longer than the gold answer"
    if _invented(a, known):
        return f"answer adds names or numbers: {', '.join(_invented(a, known))}"
    return q, a


@dataclass
class AsdReport:
    """Which writer restyled ASD's share (and who chose it), per style, and the model's fallbacks."""

    requested: str
    writer: str
    why: str
    model: str = ""
    eligible: int = 0
    styles: dict[str, int] = field(default_factory=dict)  # requested style -> samples
    written: int = 0  # samples the model wrote (llm)
    fallbacks: list[tuple[str, str]] = field(default_factory=list)  # (sample id, why the reply was rejected)
    calls: int = 0
    cache_hits: int = 0

    def __str__(self) -> str:
        n = sum(self.styles.values())
        text = (f"ASD restyled {n} of {self.eligible} single-turn samples ("
                + ", ".join(f"{k} {v}" for k, v in self.styles.items()) + f") by {self.writer}")
        if self.writer == "llm":
            text += (f" ({self.model}): {self.written} written by the model, {len(self.fallbacks)} fell back to "
                     f"the template (reply failed validation); {self.calls} model calls, {self.cache_hits} cache hits")
        return text

    def record(self) -> dict[str, Any]:
        """What the restyled samples carry as ``meta["augmentation"]`` (the trainer puts it in train_info)."""
        return {"requested": self.requested, "augmenter": self.writer, "why": self.why, "summary": str(self),
                "fallbacks": len(self.fallbacks),
                "scope": f"ASD restyled {sum(self.styles.values())} of {self.eligible} single-turn samples"}


def choose_writer(requested: str) -> tuple[str, str]:
    """(writer, why): ``auto`` is llm when a chat endpoint is configured (as kore's auto decides), else template."""
    if requested not in ASD_WRITERS:
        raise UnknownNameError("sefe.augmenter", requested, ASD_WRITERS)
    from kore_bench.augment.auto import choose  # kore's auto: llm exactly when an endpoint is configured

    chosen, why = choose(None)
    configured = chosen == "llm"
    if requested == "template":
        return "template", "requested"
    if requested == "llm" and not configured:
        raise KoreBenchError("sefe.augmenter=llm needs a chat endpoint: set $KORE_BENCH_LLM_BASE_URL (or "
                             "$OPENAI_BASE_URL) and $KORE_BENCH_LLM_MODEL ($KORE_BENCH_LLM_API_KEY or $OPENAI_API_KEY "
                             "for a key), or use sefe.augmenter=template")
    if configured:
        return "llm", "requested" if requested == "llm" else why
    return "template", ("no chat endpoint configured ($KORE_BENCH_LLM_BASE_URL and $KORE_BENCH_LLM_MODEL): "
                        "offline templates")


def endpoint_chat(cache_dir: Path | None = None) -> CachedChat:
    """The llm augmenter's chat endpoint (from the environment, same settings) behind ASD's reply cache."""
    from kore_bench.augment.llm import _setting

    url, model = _setting(None, "base_url"), _setting(None, "model")
    backend = OpenAIChat(url, model, _setting(None, "api_key"))
    return CachedChat(backend, ReplyCache(cache_dir or cache_root().joinpath(*ASD_CACHE)))


def llm_rewriter(chat: ChatModel, report: AsdReport, world: WorldFacts | None = None) -> Callable:
    """A ``rewrite`` for :func:`diversify_answers`: the model's sample, or the template's when its reply fails."""
    def rewrite(sample: Sample, style: str, applied: str, draw: Any, templated: Sample) -> Sample:
        question, answer = sample.messages[0]["content"], sample.messages[1]["content"]
        bare = question.replace(IMAGE_TOKEN, "").strip()
        reply = chat.complete(_fill(applied, bare, answer, draw), temperature=0.0, max_tokens=ASD_MAX_TOKENS)
        checked = check_reply(reply, applied, bare, answer, draw, world)
        if isinstance(checked, str):
            report.fallbacks.append((sample.id, checked))
            return dataclasses.replace(templated, meta={**templated.meta, "asd_writer": "template",
                                                        "asd_fallback": checked})
        report.written += 1
        q, a = checked
        return _restyled(sample, style, f"{IMAGE_TOKEN}\n{q}" if IMAGE_TOKEN in question else q, a,
                         asd_writer="llm", asd_model=chat.model_id)
    return rewrite


def asd(samples: list[Sample], share: float, seed: int, augmenter: str = "template",
        facts_dir: Path | None = None, cache_dir: Path | None = None) -> tuple[list[Sample], AsdReport]:
    """ASD with the writer ``augmenter`` (auto, llm, template) chooses: (training samples, report). The
    restyled samples carry ``meta["augmentation"]`` (the report's record), so train_info and the
    leaderboard say which writer ran and who chose it."""
    writer, why = choose_writer(augmenter)
    report = AsdReport(augmenter, writer, why, eligible=sum(_single_turn(s) for s in samples))
    rewrite = None
    if writer == "llm":
        chat = endpoint_chat(cache_dir)
        report.model = chat.model_id
        from kore_bench.augment.world import WorldFacts

        world = WorldFacts.load(Path(facts_dir)) if facts_dir is not None else None
        rewrite = llm_rewriter(chat, report, world)
    out = diversify_answers(samples, share, seed, rewrite)
    given = {id(s) for s in samples}
    restyled = [s for s in out if id(s) not in given]
    for s in restyled:
        report.styles[s.meta["asd_style"]] = report.styles.get(s.meta["asd_style"], 0) + 1
    if writer == "llm":
        report.calls, report.cache_hits = chat.calls, chat.cache_hits
    record = report.record()
    out = [s if id(s) in given else dataclasses.replace(s, meta={**s.meta, "augmentation": record}) for s in out]
    level = logging.WARNING if report.fallbacks else logging.INFO
    log.log(level, "%s%s", report, "".join(f"\n  fell back: {i}: {why}" for i, why in report.fallbacks[:20]))
    return out, report


def diversify_answers(samples: list[Sample], share: float, seed: int, rewrite: Callable | None = None
                      ) -> list[Sample]:
    """ASD: ``share`` of the single-turn samples rewritten in place into the four styles in turn, by the
    templates or by ``rewrite(sample, style, applied style, draw, template sample)``; the draws (which
    samples, which candidate/options) are the same either way."""
    if not 0 <= share <= 1:
        raise KoreBenchError(f"asd_share must be between 0 and 1, got {share}")
    rng = random.Random(f"asd-{seed}")
    eligible = [i for i, s in enumerate(samples) if _single_turn(s)]
    chosen = rng.sample(eligible, round(share * len(eligible)))
    answers = [samples[i].messages[1]["content"] for i in eligible]
    out = list(samples)
    for k, i in enumerate(sorted(chosen)):
        style = STYLES[k % len(STYLES)]
        question, answer = samples[i].messages[0]["content"], samples[i].messages[1]["content"]
        applied, draw = _draw(style, answer, answers, rng)
        templated = _restyled(samples[i], style, *_template_text(question, answer, applied, draw))
        out[i] = templated if rewrite is None else rewrite(samples[i], style, applied, draw, templated)
    return out


# ---------------------------------------------------------------- RegLoRA


def key_positions(model: nn.Module, covs, share: float) -> dict[str, torch.Tensor]:
    """Linear name → boolean mask of its top-``share`` entries by ``|W_ij|·√C_jj``."""
    if not 0 < share <= 1:
        raise KoreBenchError(f"key_share must be in (0, 1], got {share}")
    base = unwrap(model)
    masks = {}
    for name in linear_shapes(base):
        weight = base.get_submodule(name).weight.detach()
        score = weight.abs().float() * covs[name].diagonal().clamp_min(0).sqrt().float().to(weight.device)
        k = max(1, round(share * score.numel()))
        top = score.flatten().topk(k).indices
        mask = torch.zeros(score.numel(), dtype=torch.bool, device=weight.device)
        mask[top] = True
        masks[name] = mask.view_as(score)
    return masks


def reglora_penalty(model: nn.Module, keys: dict[str, torch.Tensor], weight: float) -> torch.Tensor:
    """``w · (1/N) Σ mean(|ΔW[K]|)`` over the N adapted linears."""
    updates = lora_updates(model)
    terms = [updates[name].abs()[mask].mean() for name, mask in keys.items()]
    return weight * torch.stack(terms).mean()


@register_method("sefe")
class SEFE(LoRA):
    """LoRA + RegLoRA on the old-knowledge key positions, trained on ASD-diversified data."""

    Config = SefeConfig
    search_space: ClassVar[dict] = {"lr": LogUniform(3e-4, 1e-2), "reg_weight": LogUniform(250.0, 2.5e4)}

    def penalty(self, base: nn.Module, processor, ctx: TrainContext) -> Callable:
        cfg = self.config
        keys = key_positions(base, old_covariances(base, processor, ctx, cfg.calibration_samples), cfg.key_share)
        return lambda m, batch, out: reglora_penalty(m, keys, cfg.reg_weight)

    def training_samples(self, ctx: TrainContext) -> list[Sample]:
        return asd(list(ctx.new_data), self.config.asd_share, ctx.seed, self.config.augmenter, ctx.facts_dir)[0]
