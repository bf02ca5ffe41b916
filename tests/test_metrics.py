"""Metrics on hand-computed cases: EVOKE CEM (with its quirks), SQuAD F1, extraction, aggregates."""
from __future__ import annotations

import math

import pytest

from kore_bench.errors import UnknownNameError
from kore_bench.evaluate.metrics import (
    METRICS,
    cem,
    choice_accuracy,
    exact_match,
    extract_choice,
    extract_yes_no,
    f1,
    get_metric,
    knowledge_adaptation,
    knowledge_retention,
    mean_std,
    overall,
    paired_test,
    percent,
    pope_f1,
    strict_match,
    vqa_normalize,
    yes_no_accuracy,
)


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("John barrett", "John Hopfield", 0.0),  # the paper's qualitative example
        ("Two dogs", "2", 1.0),  # number words -> digits, gold covered by a whole word
        ("PARIS", "paris", 1.0),
        ("New\nYork\tcity", "new york", 1.0),
        ("Teslas", "Tesla", 0.0),  # whole-word span only
        ("Tesla Motors", "Tesla", 1.0),
        ("the Eiffel Tower", "An Eiffel tower", 1.0),  # articles dropped on both sides
        ("It is St. Louis!", "st louis", 1.0),  # "!" spaced out, period not before a digit removed
        ("3.5 million", "3.5", 1.0),  # period before a digit kept
        ("I dont know", "don't know", 1.0),  # contractions table
        ("don't", "dont", 1.0),
        ("1,000 people", "1000", 1.0),  # \d,\d in the string: marks deleted, not spaced
        ("cat-dog", "cat dog", 1.0),  # no " -"/"- ": spaced out
        ("x - y-z", "yz", 1.0),  # " -" occurs: every "-" deleted, joining y and z
        ("x - y-z", "y z", 0.0),
    ],
)
def test_cem_cases(pred: str, gold: str, expected: float) -> None:
    assert cem(pred, gold) == expected


def test_cem_punctuation_rule_looks_at_the_string_before_any_replacement() -> None:
    # ";" is spaced out first, which creates " -"; the rule for "-" still sees the original
    # "x;-y z-w" (no space next to "-"), so "-" is spaced out too and "z-w" becomes "z w".
    assert vqa_normalize("x;-y z-w") == "x y z w"
    assert cem("x;-y z-w", "z w") == 1.0
    assert cem("x;-y z-w", "zw") == 0.0


def test_cem_period_rule_stops_after_32_substitutions() -> None:
    # re.UNICODE (32) passed as count: the 33rd period survives.
    assert vqa_normalize("." * 40) == "." * 8
    assert cem("." * 31 + " a.b", "ab") == 1.0
    assert cem("." * 32 + " a.b", "ab") == 0.0


def test_cem_quoted_gold_quirk() -> None:
    gold = "'ten foot tall'"
    assert vqa_normalize(gold) == "'ten foot tall'"  # apostrophes are not punctuation here
    assert cem("ten foot tall", gold) == 0.0
    assert cem("'ten foot tall'", gold) == 0.0  # \b needs a word character outside the quote
    assert cem("x'ten foot tall'y", gold) == 1.0
    assert f1("ten foot tall", gold) == 1.0  # F1 is unaffected


def test_cem_empty_gold_matches_any_prediction_with_a_word() -> None:
    assert cem("anything at all", "") == 1.0
    assert cem("", "") == 0.0  # r"\b\b" needs a word boundary


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("John barrett", "John Hopfield", 0.5),
        ("the cat sat", "a cat sat down", 0.8),  # P=1, R=2/3
        ("cat cat cat", "cat dog", 0.4),  # common counts min(3,1)=1: P=1/3, R=1/2
        ("U.S.A.", "usa", 1.0),
        ("", "", 1.0),
        ("The", "a", 1.0),  # both empty after normalisation
        ("", "paris", 0.0),
        ("london", "paris", 0.0),
    ],
)
def test_f1_cases(pred: str, gold: str, expected: float) -> None:
    assert f1(pred, gold) == pytest.approx(expected)


