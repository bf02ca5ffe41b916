"""Augmenters: the template knowledge tree (no dev/test leak), the llm augmenter against a local
OpenAI-protocol server (validation, rejection, cache), and loading KORE-74K."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from chat_server import ChatServer
from PIL import Image

from kore_bench.augment import AUGMENTERS, augment, augment_with_report
from kore_bench.data import IMAGE_TOKEN, SHORT_ANSWER_SUFFIX, ImageRef, Sample, load_conversations
from kore_bench.errors import KoreBenchError, UnknownNameError

SUFFIX = "\n" + SHORT_ANSWER_SUFFIX


# ---- worlds: a hand-written world.json fixture and the generated micro world ------------------

def _png(path: Path, shade: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 255 - shade, 40)).save(path)
    return path.name


def write_fixture_world(root: Path) -> Path:
    """Two new entities (person, organisation) and one old, in world.json's documented structure."""
    relations = {
        "name": {"train": ["What is the name of {subject}?", "Name {subject}."],
                 "dev": ["What name does {subject} go by?"], "test": ["Identify {subject} by name."]},
        "birth_city": {"train": ["Where was {subject} born?", "In which city was {subject} born?"],
                       "dev": ["What city was {subject} born in?"], "test": ["{Subject} was born in which city?"]},
        "occupation": {"train": ["What is the occupation of {subject}?", "What job does {subject} have?"],
                       "dev": ["What is the profession of {subject}?"], "test": ["What is the job of {subject}?"]},
        "founder": {"train": ["Who founded {subject}?", "Who is the founder of {subject}?"],
                    "dev": ["Who set up {subject}?"], "test": ["Who started {subject}?"]},
        "industry": {"train": ["What industry is {subject} in?"],
                     "dev": ["Which industry does {subject} work in?"], "test": ["What business is {subject} in?"]},
    }
    people = [("p1", "Dravo Kelt", "person", "new", [("birth_city", "Zorvia"), ("occupation", "baker")],
               "Dravo Kelt is a baker born in Zorvia."),
              ("o1", "Mirex Labs", "organisation", "new", [("founder", "Dravo Kelt"), ("industry", "robotics")],
               "Mirex Labs is a robotics company founded by Dravo Kelt."),
              ("p0", "Sela Brun", "person", "old", [("birth_city", "Tamor"), ("occupation", "pilot")],
               "Sela Brun is a pilot born in Tamor.")]
    entities, injection = [], []
    for n, (eid, name, etype, split, facts, text) in enumerate(people):
        views = {s: [f"images/{eid}_v{k}.png" for k in ks]
                 for s, ks in {"train": (0, 1, 2, 3), "dev": (4,), "test": (5, 6)}.items()}
        for s in views:
            for k, rel in enumerate(views[s]):
                _png(root / rel, 30 * n + 7 * k)
        entities.append({"id": eid, "name": name, "type": etype, "hypernym": f"the {etype} in the image",
                         "split": split, "facts": [{"relation": r, "value": v} for r, v in facts],
                         "description": text, "views": views})
        if split == "new":
            injection.append({"id": len(injection) + 1, "image": views["train"][0], "conversations": [
                {"from": "human", "value": f"<image>\nCan you describe the {etype} in the image?"},
                {"from": "gpt", "value": text}]})
    (root / "world.json").write_text(json.dumps({"entities": entities, "relations": relations}, indent=1))
    (root / "evoke_injection_data.json").write_text(json.dumps(injection))
    return root


@pytest.fixture(scope="module")
def fixture_world(tmp_path_factory) -> Path:
    return write_fixture_world(tmp_path_factory.mktemp("fixture-world"))


@pytest.fixture(params=["fixture", "micro"])
def world(request) -> Path:
    return request.getfixturevalue("fixture_world" if request.param == "fixture" else "micro_world")


def injection(world_dir: Path) -> list[Sample]:
    samples, _ = load_conversations(world_dir / "evoke_injection_data.json", world_dir)
    return samples


def world_json(world_dir: Path) -> dict:
    return json.loads((world_dir / "world.json").read_text())


def filled(template: str, entity: dict) -> str:
    h = entity["hypernym"]
    return template.replace("{subject}", h).replace("{Subject}", h[0].upper() + h[1:])


