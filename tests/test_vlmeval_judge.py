"""The LLM judge: VLMEvalKit's judged scoring (MathVista, MathVision, MIA-Bench) and its judge fallback
for multiple choice and yes/no, against numbers VLMEvalKit's own code computed with the same judge
replies (``fixtures/vlmeval/make_fixtures.py`` wrote ``expected.json: judged`` and the replies,
``judge_calls.json``, served here by a local fake endpoint); the wire path (``run --judge``,
``score --judge``), the reply cache, and what happens without a judge."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from judge_helpers import FIXTURES, FakeJudge, recorded_calls
from kore_bench.errors import KoreBenchError
from kore_bench.vlmeval import headline, parse_judge, read_table, score_table
from kore_bench.vlmeval import judge as judge_module
from kore_bench.vlmeval.benchmarks import NOT_SCORED, table_images
from kore_bench.vlmeval.judge import NotScored, is_equal, judge_option, parse_mia_score

EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["judged"]


@pytest.fixture(autouse=True)
def no_latex2sympy(monkeypatch):
    """The fixtures were computed with latex2sympy failing (as kore-bench runs without it)."""
    monkeypatch.setattr(judge_module, "LATEX2SYMPY", None)


def _judge(server: FakeJudge, cache: Path, model: str = "fake-judge"):
    judge = parse_judge(f"{server.url},{model}", cache_dir=cache)
    judge.chat.model.retries, judge.chat.model.timeout = 0, 10  # a failing test fails fast
    return judge


def _rows(table) -> dict:
    """VLMEvalKit's table by its row names (split, task/skill, subject, MMDU's set; MIA-Bench's dict is one row)."""
    table = [table] if isinstance(table, dict) else table
    key = next((k for k in ("split", "Task&Skill", "Subject", "set") if k in table[0]), None)
    if key is None:
        return dict(enumerate(table))
    return {r[key]: {k: v for k, v in r.items() if k != key} for r in table}


def _same(ours, theirs) -> None:
    ours, theirs = _rows(ours), _rows(theirs)
    assert list(ours) == list(theirs) or set(ours) == set(theirs)
    for name, row in theirs.items():
        assert set(ours[name]) == set(row), name
        for key, value in row.items():
            if value is None:
                assert math.isnan(ours[name][key]), (name, key)
            else:
                assert ours[name][key] == pytest.approx(value, rel=1e-12, abs=1e-12), (name, key)


@pytest.mark.parametrize("benchmark", sorted(EXPECTED))
def test_judged_scores_match_vlmevalkit(benchmark: str, tmp_path) -> None:
    """The same predictions and judge replies give VLMEvalKit's numbers; the prompts are VLMEvalKit's
    (the endpoint answers only the prompts VLMEvalKit sent); a second scoring is served from the cache."""
    server = FakeJudge(recorded_calls(benchmark))
    try:
        table = read_table(FIXTURES / f"{benchmark}.tsv")
        images = table_images(table, benchmark) if benchmark == "MIA-Bench" else None
        scored = score_table(benchmark, table, _judge(server, tmp_path / "cache"), images)
        assert not server.errors
        _same(scored.table, EXPECTED[benchmark])
        calls = len(server.requests)  # fewer than VLMEvalKit's when two items ask the very same (cached)
        assert 0 < calls <= len(recorded_calls(benchmark))
        again = _judge(server, tmp_path / "cache")
        rescored = score_table(benchmark, table, again, images)
        assert len(server.requests) == calls and again.stats == {"calls": 0, "cache_hits": calls}
        assert rescored.table == scored.table
    finally:
        server.close()


def test_judged_headlines() -> None:
    scored = {"MathVista_MINI": EXPECTED["MathVista_MINI"], "MathVision": EXPECTED["MathVision"]}
    from kore_bench.vlmeval.score import Scored

    for name, table in scored.items():
        overall = next(r for r in table if "Overall" in (r.get("Task&Skill"), r.get("Subject")))
        assert headline(name, Scored(table)) == {"score": pytest.approx(overall["acc"])}
    mia = EXPECTED["MIA-Bench"]
    assert headline("MIA-Bench", Scored([mia])) == {"score": pytest.approx(100 * mia["total_score"])}


def test_mia_bench_judge_sees_the_image(tmp_path) -> None:
    server = FakeJudge(recorded_calls("MIA-Bench"))
    try:
        table = read_table(FIXTURES / "MIA-Bench.tsv")
        score_table("MIA-Bench", table, _judge(server, tmp_path), table_images(table, "MIA-Bench"))
        request = server.requests[0]
        assert len(request["images"]) == 1 and request["images"][0]["detail"] == "low"
        assert request["images"][0]["url"].startswith("data:image/png;base64,")
        assert request["max_tokens"] == 2048 and request["temperature"] == 0
        with pytest.raises(KoreBenchError, match="no image for index"):
            score_table("MIA-Bench", table.drop(columns=["image"]), _judge(server, tmp_path / "other"), {})
    finally:
        server.close()


def test_without_a_judge_not_scored_with_the_reason() -> None:
    for name in ("MathVista_MINI", "MathVision", "MIA-Bench", "MMDU"):
        with pytest.raises(NotScored) as e:
            score_table(name, read_table(FIXTURES / f"{name}.tsv"))
        assert str(e.value) == NOT_SCORED.format(name=name)


def test_text_only_judge_does_not_score_mia_bench(tmp_path) -> None:
    judge = parse_judge(f"hf:{tmp_path}", cache_dir=tmp_path / "c")
    table = read_table(FIXTURES / "MIA-Bench.tsv")
    with pytest.raises(NotScored, match="text-only"):
        score_table("MIA-Bench", table, judge, table_images(table, "MIA-Bench"))