def test_exact_and_strict_match() -> None:
    assert exact_match("Two.", "2") == 1.0
    assert exact_match("The Cat", "cat") == 1.0
    assert exact_match("2 dogs", "2") == 0.0
    assert strict_match("  Paris. ", "Paris") == 1.0
    assert strict_match("paris", "Paris") == 0.0  # case-sensitive
    assert strict_match("Paris..", "Paris") == 0.0  # one trailing period only
    assert strict_match("A, B", "A,B") == 0.0


CHOICES = {"A": "red", "B": "dark red", "C": "blue", "D": "green"}


@pytest.mark.parametrize(
    "pred, expected",
    [
        ("B", "B"),
        (" (C) ", "C"),
        ("D.", "D"),
        ("Answer: B", "B"),
        ("The answer is (C).", "C"),
        ("the correct option is D", "D"),
        ("B. dark red", "B"),
        ("(A) red", "A"),
        ("I think C", "C"),  # "I" before a lowercase word is the pronoun
        ("A dog is blue", "C"),  # "A" before a lowercase word is the article; option text decides
        ("A is correct", "A"),
        ("A or B", None),  # two isolated letters
        ("dark red", "B"),  # "red" lies inside the matched "dark red"
        ("It is red.", "A"),
        ("red or blue", None),
        ("E", None),  # not an option
        ("purple", None),
    ],
)
def test_extract_choice(pred: str, expected: str | None) -> None:
    assert extract_choice(pred, CHOICES) == expected


def test_choice_accuracy() -> None:
    assert choice_accuracy("The answer is B.", "B", CHOICES) == 1.0
    assert choice_accuracy("blue", " c ", CHOICES) == 1.0
    assert choice_accuracy("C", "B", CHOICES) == 0.0
    assert choice_accuracy("no idea", "B", CHOICES) == 0.0


@pytest.mark.parametrize(
    "pred, expected",
    [
        ("Yes, there is a dog.", "yes"),
        ("No.", "no"),
        ("No, it is not yes", "no"),  # the leading word decides
        ("There is no dog in the image.", "no"),
        ("The dog is not there", "no"),
        ("There is a dog.", None),
        ("I am not sure, yes", None),
    ],
)
def test_extract_yes_no(pred: str, expected: str | None) -> None:
    assert extract_yes_no(pred) == expected


def test_yes_no_accuracy_and_pope_f1() -> None:
    assert yes_no_accuracy("Yes", " YES ") == 1.0
    assert yes_no_accuracy("maybe", "no") == 0.0
    # pred positive [T, T, F, F(unknown)], gold positive [T, F, T, T]: TP=1, P=1/2, R=1/3
    assert pope_f1(["yes", "Yes.", "no", "maybe"], ["yes", "no", "yes", "yes"]) == pytest.approx(0.4)
    assert pope_f1(["no", "no"], ["yes", "yes"]) == 0.0
    assert pope_f1(["yes", "no"], ["yes", "no"]) == 1.0
    with pytest.raises(ValueError):
        pope_f1(["yes"], ["yes", "no"])


def test_registry() -> None:
    assert set(METRICS) == {"cem", "f1", "exact_match", "strict_match", "choice_accuracy", "yes_no_accuracy",
                            "pope_f1", "mme_acc_plus"}
    assert {n for n, m in METRICS.items() if m.aggregation == "corpus"} == {"pope_f1", "mme_acc_plus"}
    assert {m.protocol for m in METRICS.values()} == {"generation_em", "generation_f1", "mc_letter", "yes_no"}
    assert all(m.higher_is_better for m in METRICS.values())
    assert get_metric("cem").fn("Two dogs", "2", None) == 1.0
    assert get_metric("f1").fn("John barrett", "John Hopfield", None) == 0.5
    assert get_metric("choice_accuracy").fn("B.", "B", CHOICES) == 1.0
    assert get_metric("yes_no_accuracy").fn("No", "no", None) == 1.0
    assert get_metric("f1").protocol == "generation_f1"
    with pytest.raises(ValueError, match="choices"):
        get_metric("choice_accuracy").fn("B", "B", None)
    with pytest.raises(UnknownNameError, match="did you mean 'cem'"):
        get_metric("cme")