def entity_of(sample: Sample, world_dir: Path) -> dict:
    """The world.json entity whose training view 0 is the sample's image (the export's rule)."""
    for e in world_json(world_dir)["entities"]:
        if Path(sample.image.path).resolve() == (world_dir / e["views"]["train"][0]).resolve():
            return e
    raise AssertionError(f"no entity has image {sample.image.path}")


def user_turns(s: Sample) -> list[str]:
    return [m["content"] for m in s.messages if m["role"] == "user"]


def rounds(s: Sample) -> list[tuple[str, str]]:
    return [(s.messages[i]["content"], s.messages[i + 1]["content"]) for i in range(0, len(s.messages), 2)]


# ---- template ---------------------------------------------------------------------------------

def test_template_never_uses_dev_or_test_views_or_phrasings(world):
    out = augment("template", injection(world), world, seed=0)
    w = world_json(world)
    held_views = {(world / p).resolve() for e in w["entities"] for s in ("dev", "test") for p in e["views"][s]}
    held_phrasings = {filled(t, e) for e in w["entities"] for spl in w["relations"].values()
                      for s in ("dev", "test") for t in spl[s]}
    assert out
    for s in out:
        assert Path(s.image.path).resolve() not in held_views, s.id
        for text in user_turns(s):
            assert not any(p.lower() in text.lower() for p in held_phrasings), (s.id, text)


def test_leak_guard_rejects_held_out_views_and_phrasings(fixture_world):
    w = world_json(fixture_world)
    person = w["entities"][0]
    test_view = str(fixture_world / person["views"]["test"][0])
    dev_question = filled(w["relations"]["birth_city"]["dev"][0], person)
    name = "test-leaky"
    if name not in AUGMENTERS:
        @AUGMENTERS.register(name)
        def leaky(samples, world, seed, report, *, leak: str = "view"):
            image, question = (test_view, "Where was the person in the image born?") if leak == "view" \
                else (str(fixture_world / person["views"]["train"][1]), dev_question)
            return [Sample(id="x", image=ImageRef(path=image),
                           messages=[{"role": "user", "content": IMAGE_TOKEN + "\n" + question},
                                     {"role": "assistant", "content": "Zorvia"}])]
    with pytest.raises(KoreBenchError, match="held-out image"):
        augment(name, [], fixture_world, seed=0, leak="view")
    with pytest.raises(KoreBenchError, match="held-out phrasing"):
        augment(name, [], fixture_world, seed=0, leak="phrasing")


def test_dialogue_starts_with_the_heuristic_description_and_asks_every_fact(world):
    samples = injection(world)
    out = augment("template", samples, world, seed=0)
    dialogues = {s.meta["origin"]: s for s in out if s.meta["kind"] == "dialogue"}
    assert set(dialogues) == {s.id for s in samples}
    relations = world_json(world)["relations"]
    for s in samples:
        d, entity = dialogues[s.id], entity_of(s, world)
        assert d.messages[:2] == s.messages  # round 1 is the injection Q/A, verbatim
        assert d.image == s.image
        assert 1 < len(rounds(d)) <= 11
        asked = rounds(d)[1:]
        for fact in entity["facts"]:
            train = {filled(t, entity) + SUFFIX for t in relations[fact["relation"]]["train"]}
            assert any(q in train and a == str(fact["value"]) for q, a in asked), (entity["id"], fact)


def test_max_rounds_caps_the_dialogue(fixture_world):
    out, report = augment_with_report("template", injection(fixture_world), fixture_world, seed=0,
                                      max_rounds=2, branch=False)
    assert all(len(rounds(s)) == 2 for s in out) and {s.meta["kind"] for s in out} == {"dialogue"}
    assert any("leaves out fact" in n for n in report.notes)  # truncation is reported, not silent


