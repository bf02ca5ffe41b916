"""Scoring: per-sample metrics, answer extraction, aggregates and the paired significance test.

Scales. Every per-sample metric returns a value in [0, 1]. Aggregates (:func:`knowledge_adaptation`,
:func:`knowledge_retention`, :func:`overall`) are plain means and take and return **percentages**
(0–100), the unit of every report and of the KORE paper's tables; :func:`percent` turns a list of
per-sample scores into one.

CEM follows EVOKE's ``VQAEval().evaluate(pred, [gold])`` (``reference/kore.md`` §4.1) exactly,
quirks included, so numbers are comparable with the paper:

* Punctuation: whether a mark is deleted or replaced by a space is decided once per mark on the
  string as it entered the step, not on the partly cleaned one.
* The period regex of the original passes ``re.UNICODE`` (== 32) as the ``count`` argument of
  ``re.sub``, so at most 32 periods are removed; the rest survive.
* The original period pattern ``(?!<=\\d)(\\.)(?!\\d)`` has a lookahead where a lookbehind was meant;
  the lookahead can never fire before a ``.``, so it is the same as ``\\.(?!\\d)`` used here.
* Gold answers wrapped in single quotes keep their quotes, and ``\\b'...'\\b`` needs word characters
  right outside the quotes, so such items practically always score 0.
* An empty gold compiles to ``\\b\\b`` and matches every prediction that still contains a word
  character after normalisation (not an empty one).
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import UnknownNameError

# ---------------------------------------------------------------------------------------------
# VQA normalisation (EVOKE's CEM)

_VQA_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
              "`", ",", "?", "!"]
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_MAX_SUBS = int(re.UNICODE)  # the original's count quirk: 32
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                 "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
# The standard VQA contractions table, keyed by lowercase words (the text is lowercased first).
# Left out because they can never change a word: the capitalised keys "Id've", "I'dve", "Im",
# "Ive" (unreachable after lowercasing) and the identities "let's" and "she's". The reversed entry
# "somebody'd" -> "somebodyd" is in the original and kept.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}


def vqa_punctuation(text: str, period: re.Pattern = _PERIOD) -> str:
    r"""VQA ``processPunctuation``: delete or space out marks, then strip (up to 32) periods matched
    by ``period`` (the VQA original: ``\.(?!\d)``; VLMEvalKit's copy adds a real lookbehind)."""
    digits_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
    out = text
    for p in _VQA_PUNCT:
        if p + " " in text or " " + p in text or digits_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return period.sub("", out, count=_PERIOD_MAX_SUBS)


def _vqa_words(text: str) -> str:
    """VQA ``processDigitArticle``: lowercase, number words to digits, drop articles, contractions."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def vqa_normalize(text: str) -> str:
    """The full VQA answer normalisation EVOKE applies to prediction and gold alike."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _vqa_words(vqa_punctuation(text))


def cem(prediction: str, gold: str) -> float:
    """EVOKE Cover Exact Match: 1.0 if the normalised gold is a whole-word span of the prediction."""
    pattern = r"\b" + re.escape(vqa_normalize(gold)) + r"\b"
    return 1.0 if re.search(pattern, vqa_normalize(prediction)) else 0.0


def exact_match(prediction: str, gold: str) -> float:
    """1.0 if prediction and gold are equal after VQA normalisation (short-answer tasks)."""
    return 1.0 if vqa_normalize(prediction) == vqa_normalize(gold) else 0.0


def strict_match(prediction: str, gold: str) -> float:
    """Case-sensitive equality after stripping whitespace and one trailing period (format checks)."""

    def clean(s: str) -> str:
        s = s.strip()
        return s[:-1].rstrip() if s.endswith(".") else s

    return 1.0 if clean(prediction) == clean(gold) else 0.0


# ---------------------------------------------------------------------------------------------
# SQuAD token F1

_SQUAD_PUNCT = set(string.punctuation)
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalize(text: str) -> str:
    """SQuAD answer normalisation: lowercase, drop punctuation, drop articles, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _SQUAD_PUNCT)
    return " ".join(_SQUAD_ARTICLES.sub(" ", text).split())


def f1(prediction: str, gold: str) -> float:
    """SQuAD token-level F1 between prediction and gold."""
    pred_toks = squad_normalize(prediction).split()
    gold_toks = squad_normalize(gold).split()
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    common = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_toks), common / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------------------------
# Multiple choice and yes/no extraction

_EXPLICIT_LETTER = re.compile(r"(?i:answer|option|choice)\s*(?i:is)?\s*[:=]?\s*\(?([A-Z])\b")
_ONLY_LETTER = re.compile(r"\(?([A-Z])\)?[.:)]?")
_LEADING_LETTER = re.compile(r"(?:\(([A-Z])\)|([A-Z])[.:)])(?:\s|$)")
_TOKEN_PUNCT = str.maketrans({c: " " for c in ".,:;!?()[]{}*#'\"`"})


def _match_groups(m: re.Match[str] | None) -> tuple[str | None, ...]:
    return m.groups() if m else ()


# Words that follow an option letter ("A or B", "A is correct") but never the article "A" / "I".
_AFTER_LETTER_ONLY = {"and", "or", "is", "was", "seems", "because"}


def _isolated_letters(text: str, letters: set[str]) -> set[str]:
    """Option letters standing alone as words; "A"/"I" before a lowercase word read as English."""
    tokens = text.translate(_TOKEN_PUNCT).split()
    found = set()
    for i, tok in enumerate(tokens):
        if tok not in letters:
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in {"A", "I"} and nxt[:1].islower() and nxt not in _AFTER_LETTER_ONLY:
            continue
        found.add(tok)
    return found


def _option_texts(text: str, choices: Mapping[str, str]) -> set[str]:
    """Options whose text occurs in ``text`` as a whole-word span, dropping ones inside another hit."""
    low = " ".join(text.lower().split())
    hits = {}
    for letter, option in choices.items():
        opt = " ".join(str(option).lower().split())
        if opt and re.search(r"(?<!\w)" + re.escape(opt) + r"(?!\w)", low):
            hits[letter] = opt
    return {k for k, v in hits.items() if not any(v != w and v in w for w in hits.values())}


def extract_choice(prediction: str, choices: Mapping[str, str]) -> str | None:
    """The option letter a generated answer picks, VLMEvalKit style; None if none or ambiguous.

    Rules in order; the first that finds any valid letter decides (more than one: None):
    the whole answer is a letter ("B", "(B)", "B."); an explicit phrase ("Answer: B", "the answer
    is (B)", "option B"); a leading letter ("B. cat", "(B) cat", "B) cat"); option letters standing
    alone as words; the text of an option (one whose text lies inside another matched option's
    text does not count, so "dark red" picks "dark red" over "red").
    """
    text = prediction.strip()
    letters = set(choices)
    rules: list[Callable[[], set[str]]] = [
        lambda: set(_match_groups(_ONLY_LETTER.fullmatch(text))),
        lambda: set(_EXPLICIT_LETTER.findall(text)),
        lambda: set(_match_groups(_LEADING_LETTER.match(text))),
        lambda: _isolated_letters(text, letters),
        lambda: _option_texts(text, choices),
    ]
    for rule in rules:
        found = rule() & letters
        if found:
            return found.pop() if len(found) == 1 else None
    return None


def choice_accuracy(prediction: str, gold_letter: str, choices: Mapping[str, str]) -> float:
    """1.0 if the extracted option letter equals the gold letter."""
    return 1.0 if extract_choice(prediction, choices) == gold_letter.strip().upper() else 0.0


_WORDS = re.compile(r"[a-z]+")


def extract_yes_no(prediction: str) -> str | None:
    """"yes" or "no" from a generated answer; None if it says neither or both.

    A leading yes/no decides ("No, there is not ..."); otherwise the answer must contain only
    "yes" or only "no"/"not" words.
    """
    words = _WORDS.findall(prediction.lower())
    if words and words[0] in {"yes", "no"}:
        return words[0]
    has_yes = "yes" in words
    has_no = "no" in words or "not" in words
    if has_yes != has_no:
        return "yes" if has_yes else "no"
    return None


def yes_no_accuracy(prediction: str, gold: str) -> float:
    """1.0 if the extracted yes/no equals the gold ("Yes"/"no"/... compared case-insensitively)."""
    return 1.0 if extract_yes_no(prediction) == gold.strip().lower() else 0.0


def pope_f1(preds: Sequence[str], golds: Sequence[str]) -> float:
    """POPE F1 in [0, 1] with "yes" as the positive class; an answer without yes/no counts as "no"."""
    if len(preds) != len(golds):
        raise ValueError(f"pope_f1: {len(preds)} predictions but {len(golds)} gold answers")
    pred_pos = [extract_yes_no(p) == "yes" for p in preds]
    gold_pos = [g.strip().lower() == "yes" for g in golds]
    tp = sum(p and g for p, g in zip(pred_pos, gold_pos))
    if tp == 0:
        return 0.0
    precision, recall = tp / sum(pred_pos), tp / sum(gold_pos)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------------------------
# Registry

MetricProtocol = Literal["generation_em", "generation_f1", "mc_letter", "yes_no"]
Aggregation = Literal["mean", "corpus"]


@dataclass(frozen=True)
class Metric:
    """A registered metric, in [0, 1], with how it aggregates and which way is better.

    ``fn(prediction, gold, choices)`` scores one sample (aggregation ``mean``: the task score is
    the mean, per-sample scores are stored and paired by ``compare``); ``corpus(predictions,
    samples)`` scores a whole task at once (aggregation ``corpus``: POPE F1, MME's paired
    accuracy; no per-sample scores). ``protocol`` says what kind of answer it reads.
    """

    name: str
    fn: Callable[[str, str, Mapping[str, str] | None], float] | None
    higher_is_better: bool
    protocol: MetricProtocol
    corpus: Callable[[Sequence[str], Sequence[Any]], float] | None = None

    @property
    def aggregation(self) -> Aggregation:
        return "mean" if self.corpus is None else "corpus"


def _choice_metric(prediction: str, gold: str, choices: Mapping[str, str] | None) -> float:
    if not choices:
        raise ValueError("choice_accuracy needs the sample's choices")
    return choice_accuracy(prediction, gold, choices)


def mme_accuracy_plus(preds: Sequence[str], samples: Sequence[Any]) -> float:
    """MME's acc+: the share of images whose questions (two per image in MME) are all answered
    right (yes/no); questions are grouped by ``meta["group"]``, else by their image."""
    groups: dict[str, list[float]] = {}
    for p, s in zip(preds, samples, strict=True):
        key = s.meta.get("group") or (s.image.key if s.image is not None else s.id)
        groups.setdefault(str(key), []).append(yes_no_accuracy(p, s.answer or ""))
    return sum(all(v == 1.0 for v in g) for g in groups.values()) / len(groups) if groups else float("nan")


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("cem", lambda p, g, c: cem(p, g), True, "generation_em"),
        Metric("f1", lambda p, g, c: f1(p, g), True, "generation_f1"),
        Metric("exact_match", lambda p, g, c: exact_match(p, g), True, "generation_em"),
        Metric("strict_match", lambda p, g, c: strict_match(p, g), True, "generation_em"),
        Metric("choice_accuracy", _choice_metric, True, "mc_letter"),
        Metric("yes_no_accuracy", lambda p, g, c: yes_no_accuracy(p, g), True, "yes_no"),
        Metric("pope_f1", None, True, "yes_no", corpus=lambda ps, ss: pope_f1(ps, [s.answer or "" for s in ss])),
        Metric("mme_acc_plus", None, True, "yes_no", corpus=mme_accuracy_plus),
    ]
}


def get_metric(name: str) -> Metric:
    """The registered metric called ``name``; UnknownNameError (with a suggestion) otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise UnknownNameError("metric", name, METRICS) from None


@dataclass
class TaskScores:
    """One task's scores: per metric the task score (×100) and, for ``mean`` metrics, the per-sample ones."""

    means: dict[str, float]
    per_sample: dict[str, list[float]]


def score_task(samples: Sequence[Any], predictions: Sequence[str], metrics: Sequence[str]) -> TaskScores:
    """Score predictions against the samples' gold answers with the named metrics (text only)."""
    means, per_sample = {}, {}
    for name in metrics:
        metric = get_metric(name)
        if metric.corpus is not None:
            means[name] = 100.0 * metric.corpus(predictions, samples)
            continue
        values = [metric.fn(p, s.answer or "", s.choices) for s, p in zip(samples, predictions, strict=True)]
        per_sample[name] = values
        means[name] = 100.0 * sum(values) / len(values) if values else float("nan")
    return TaskScores(means, per_sample)


# ---------------------------------------------------------------------------------------------
# Aggregates (percentages)


def percent(scores: Sequence[float]) -> float:
    """Mean of per-sample scores in [0, 1], as a percentage."""
    if len(scores) == 0:
        raise ValueError("percent: no scores")
    return 100.0 * float(np.mean(scores))


def knowledge_adaptation(cem_score: float, f1_score: float) -> float:
    """K.A = (CEM + F1) / 2, both in percent."""
    return (cem_score + f1_score) / 2


def knowledge_retention(category_scores: Mapping[str, float]) -> float:
    """K.R = plain mean of the retention category scores (percent)."""
    if not category_scores:
        raise ValueError("knowledge_retention: no category scores")
    return float(np.mean(list(category_scores.values())))


def overall(ka: float, kr: float) -> float:
    """Avg = (K.A + K.R) / 2, as in the KORE paper's Table 1."""
    return (ka + kr) / 2


ADAPTATION_METRICS = ("cem", "f1")  # K.A's parts, EVOKE's metrics, on the new-knowledge suite
HEADLINE = ("CEM", "F1", "K.A", "K.R", "Avg")


def headline(adaptation: Mapping[str, float], categories: Mapping[str, float]) -> dict[str, float]:
    """CEM, F1, K.A, K.R and Avg (percent) from the new-knowledge metric means and the retention
    category scores — the one implementation reports, tune and frontier use. A missing part is NaN."""
    nan = float("nan")
    cem_score, f1_score = (adaptation.get(m, nan) for m in ADAPTATION_METRICS)
    ka = knowledge_adaptation(cem_score, f1_score)
    kr = knowledge_retention(categories) if categories else nan
    return {"CEM": cem_score, "F1": f1_score, "K.A": ka, "K.R": kr, "Avg": overall(ka, kr)}


def check_retention_metric(name: str, higher_is_better: bool, where: str) -> None:
    """K.R averages retention scores as they are: a lower-is-better one would count a loss as a gain."""
    if not higher_is_better:
        from ..errors import KoreBenchError

        raise KoreBenchError(f"{where}: primary metric {name!r} is lower-is-better; K.R averages retention scores "
                             "as higher-is-better, so it cannot be a retention task's primary metric")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value), e.g. over seeds."""
    if len(values) == 0:
        raise ValueError("mean_std: no values")
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else 0.0)


_EXACT_MAX_N = 16  # enumerate all 2**n sign flips up to this many non-zero differences


def _chunks(total: int, width: int) -> list[int]:
    """Row counts that split ``total`` resamples into blocks of about 4M matrix entries."""
    rows = max(1, 4_000_000 // width)
    return [min(rows, total - i) for i in range(0, total, rows)]


def paired_test(a: Sequence[float], b: Sequence[float], *, n_resamples: int = 10_000,
                confidence: float = 0.95, seed: int = 0) -> dict[str, float | int | str]:
    """Paired comparison of per-sample scores ``a`` against ``b`` (same samples, same order).

    Returns ``n``, ``mean_a``, ``mean_b``, ``mean_diff`` (a - b), a paired percentile bootstrap
    confidence interval of the mean difference (``ci_low``, ``ci_high``, resampling samples
    with a fixed seed) and the two-sided sign-flip permutation ``p_value`` of the mean difference:
    exact over all sign patterns when at most 16 differences are non-zero (``p_method`` "exact"),
    else from ``n_resamples`` random flips with the +1 correction ("monte_carlo").
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"paired_test needs two equally long non-empty sequences, got {x.shape}, {y.shape}")
    d = x - y
    n = len(d)
    rng = np.random.default_rng(seed)

    boot = np.concatenate([d[rng.integers(0, n, size=(rows, n))].mean(axis=1)
                           for rows in _chunks(n_resamples, n)])
    alpha = (1 - confidence) / 2
    ci_low, ci_high = np.quantile(boot, [alpha, 1 - alpha])

    nz = d[d != 0]
    observed = abs(nz.sum())
    tol = 1e-9 * max(1.0, observed)
    if len(nz) == 0:
        p_value, method = 1.0, "exact"
    elif len(nz) <= _EXACT_MAX_N:
        signs = 1 - 2 * ((np.arange(2 ** len(nz))[:, None] >> np.arange(len(nz))) & 1)
        p_value, method = float(np.mean(np.abs(signs @ nz) >= observed - tol)), "exact"
    else:
        hits = sum(int(np.sum(np.abs(rng.choice([-1.0, 1.0], size=(rows, len(nz))) @ nz) >= observed - tol))
                   for rows in _chunks(n_resamples, len(nz)))
        p_value, method = (hits + 1) / (n_resamples + 1), "monte_carlo"
    return {"n": n, "mean_a": float(x.mean()), "mean_b": float(y.mean()), "mean_diff": float(d.mean()),
            "ci_low": float(ci_low), "ci_high": float(ci_high), "p_value": float(p_value),
            "p_method": method}