def test_aggregates_reproduce_kore_table1() -> None:
    # KORE (r=235) row of the paper's Table 1: Avg 37.09.
    ka = knowledge_adaptation(30.65, 41.26)
    kr = knowledge_retention({"COM": 52.41, "OCR": 40.98, "M-DIS": 48.68, "INS": 38.54,
                              "M-IDU": 16.58, "MAT": 18.59, "HAL": 51.75})
    assert ka == pytest.approx(35.955)
    assert overall(ka, kr) == pytest.approx(37.09, abs=0.005)
    assert percent([1.0, 0.0, 1.0, 0.0]) == 50.0
    with pytest.raises(ValueError):
        knowledge_retention({})


def test_mean_std() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample std (ddof=1)
    assert mean_std([5.0]) == (5.0, 0.0)


def test_paired_test_identical_runs() -> None:
    r = paired_test([1, 0, 1, 1, 0], [1, 0, 1, 1, 0])
    assert r["mean_diff"] == 0.0 and r["p_value"] == 1.0
    assert (r["ci_low"], r["ci_high"]) == (0.0, 0.0)


def test_paired_test_exact_sign_flip_p_values() -> None:
    # 10 wins of +1: only the all-plus and all-minus patterns are as extreme -> 2 / 2**10.
    r = paired_test([1.0] * 10, [0.0] * 10)
    assert r["p_method"] == "exact" and r["p_value"] == pytest.approx(2 / 1024)
    # d = (1, 1, 1, -1): |sum of flipped signs| >= 2 in 10 of 16 patterns; zero diffs don't count.
    r = paired_test([1, 1, 1, 0, 0.5], [0, 0, 0, 1, 0.5])
    assert r["p_value"] == pytest.approx(10 / 16)
    assert r["mean_diff"] == pytest.approx(2 / 5)


def test_paired_test_monte_carlo_matches_exact_binomial() -> None:
    # 17 non-zero diffs (13 up, 4 down): exact two-sided p = 2 * sum_{k>=13} C(17,k) / 2**17.
    r = paired_test([1.0] * 13 + [0.0] * 4, [0.0] * 13 + [1.0] * 4)
    assert r["p_method"] == "monte_carlo"
    assert r["p_value"] == pytest.approx(2 * 3214 / 2**17, abs=0.01)
    better = paired_test([1.0] * 40, [0.0] * 40)
    assert better["p_value"] < 0.001
    balanced = paired_test([1.0, 0.0] * 20, [0.0, 1.0] * 20)
    assert balanced["p_value"] == 1.0


def test_paired_test_bootstrap_ci_is_seeded_and_sensible() -> None:
    a, b = [1.0, 0.0] * 50, [0.0] * 100  # mean diff 0.5, standard error 0.05
    r1, r2 = paired_test(a, b, seed=3), paired_test(a, b, seed=3)
    assert r1 == r2
    assert r1["ci_low"] == pytest.approx(0.5 - 1.96 * 0.05, abs=0.02)
    assert r1["ci_high"] == pytest.approx(0.5 + 1.96 * 0.05, abs=0.02)
    with pytest.raises(ValueError):
        paired_test([1.0], [1.0, 0.0])


def test_corpus_metrics_score_the_whole_task() -> None:
    from kore_bench.data import Sample
    from kore_bench.evaluate.metrics import score_task

    def q(i: int, gold: str, group: str) -> Sample:
        return Sample(f"q{i}", [{"role": "user", "content": "?"}], answer=gold, meta={"group": group})

    samples = [q(0, "yes", "img1"), q(1, "no", "img1"), q(2, "yes", "img2"), q(3, "no", "img2")]
    preds = ["Yes", "No", "yes", "yes"]  # img1 both right, img2 one wrong
    scores = score_task(samples, preds, ["yes_no_accuracy", "pope_f1", "mme_acc_plus"])
    assert scores.means["yes_no_accuracy"] == pytest.approx(75.0)
    assert scores.means["mme_acc_plus"] == pytest.approx(50.0)
    # TP=2, predicted positive 3, gold positive 2: P=2/3, R=1 -> F1 0.8
    assert scores.means["pope_f1"] == pytest.approx(80.0)
    assert set(scores.per_sample) == {"yes_no_accuracy"}  # corpus metrics have no per-sample scores


