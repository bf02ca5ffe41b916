"""SEFE's ASD (answer-style diversification): the template writer's samples are pinned, and the
``llm`` writer, against a local OpenAI-protocol server, rewrites the chosen share, falls back to
the template for a reply that fails validation (counted), caches replies and is chosen by ``auto``
exactly as kore's augmenter is."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import pytest
from chat_server import ChatServer

from kore_bench.data import Sample, format_multiple_choice
from kore_bench.errors import KoreBenchError, UnknownNameError
from kore_bench.methods.sefe import SEFE, SefeConfig, asd, check_reply, diversify_answers


def make_samples(n: int = 40) -> list[Sample]:
    """Single-turn image questions with repeating answers, and a few multi-turn samples ASD skips."""
    out = []
    for i in range(n):
        if i % 13 == 5:
            out.append(Sample(id=f"m{i}", messages=[{"role": "user", "content": "<image>\nWho?"},
                                                    {"role": "assistant", "content": "A"},
                                                    {"role": "user", "content": "And?"},
                                                    {"role": "assistant", "content": "B"}]))
            continue
        out.append(Sample(id=f"s{i}", meta={"k": i}, messages=[
            {"role": "user", "content": f"<image>\nWhat is fact {i} of the company in the image?"},
            {"role": "assistant", "content": f"Answer {i % 17}"}]))
    return out


def digest(rows: list[Sample]) -> str:
    return hashlib.sha256(json.dumps([(s.id, s.messages, s.answer, s.meta) for s in rows],
                                     sort_keys=True).encode()).hexdigest()


# sha256 of the template writer's output before the llm writer was added (commit 2bf9825)
PINNED = {(0, 0.2, 40): "f6869b1bdf84322036859ac5c9e2eb335438f68c2019d95e297984097464c771",
          (0, 0.5, 40): "d32bcc56aab4285b19223ebc766bbba4fd67d59a237feac2bc79cbfe2e0a92a6",
          (0, 1.0, 3): "079cec0146d85b2d076da5caccff0161a83fea5a9fafc78c816af210b1108150",
          (1, 0.2, 40): "aea1b1263d573c81658ee68b97ac40e0a1d5387e5e30ba1178a874269fa0d1d5",
          (1, 0.5, 40): "091433c04047a9e835a3d5063ebf82ea43bf2aa74fcd9da5d1b15b3bb92061ef"}


@pytest.mark.parametrize("seed,share,n", sorted(PINNED))
def test_template_asd_output_is_pinned(seed, share, n):
    assert digest(diversify_answers(make_samples(n), share, seed)) == PINNED[(seed, share, n)]


# ---- the llm writer against a local OpenAI-protocol endpoint

ENDPOINT_ENV = ("KORE_BENCH_LLM_BASE_URL", "OPENAI_BASE_URL", "KORE_BENCH_LLM_MODEL", "KORE_BENCH_LLM_API_KEY",
                "OPENAI_API_KEY", "KORE_BENCH_KORE74K")


def good_reply(prompt: str) -> dict:
    """A reply that passes validation, built from what the prompt gives the model."""
    if "into a yes/no question" in prompt:
        candidate = re.search(r'asking whether "(.*?)" is the correct', prompt).group(1)
        verdict = re.search(r"The correct reply to your question is (Yes|No)\.", prompt).group(1)
        return {"question": f'Would "{candidate}" answer it? Answer yes or no.', "answer": verdict}
    if "multiple-choice" in prompt:
        return {"question": "Which option is true of the company in the image?",
                "answer": re.search(r"Correct option: ([A-D])", prompt).group(1)}
    answer = re.search(r"Correct answer: (.*)", prompt).group(1)
    if "brief answer style" in prompt:
        return {"question": "Briefly, what is it?", "answer": f"It is {answer}."}
    return {"question": "Explain in detail what it is.",
            "answer": f"The company in the image has this property: {answer}. That is what the question asks about."}


def reply_with_two_bad(prompt: str) -> str:
    """Valid replies, except a wrong verdict for fact 0 and prose instead of JSON for fact 7."""
    data = good_reply(prompt)
    if "fact 0 of" in prompt:
        data["answer"] = "No" if data["answer"] == "Yes" else "Yes"
    if "fact 7 of" in prompt:
        return "Sure! The question could be: what is it? The answer: it."
    return "```json\n" + json.dumps(data) + "\n```"


@pytest.fixture
def no_endpoint(monkeypatch):
    for name in ENDPOINT_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def endpoint(monkeypatch, no_endpoint):
    server = ChatServer(reply_with_two_bad)
    monkeypatch.setenv("KORE_BENCH_LLM_BASE_URL", server.url)
    monkeypatch.setenv("KORE_BENCH_LLM_MODEL", "canned-asd")
    monkeypatch.setenv("KORE_BENCH_LLM_API_KEY", "sk-test")
    yield server
    server.close()


def without_record(rows: list[Sample]) -> list[tuple]:
    return [(s.id, s.messages, s.answer, {k: v for k, v in s.meta.items() if k != "augmentation"}) for s in rows]


def test_llm_writer_rewrites_the_share_falls_back_counted_and_caches(endpoint, tmp_path):
    samples = make_samples(8)  # 7 single-turn (m5 is multi-turn): all rewritten, the styles in turn
    template = diversify_answers(samples, 1.0, seed=0)
    out, report = asd(samples, 1.0, seed=0, augmenter="llm", cache_dir=tmp_path)
    assert len(endpoint.requests) == 7 and report.calls == 7 and report.cache_hits == 0
    req = endpoint.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["model"] == "canned-asd" and req["auth"] == "Bearer sk-test"
    assert req["temperature"] == 0.0 and "<image>" not in req["messages"][0]["content"]
    by_id = {s.id: s for s in out}
    styles = {s.id: s.meta.get("asd_style") for s in out}
    assert styles == {"s0#asd": "yes/no", "s1#asd": "multiple choice", "s2#asd": "brief", "s3#asd": "detailed",
                      "s4#asd": "yes/no", "m5": None, "s6#asd": "multiple choice", "s7#asd": "brief"}

    # written by the model: the exact rewritten samples (the template's candidate/options kept)
    assert by_id["s4#asd"].messages == [
        {"role": "user", "content": '<image>\nWould "Answer 4" answer it? Answer yes or no.'},
        {"role": "assistant", "content": "Yes"}]
    assert template[4].messages[0]["content"].endswith('Is the answer "Answer 4"? Answer yes or no.')
    mc = by_id["s1#asd"].messages
    assert mc[0]["content"] == template[1].messages[0]["content"].replace(
        "What is fact 1 of the company in the image?", "Which option is true of the company in the image?")
    assert mc[0]["content"].startswith("<image>\nWhich option") and mc[1]["content"] == template[1].messages[1]["content"]
    assert by_id["s2#asd"].messages == [{"role": "user", "content": "<image>\nBriefly, what is it?"},
                                        {"role": "assistant", "content": "It is Answer 2."}]
    assert by_id["s3#asd"].messages == [
        {"role": "user", "content": "<image>\nExplain in detail what it is."},
        {"role": "assistant", "content": "The company in the image has this property: Answer 3. "
                                         "That is what the question asks about."}]
    assert by_id["s2#asd"].meta["asd_writer"] == "llm" and by_id["s2#asd"].meta["asd_model"] == "canned-asd"

    # the two bad replies: the template's rewrite of those samples, counted with the reason
    for i, why in ((0, "contradicts the gold"), (7, "not a JSON object")):
        fell = by_id[f"s{i}#asd"]
        assert fell.messages == template[i].messages and fell.meta["asd_writer"] == "template"
        assert why in fell.meta["asd_fallback"]
    assert [i for i, _ in report.fallbacks] == ["s0", "s7"] and report.written == 5
    record = by_id["s2#asd"].meta["augmentation"]
    assert record["augmenter"] == "llm" and record["requested"] == "llm" and record["fallbacks"] == 2
    assert "5 written by the model, 2 fell back to the template" in record["summary"]
    assert by_id["m5"] is samples[5] and "augmentation" not in by_id["m5"].meta  # not restyled, untouched

    # a second run: every reply from the cache, no request, the same samples
    again, report2 = asd(samples, 1.0, seed=0, augmenter="llm", cache_dir=tmp_path)
    assert len(endpoint.requests) == 7 and report2.calls == 0 and report2.cache_hits == 7
    assert without_record(again) == without_record(out)


def test_auto_without_an_endpoint_is_exactly_the_template(no_endpoint, tmp_path):
    samples = make_samples(40)
    auto, report = asd(samples, 0.2, seed=0, augmenter="auto", cache_dir=tmp_path)
    template, _ = asd(samples, 0.2, seed=0, augmenter="template", cache_dir=tmp_path)
    assert report.writer == "template" and "no chat endpoint" in report.why
    assert without_record(auto) == without_record(template) == without_record(diversify_answers(samples, 0.2, 0))
    assert digest([dataclasses.replace(s, meta={k: v for k, v in s.meta.items() if k != "augmentation"})
                   for s in auto]) == PINNED[(0, 0.2, 40)]
    records = {json.dumps(s.meta["augmentation"], sort_keys=True) for s in auto if "augmentation" in s.meta}
    assert len(records) == 1 and json.loads(records.pop())["augmenter"] == "template"
    assert not list(tmp_path.iterdir())  # no model, no cache


def test_llm_without_an_endpoint_is_a_clear_error(no_endpoint, monkeypatch):
    with pytest.raises(KoreBenchError, match=r"sefe.augmenter=llm needs a chat endpoint.*KORE_BENCH_LLM_BASE_URL"):
        asd(make_samples(8), 0.5, seed=0, augmenter="llm")
    monkeypatch.setenv("KORE_BENCH_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # an endpoint without a model
    with pytest.raises(KoreBenchError, match="KORE_BENCH_LLM_MODEL"):
        asd(make_samples(8), 0.5, seed=0, augmenter="llm")
    with pytest.raises(UnknownNameError, match="sefe.augmenter"):
        SefeConfig(augmenter="gpt")


def test_auto_picks_the_endpoint_and_the_leaderboard_says_so(endpoint, tmp_path):
    from kore_bench.report import augmentation_notes
    from kore_bench.train import augmentation_of

    out, report = asd(make_samples(8), 0.5, seed=0, augmenter="auto", cache_dir=tmp_path)
    assert report.writer == "llm" and "canned-asd" in report.why and endpoint.requests
    info = augmentation_of(out)
    assert info["augmenter"] == "llm" and info["requested"] == "auto" and "others" not in info
    assert augmentation_notes({"sefe": [{"augmentation": info}]}, ["sefe"]) == [
        "sefe: training data augmented by llm (chosen by auto; ASD restyled 4 of 7 single-turn samples)"]


def test_sefe_unit_key_follows_the_endpoint_environment(no_endpoint, monkeypatch):
    from kore_bench.unit_key import unit_key

    def key(**overrides):
        return unit_key("sefe", SEFE.from_overrides(overrides), "w", "d", 0).parts

    assert "augmenter_environment" in key() and "augmenter_environment" not in key(augmenter="template")
    before = key()["augmenter_environment"]
    monkeypatch.setenv("KORE_BENCH_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("KORE_BENCH_LLM_MODEL", "m")
    assert key()["augmenter_environment"] != before


OPTIONS = {"A": "Answer 1", "B": "Answer 2", "C": "Answer 3", "D": "Answer 4"}


@pytest.mark.parametrize("applied,draw,reply,why", [
    ("multiple choice", OPTIONS, {"question": "Which is it?", "answer": "C"}, "contradicts the gold B"),
    ("multiple choice", OPTIONS, {"question": "Which is it?", "answer": "E"}, "not a letter among A, B, C, D"),
    ("multiple choice", OPTIONS, {"question": "Which is it?\nA. Answer 1\nB. Answer 2", "answer": "B"},
     "lists options"),
    ("yes/no", "Answer 3", {"question": 'Is it "Answer 3"?', "answer": "Maybe"}, "not Yes or No"),
    ("yes/no", "Answer 3", {"question": "Is it the third one?", "answer": "No"}, "does not ask about the candidate"),
    ("brief", None, {"question": "What is it, briefly?", "answer": "The second."}, "does not contain the gold"),
    ("detailed", None, {"question": "Explain it.", "answer": "It is Answer 2, founded by Dravo Kelt in 1999."},
     "adds names or numbers: Dravo, Kelt, 1999"),
    ("brief", None, {"question": "", "answer": "Answer 2"}, "non-empty strings"),
    ("brief", None, "question: what? answer: Answer 2", "not a JSON object"),
])
def test_check_reply_rejects_what_changes_or_invents(applied, draw, reply, why):
    text = reply if isinstance(reply, str) else json.dumps(reply)
    checked = check_reply(text, applied, "What is fact 2 of the company in the image?", "Answer 2", draw)
    assert isinstance(checked, str) and why in checked


def test_check_reply_keeps_the_gold_and_formats_the_options():
    q = "What is fact 2 of the company in the image?"
    assert check_reply('{"question": "Which fits?", "answer": "(B)"}', "multiple choice", q, "Answer 2",
                       OPTIONS) == (format_multiple_choice("Which fits?", OPTIONS), "B")
    assert check_reply('{"question": "Is \\"answer 3\\" right? Answer yes or no.", "answer": "no."}', "yes/no", q,
                       "Answer 2", "Answer 3") == ('Is "answer 3" right? Answer yes or no.', "No")