def chance_level(output_type: str, golds: Sequence[str], choices: Sequence[Mapping[str, str] | None] = ()) -> float:
    """What a model that ignores the input scores on a task, as a fraction.

    Multiple choice: the mean of 1/options over items; yes/no: the majority class's share (0.5 when
    balanced); generation: the share of the best constant answer (the most frequent normalised gold).
    """
    if not golds:
        raise ValueError("chance_level needs the task's items")
    if output_type == "multiple_choice":
        if len(choices) != len(golds) or any(not c for c in choices):
            raise ValueError("chance_level of a multiple-choice task needs every item's choices")
        return sum(1 / len(c) for c in choices if c) / len(golds)
    norm = (lambda g: g.strip().lower()) if output_type == "yes_no" else vqa_normalize
    counts: dict[str, int] = {}
    for g in golds:
        counts[norm(g)] = counts.get(norm(g), 0) + 1
    best = max(counts.values()) / len(golds)
    return max(best, 0.5) if output_type == "yes_no" else best


def within_chance(score: float, n: int, chance: float, *, seed: int = 0, level: float = 0.95,
                  n_resamples: int = 10_000) -> bool:
    """Whether ``score`` (a fraction over ``n`` items) lies inside the seeded binomial interval of a
    chance-level scorer: ``n_resamples`` draws of Binomial(n, chance)/n, central ``level`` share.
    True means the task cannot show retention here ("retention not measurable here")."""
    if n <= 0:
        raise ValueError("within_chance needs at least one item")
    draws = np.random.default_rng(seed).binomial(n, chance, n_resamples) / n
    hi = float(np.quantile(draws, 1 - (1 - level) / 2))
    return bool(score <= hi)  # at or below the interval's top: not distinguishable from (or worse than) chance