def test_mc_fallback_only_when_extraction_fails_and_random_pick_is_seeded(tmp_path) -> None:
    """An extracted prediction makes no call; three unreadable replies give a reproducible random
    option or Z (VLMEvalKit: an unseeded random one)."""
    server = FakeJudge()  # replies "A" to the matching prompt
    try:
        judge = _judge(server, tmp_path)
        item = {"index": 3, "question": "What?", "prediction": "no idea", "A": "cat", "B": "dog"}
        assert judge_option(judge, item, {"A": "cat", "B": "dog"}, "X") == "A"
        assert "Options: There are several options: \nA. cat\nB. dog\n" in server.requests[0]["prompt"]
        assert server.requests[0]["prompt"].endswith("Question: What??\nOptions: There are several options: \n"
                                                      "A. cat\nB. dog\n\nAnswer: no idea\nYour output: ")
    finally:
        server.close()

    class Mute:
        calls = 0

        def generate(self, prompt, **kwargs):
            Mute.calls += 1
            return "Failed to obtain answer via API. "

    picks = {judge_option(Mute(), {**item, "index": i}, {"A": "cat", "B": "dog"}, "X") for i in range(30)}
    assert Mute.calls == 90 and picks == {"A", "B", "Z"}
    choices = {"A": "cat", "B": "dog"}
    assert judge_option(Mute(), item, choices, "X") == judge_option(Mute(), item, choices, "X")


def test_vlmevalkit_quirks_kept() -> None:
    assert is_equal("2^3", "1")  # Python's xor, as VLMEvalKit's eval
    assert is_equal("1/2", "0.5") and not is_equal("\\frac{1}{2}", "0.5")  # LaTeX needs latex2sympy
    assert not is_equal("__import__('os')", "0")  # no eval of arbitrary text
    assert parse_mia_score(["a", "b"], "score of component 1: 1/2, score of component 2: 3/4, total score: 5/10. Ok") \
        == {"a": 0.5, "b": 0.75, "total_score": 0.5}
    with pytest.raises(ValueError):
        parse_mia_score(["a"], "score of component 1: 1.5/2, total score: 5/10.")


def test_judge_option_forms(tmp_path, monkeypatch) -> None:
    with pytest.raises(KoreBenchError, match="URL,MODEL"):
        parse_judge("gpt-4o-mini")
    monkeypatch.setenv("KORE_BENCH_JUDGE_API_KEY", "sk-judge")
    judge = parse_judge("http://127.0.0.1:9/v1,gpt-4o-mini", cache_dir=tmp_path)
    assert judge.identity == {"endpoint": "http://127.0.0.1:9/v1", "model": "gpt-4o-mini"}
    assert judge.chat.model.api_key == "sk-judge"
    judge.chat.model.retries, judge.chat.model.timeout = 0, 2
    with pytest.raises(KoreBenchError, match="cannot reach"):
        judge.check()
    assert parse_judge(f"hf:{tmp_path}").identity == {"hf": str(tmp_path.resolve())}


def test_score_command_with_a_judge(tmp_path) -> None:
    """``kore-bench score MathVista_MINI PRED --judge URL,MODEL``: the key from the environment, the
    metrics and the judge in the JSON; the second call is answered from the cache."""
    server = FakeJudge(recorded_calls("MathVista_MINI"))
    env = {**__import__("os").environ, "KORE_BENCH_JUDGE_API_KEY": "sk-judge", "KORE_BENCH_CACHE": str(tmp_path)}
    cmd = [sys.executable, "-m", "kore_bench", "score", "MathVista_MINI", str(FIXTURES / "MathVista_MINI.tsv"),
           "--judge", f"{server.url},fake-judge", "--output", str(tmp_path / "out.json")]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "fake-judge" in done.stdout and not server.errors
        report = json.loads((tmp_path / "out.json").read_text())
        assert report["judge"] == {"endpoint": server.url, "model": "fake-judge"}
        _same(report["vlmeval"], EXPECTED["MathVista_MINI"])
        overall = next(r for r in EXPECTED["MathVista_MINI"] if r["Task&Skill"] == "Overall")
        assert report["metrics"] == {"score": pytest.approx(overall["acc"])}
        assert {r["auth"] for r in server.requests} == {"Bearer sk-judge"}
        calls = len(server.requests)
        assert report["judge_calls"] == {"calls": calls, "cache_hits": 0}
        again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        assert again.returncode == 0, again.stderr
        assert len(server.requests) == calls  # every reply from the cache
        assert json.loads((tmp_path / "out.json").read_text())["judge_calls"] == {"calls": 0, "cache_hits": calls}
    finally:
        server.close()


def test_local_hf_judge(tmp_path, monkeypatch) -> None:
    """``--judge hf:PATH``: a local transformers model extracts MathVista's answers; a full cache
    loads nothing."""
    from test_augment import tiny_causal_lm

    model = tiny_causal_lm(tmp_path / "lm")
    table = read_table(FIXTURES / "MathVista_MINI.tsv").head(12)
    judge = parse_judge(f"hf:{model}", cache_dir=tmp_path / "c")
    first = score_table("MathVista_MINI", table, judge)
    assert judge.stats["calls"] > 0

    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("the cache should make loading the model unnecessary")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    again = parse_judge(f"hf:{model}", cache_dir=tmp_path / "c")
    assert score_table("MathVista_MINI", table, again).table == first.table and again.stats["calls"] == 0