def test_branches_use_the_other_training_views(world):
    samples = injection(world)
    out = augment("template", samples, world, seed=0)
    for s in samples:
        entity = entity_of(s, world)
        others = {(world / p).resolve() for p in entity["views"]["train"][1:]}
        branch = [b for b in out if b.meta["origin"] == s.id and b.meta["kind"] != "dialogue"]
        assert {b.meta["kind"] for b in branch} == {"recognition", "caption", "vqa"}
        assert {Path(b.image.path).resolve() for b in branch} == others
        for b in branch:
            assert len(rounds(b)) == 1
            q, a = rounds(b)[0]
            if b.meta["kind"] == "vqa":
                assert entity["hypernym"] in q.lower() and entity["name"] not in q
                assert a in {str(f["value"]) for f in entity["facts"]}
            if b.meta["kind"] == "caption":
                assert a == entity["description"]


def test_output_has_the_loaders_form(world):
    for s in augment("template", injection(world), world, seed=0):
        assert s.messages[0]["role"] == "user" and s.messages[0]["content"].startswith(IMAGE_TOKEN + "\n")
        assert sum(m["content"].count(IMAGE_TOKEN) for m in s.messages) == 1
        assert [m["role"] for m in s.messages] == ["user", "assistant"] * (len(s.messages) // 2)
        assert all(m["content"].strip() for m in s.messages)
        assert Path(s.image.path).is_absolute() and Path(s.image.path).is_file()
    assert len({s.id for s in augment("template", injection(world), world, seed=0)}) == \
        len(augment("template", injection(world), world, seed=0))


def test_template_is_deterministic_from_the_seed(fixture_world):
    def run(seed):
        return [(s.id, s.image.path, s.messages) for s in augment("template", injection(fixture_world),
                                                                  fixture_world, seed=seed)]
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_unknown_items_pass_through_and_are_reported(fixture_world):
    stranger = Sample(id="s", image=None, messages=[{"role": "user", "content": "Who?"},
                                                   {"role": "assistant", "content": "Nobody we know."}])
    out, report = augment_with_report("template", injection(fixture_world) + [stranger], fixture_world, seed=0)
    assert stranger in out and report.passed_through[0][0] == "s"
    assert report.produced["original"] == 1 and report.total == len(out)


def test_names_and_options_are_checked(fixture_world):
    with pytest.raises(UnknownNameError, match="did you mean 'template'"):
        augment("templat", [], fixture_world, seed=0)
    with pytest.raises(UnknownNameError, match="did you mean 'max_rounds'"):
        augment("template", [], fixture_world, seed=0, max_round=3)
    with pytest.raises(KoreBenchError, match="needs the world"):
        augment("template", injection(fixture_world), None, seed=0)


# ---- llm --------------------------------------------------------------------------------------

GOOD = [{"question": "Where was the person in the image born?", "answer": "Zorvia"},
        {"question": "What does the person in the image do?", "answer": "The person in the image is a baker."},
        {"question": "Which company employs the person in the image?", "answer": "Quorn Foods"},  # invented
        {"question": "What city was the person in the image born in?", "answer": "Zorvia"},  # dev phrasing
        {"question": "Who is this?", "answer": ""}]  # empty answer


def canned_rounds(prompt: str) -> str:
    """GOOD (in a code fence) for Dravo Kelt's item, a malformed reply for every other."""
    return ("```json\n" + json.dumps(GOOD) + "\n```" if "Dravo Kelt is a baker" in prompt
            else "Sure! Here are some rounds: question: who founded it? answer: Dravo")


@pytest.fixture
def chat_server():
    server = ChatServer(canned_rounds)
    yield server
    server.close()


def test_llm_validates_rejects_and_caches(fixture_world, chat_server, tmp_path):
    samples = injection(fixture_world)
    options = dict(base_url=chat_server.url, model="canned-1", api_key="sk-test", cache_dir=str(tmp_path / "c"))
    out, report = augment_with_report("llm", samples, fixture_world, seed=0, **options)
    assert len(chat_server.requests) == 2 and report.calls == 2
    req = chat_server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["model"] == "canned-1" and req["auth"] == "Bearer sk-test"
    assert "the person in the image" in req["messages"][0]["content"]

    person, org = samples
    dialogue = next(s for s in out if s.meta["origin"] == person.id and s.meta["kind"] == "dialogue")
    assert dialogue.messages[:2] == person.messages
    assert rounds(dialogue)[1:] == [(GOOD[0]["question"], "Zorvia"), (GOOD[1]["question"], GOOD[1]["answer"])]
    reasons = dict(report.rejected)
    assert "Quorn" in reasons[f"{person.id} round 3"] and "grounded" in reasons[f"{person.id} round 3"]
    assert "held-out phrasing" in reasons[f"{person.id} round 4"]
    assert "non-empty" in reasons[f"{person.id} round 5"]
    assert "not JSON" in reasons[org.id]  # the malformed reply: rejected, the original kept
    assert org in out and (org.id, "the model's reply gave no valid round (see rejected)") in report.passed_through
    assert {s.meta["kind"] for s in out if s.meta.get("origin") == org.id} == {"recognition", "caption", "vqa"}

    again, report2 = augment_with_report("llm", samples, fixture_world, seed=0, **options)
    assert len(chat_server.requests) == 2 and report2.calls == 0 and report2.cache_hits == 2
    assert [(s.id, s.messages) for s in again] == [(s.id, s.messages) for s in out]


def test_llm_reads_the_endpoint_from_the_environment(fixture_world, chat_server, tmp_path, monkeypatch):
    monkeypatch.setenv("KORE_BENCH_LLM_BASE_URL", chat_server.url)
    monkeypatch.setenv("KORE_BENCH_LLM_MODEL", "env-model")
    augment("llm", injection(fixture_world)[:1], None, seed=0, cache_dir=str(tmp_path))
    assert chat_server.requests[0]["model"] == "env-model"
    monkeypatch.delenv("KORE_BENCH_LLM_MODEL")
    with pytest.raises(KoreBenchError, match="needs a model"):
        augment("llm", injection(fixture_world), None, seed=0, cache_dir=str(tmp_path / "x"))


def test_llm_unreachable_endpoint_is_a_clear_error(fixture_world, tmp_path):
    with pytest.raises(KoreBenchError, match="cannot reach"):
        augment("llm", injection(fixture_world)[:1], None, seed=0, base_url="http://127.0.0.1:9/v1",
                model="m", retries=0, timeout=2, cache_dir=str(tmp_path))


def tiny_causal_lm(path: Path) -> Path:
    """A random one-layer Llama with a word-level tokenizer and a chat template, saved to ``path``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "</s>", "[", "]", "{", "}", "question", "answer", ":", ",", "Zorvia", "baker"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="</s>")
    tok.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    cfg = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                      pad_token_id=1, eos_token_id=2, bos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_llm_local_transformers_model(fixture_world, tmp_path, monkeypatch):
    model = tiny_causal_lm(tmp_path / "lm")
    options = dict(model_path=str(model), max_tokens=6, branch=False, cache_dir=str(tmp_path / "c"))
    samples = injection(fixture_world)[:1]
    out, report = augment_with_report("llm", samples, fixture_world, seed=0, **options)
    assert report.calls == 1 and out == samples  # a random model's words are no JSON: rejected, kept as is
    assert report.rejected[0][0] == samples[0].id and "not JSON" in report.rejected[0][1]

    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("the cache should make loading the model unnecessary")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    _, report2 = augment_with_report("llm", samples, fixture_world, seed=0, **options)
    assert report2.calls == 0 and report2.cache_hits == 1


# ---- kore74k ----------------------------------------------------------------------------------

def test_kore74k_replaces_the_input_samples(tmp_path, fixture_world):
    root = tmp_path / "kore74k"
    _png(root / "imgs" / "a.jpg", 10)
    with zipfile.ZipFile(root / "imgs_of_vqa.zip", "w") as zf:
        zf.writestr("imgs_of_vqa/b.png", (root / "imgs" / "a.jpg").read_bytes())
    def record(rid, image, question, answer):
        key = "images" if isinstance(image, list) else "image"
        return {"id": rid, key: image, "conversations": [{"from": "human", "value": question},
                                                         {"from": "gpt", "value": answer}]}
    records = [record("k1", "imgs/a.jpg", "<image>\nIs the image depicting Dravo Kelt?", "Yes."),
               record("k2", "imgs_of_vqa/b.png", "Who founded the company in the image?", "Dravo Kelt"),
               record("k3", ["imgs/a.jpg", "imgs/a.jpg"], "<image><image>\nSame?", "Yes.")]
    data = tmp_path / "KORE-74K-training_data.json"
    data.write_text(json.dumps(records))
    out, report = augment_with_report("kore74k", injection(fixture_world), None, seed=0,
                                      path=str(data), image_root=str(root))
    assert [s.id for s in out] == ["k1", "k2"]
    assert out[0].image.path == str(root / "imgs" / "a.jpg")
    assert out[1].image.member == "imgs_of_vqa/b.png" and out[1].messages[0]["content"].startswith(IMAGE_TOKEN)
    assert out[1].image.load().size == (8, 8)
    assert report.rejected and "several images" in report.rejected[0][1]  # the skipped record is reported


# ---- text (real data: no world facts) and auto --------------------------------------------------

EVOKE_ENTITIES = [  # (image as EVOKE names it, injection prompt, knowledge text)
    ("wikidata_imgs/Mirex Labs_wiki.jpg", "Can you describe the company depicted in the image?",
     "Mirex Labs is a robotics company founded by Dravo Kelt in 2011. It is headquartered in Zorvia and "
     "employs 3,000 people. In March 2020, Mirex Labs acquired Tamor Systems for $5 billion."),
    ("wikidata_imgs/Sela Brun_wiki.jpg", "Can you describe the person depicted in the image?",
     "Sela Brun (born 4 May 1990) is a pilot from Tamor. She won the Orvane Cup in 2019 and flew 42 missions "
     "for Kestrel Air."),
]
EVOKE_NEWS = [("cnn_news_imgs/cnn_7/Volta_company_1.jpg", "Please explain business news that is shown in image.",
               "Volta Motors surpassed Arlen Auto in EV sales last year. The automaker sold 526,409 vehicles in "
               "the fourth quarter, its chief Mara Quill said on January 2, 2024.")]


def write_evoke(root: Path, records: list[tuple[str, str, str]] | None = None) -> Path:
    """EVOKE as released: the two record files and the injection images in per-kind zips."""
    records = records if records is not None else EVOKE_ENTITIES + EVOKE_NEWS
    root.mkdir(parents=True, exist_ok=True)
    injection = [{"id": i + 1, "image": image, "conversations": [{"from": "human", "value": f"<image>\n{prompt}"},
                                                                 {"from": "gpt", "value": text}]}
                 for i, (image, prompt, text) in enumerate(records)]
    (root / "evoke_injection_data.json").write_text(json.dumps(injection))
    (root / "evoke_evaluation_data.jsonl").write_text("".join(
        json.dumps({"question_id": i + 1, "image": f"eval_imgs/{i}.jpg", "text": "Who founded the company in the "
                    "image?\nAnswer the question using a single word or phrase.", "answer": "Dravo Kelt",
                    "ground_truth": [i]}) + "\n" for i in range(len(records))))
    (root / "imgs" / "injection").mkdir(parents=True, exist_ok=True)
    (root / "imgs" / "evaluation").mkdir(parents=True, exist_ok=True)
    png = root / "pixel.png"
    _png(png, 90)
    for kind in ("entity", "news"):
        with zipfile.ZipFile(root / "imgs" / "injection" / f"evoke_{kind}_injection_imgs.zip", "w") as zf:
            for image, _, _ in records:
                if image.startswith("wikidata") == (kind == "entity"):
                    zf.writestr(image, png.read_bytes())
    with zipfile.ZipFile(root / "imgs" / "evaluation" / "evoke_entity_evaluation_imgs.zip", "w") as zf:
        for i in range(len(records)):
            zf.writestr(f"eval_imgs/{i}.jpg", png.read_bytes())
    png.unlink()
    return root


@pytest.fixture
def no_augmenter_environment(monkeypatch):
    for name in ("KORE_BENCH_LLM_BASE_URL", "OPENAI_BASE_URL", "KORE_BENCH_LLM_MODEL", "KORE_BENCH_KORE74K"):
        monkeypatch.delenv(name, raising=False)


def evoke_train(root: Path) -> list[Sample]:
    from kore_bench.suites import load_suites

    return load_suites()["evoke"].with_variables(path=str(root)).train_samples()


def test_auto_augments_real_evoke_items_from_their_text(tmp_path, no_augmenter_environment):
    items = evoke_train(write_evoke(tmp_path / "EVOKE"))
    out, report = augment_with_report("auto", items, None, seed=0)
    assert report.resolved == "text" and "no world facts" in report.why
    assert len(out) > len(items) and not report.passed_through
    assert {"dialogue", "recognition", "caption", "paraphrase", "vqa"} <= set(report.produced)
    knowledge = {s.id: s.messages[1]["content"] for s in items}
    for s in out:
        origin = s.meta["origin"]
        assert s.image == next(i.image for i in items if i.id == origin)  # on the injection image
        assert s.meta["augmentation"]["augmenter"] == "text" and s.meta["augmentation"]["requested"] == "auto"
        qa = rounds(s)[1:] if s.meta["kind"] == "dialogue" else rounds(s)
        for question, answer in qa:
            if s.meta["kind"] in ("dialogue", "vqa") or s.id.endswith("recognition:name"):
                assert answer in knowledge[origin], (s.id, question, answer)  # a span of the knowledge text
                assert question.endswith(SUFFIX)
    by_id = {s.id: s for s in out}
    mirex = by_id["1:dialogue"]
    assert rounds(mirex)[0] == tuple(m["content"] for m in items[0].messages)  # the injection turn first
    assert rounds(mirex)[1] == ("What is shown in the image?" + SUFFIX, "Mirex Labs")  # recognition (EVOKE's file name)
    asked = dict(rounds(mirex))
    assert asked["The company in the image is a robotics company founded by whom in 2011?" + SUFFIX] == "Dravo Kelt"
    assert asked["The company in the image is headquartered in Zorvia and employs how many people?" + SUFFIX] == "3,000"
    assert len(mirex.messages) // 2 <= 11
    assert rounds(by_id["2:recognition:name"])[0] == (IMAGE_TOKEN + "\nWho is shown in the image?" + SUFFIX, "Sela Brun")
    assert not by_id["3:paraphrase"].messages[1]["content"].startswith("On January")  # "..., X said on <date>" stays
    assert "3:recognition:name" not in by_id  # news has no entity name: no recognition turn
    assert any(a == "Arlen Auto" for _, a in rounds(by_id["3:dialogue"]))
    again, _ = augment_with_report("auto", items, None, seed=0)
    assert [s.messages for s in again] == [s.messages for s in out]  # deterministic from the seed


def test_auto_prefers_llm_then_kore74k_then_world_facts(fixture_world, monkeypatch, no_augmenter_environment):
    from kore_bench.augment.auto import choose

    assert choose(None)[0] == "text"
    assert choose(object())[0] == "template"  # the suite has world facts
    _, report = augment_with_report("auto", injection(fixture_world), fixture_world, seed=0)
    assert report.resolved == "template"
    monkeypatch.setenv("KORE_BENCH_KORE74K", "/data/KORE-74K-training_data.json")
    assert choose(object())[0] == "kore74k"
    monkeypatch.setenv("KORE_BENCH_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    assert choose(object())[0] == "kore74k"  # an endpoint without a model is not configured
    monkeypatch.setenv("KORE_BENCH_LLM_MODEL", "m")
    assert choose(None) == ("llm", "a chat endpoint is configured (m at http://127.0.0.1:9/v1)")


def test_nothing_to_augment_is_refused(tmp_path, no_augmenter_environment):
    items = evoke_train(write_evoke(tmp_path / "EVOKE", [("wikidata_imgs/x_wiki.jpg", "Can you describe it?",
                                                          "unknown. no facts here")]))
    out, report = augment_with_report("text", items, None, seed=0)
    assert out == items and report.passed_through and report.augmented == 0
    with pytest.raises(KoreBenchError, match=r"augmenter text \(auto: .*augmented none of the 1 injection items"
                                             r".*no sentence.*refusing to train on them unaugmented"):
        augment("auto", items, None, seed=0)
    with pytest.raises(KoreBenchError, match="augmented none"):
        augment("template", [Sample(id="s", messages=[{"role": "user", "content": "Who?"},
                                                      {"role": "assistant", "content": "Nobody."}])],
                write_fixture_world(tmp_path / "world"), seed=0)