def test_headline_is_the_one_aggregate() -> None:
    from kore_bench.evaluate.metrics import headline

    h = headline({"cem": 40.0, "f1": 60.0}, {"ocr": 80.0, "counting": 60.0})
    assert h == {"CEM": 40.0, "F1": 60.0, "K.A": 50.0, "K.R": 70.0, "Avg": 60.0}
    assert math.isnan(headline({"cem": 40.0}, {})["K.R"])


def test_lower_is_better_retention_metric_is_refused_before_averaging() -> None:
    import pandas as pd

    from kore_bench.errors import KoreBenchError
    from kore_bench.report import per_seed

    rows = [dict(method="m", seed=0, suite="s", role="retention", task="t", category="c", metric="err",
                 primary=True, value=10.0, higher_is_better=False, n=4, split="test", limited=False)]
    with pytest.raises(KoreBenchError, match="lower-is-better"):
        per_seed(pd.DataFrame(rows))


def test_chance_level_per_output_type_and_the_seeded_interval() -> None:
    from kore_bench.evaluate.metrics import chance_level, within_chance

    assert chance_level("multiple_choice", ["A", "B"], [{"A": "x", "B": "y"}, {"A": "x", "B": "y", "C": "z", "D": "w"}]) \
        == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert chance_level("yes_no", ["yes", "no", "yes", "no"]) == 0.5
    assert chance_level("yes_no", ["yes", "yes", "yes", "no"]) == 0.75  # the majority class
    assert chance_level("generate", ["red", "Red.", "blue", "top left"]) == 0.5  # best constant answer: "red"
    with pytest.raises(ValueError, match="choices"):
        chance_level("multiple_choice", ["A"], [None])
    # 100 yes/no items: 55 % is chance (the old hallucination task), 80 % is not; seeded, so repeatable
    assert within_chance(0.55, 100, 0.5) and not within_chance(0.80, 100, 0.5)
    assert within_chance(0.29, 100, 0.25) and not within_chance(0.98, 100, 0.25)
    assert within_chance(0.10, 100, 0.25)  # below chance is not measurable either
    assert within_chance(0.59, 100, 0.5, seed=3) == within_chance(0.59, 100, 0.5, seed=3)


def test_leaderboard_flags_retention_tasks_the_base_knows_at_chance(tmp_path) -> None:
    import json

    from kore_bench.report import leaderboard, to_latex, to_markdown

    def unit(method: str, suite: str, role: str, tasks: dict) -> None:
        d = tmp_path / method / "seed0" / suite
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"unit": {"method": method, "seed": 0, "suite": suite},
                                                   "role": role, "split": "test", "tasks": tasks}))

    def task(category: str, metric: str, value: float, chance: float | None) -> dict:
        return {"category": category, "primary_metric": metric, "metrics": {metric: value},
                "higher_is_better": {metric: True}, "n": 100, "chance": chance}

    for method, yes_no, counting in (("base", 55.0, 98.0), ("lora", 51.0, 90.0)):
        unit(method, "world-new", "new_knowledge", {"world-new": task("new_knowledge", "cem", 5.0, None)})
        unit(method, "world-retention", "retention", {"hallucination": task("hallucination", "yes_no_accuracy", yes_no, 0.5),
                                                      "counting": task("counting", "exact_match", counting, 0.3)})
    table = leaderboard(tmp_path)
    assert list(table["K.R at chance"]) == ["hallucination", "hallucination"]  # counting (98 vs chance 30) is not
    assert table.loc[table.method == "base", "K.R"].iloc[0] == pytest.approx((55 + 98) / 2)  # K.R keeps its definition
    assert "K.R at chance" in to_markdown(table) and "not measurable here" in to_latex(table)
