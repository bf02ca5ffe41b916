"""Fault injection: kills at named points, byte corruption of each stored file kind, bad input.

Each case asserts the outcome: recomputed with identical numbers, or exit 2 with a message naming
the problem, and nothing half-written left behind.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kore_bench import cli, integrity
from kore_bench.errors import KoreBenchError
from kore_bench.runner import RunConfig, run

FAST = {"lora": {"steps": 5}}


def _cfg(out: Path) -> RunConfig:
    return RunConfig(methods=["lora"], output=out, world="micro", seeds=[0], limit=4, progress=False,
                     method_args={k: dict(v) for k, v in FAST.items()})


def _scores(run_dir: Path) -> list[str]:
    lines = (run_dir / "scores.csv").read_text().splitlines()
    return sorted(lines)


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    old = sys.argv
    sys.argv = ["kore-bench", *argv]
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old
    cap = capsys.readouterr()
    return code, cap.err + cap.out


@pytest.fixture(scope="module")
def trained(micro_base, tmp_path_factory) -> Path:
    return run(_cfg(tmp_path_factory.mktemp("faults") / "ref"))


def _copy(trained: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    return out


def _mtimes(run_dir: Path, pattern: str) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in run_dir.glob(pattern)}


# -- corruption of each stored file kind ---------------------------------------------------------------
def test_damaged_artifact_tensor_bytes_are_retrained_to_identical_numbers(trained, tmp_path, capsys):
    out = _copy(trained, tmp_path)
    tensors = out / "lora" / "seed0" / "artifact" / "adapter_model.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-100:-90] = b"\x00" * 10  # header intact, weights damaged
    tensors.write_bytes(bytes(data))
    for r in out.glob("lora/seed0/*/result.json"):  # force the artifact to be reused
        rec = json.loads(r.read_text())
        rec["fingerprint"] = "stale"
        r.write_text(json.dumps(rec))
    run(_cfg(out))
    assert _scores(out) == _scores(trained)
    assert integrity.verify_dir(out / "lora" / "seed0" / "artifact") is None


def test_truncated_artifact_fingerprint_is_retrained(trained, tmp_path):
    out = _copy(trained, tmp_path)
    stamp = out / "lora" / "seed0" / "artifact" / "fingerprint.json"
    stamp.write_text(stamp.read_text()[:40])
    (out / "lora" / "seed0" / "world-new" / "result.json").unlink()
    run(_cfg(out))
    assert integrity.read_sealed(stamp)[1] is None
    assert _scores(out) == _scores(trained)


def test_edited_metric_in_result_is_reevaluated(trained, tmp_path):
    out = _copy(trained, tmp_path)
    path = out / "lora" / "seed0" / "world-retention" / "result.json"
    rec = json.loads(path.read_text())
    task = next(iter(rec["tasks"]))
    metric = rec["tasks"][task]["primary_metric"]
    rec["tasks"][task]["metrics"][metric] = 0.987
    path.write_text(json.dumps(rec))
    with pytest.raises(KoreBenchError, match="fails its checksum"):
        from kore_bench.report import leaderboard

        leaderboard(out)
    others = _mtimes(out, "lora/seed0/world-new/result.json")
    run(_cfg(out))
    assert _scores(out) == _scores(trained)
    assert _mtimes(out, "lora/seed0/world-new/result.json") == others  # only the damaged unit redone


def test_cut_samples_file_is_refused_by_compare_and_recomputed_by_run(trained, tmp_path, capsys):
    out = _copy(trained, tmp_path)
    samples = out / "lora" / "seed0" / "world-retention" / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(lines[:-3]))  # cut at a line boundary
    code, text = _cli(["compare", str(out), "--baseline", "base"], capsys)
    assert code == 2 and "samples.jsonl fails its checksum" in text
    run(_cfg(out))
    assert samples.read_text().count("\n") == len(lines)
    assert _scores(out) == _scores(trained)


def test_garbled_manifest_is_rebuilt(trained, tmp_path):
    out = _copy(trained, tmp_path)
    (out / "manifest.json").write_text("{not json")
    run(_cfg(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["units"]["lora/seed0"]["status"] == "done"
    assert _scores(out) == _scores(trained)


def test_cut_world_file_is_detected_and_exported_again(micro_world, capsys):
    from kore_bench.cache import _VERIFIED, world_dir

    target = micro_world / "retention" / "counting.jsonl"
    original = target.read_text()
    target.write_text("".join(original.splitlines(keepends=True)[:-2]))
    _VERIFIED.clear()
    assert world_dir("micro") == micro_world
    assert target.read_text() == original
    assert "exporting it again" in capsys.readouterr().err
    assert not list(micro_world.parent.glob(f".{micro_world.name}.*[!k]"))  # no temporary left (lock kept)


def test_garbled_base_checksums_are_a_reason_to_rebuild(tmp_path, monkeypatch):
    from kore_bench import base, cache

    monkeypatch.setenv("KORE_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "world_code_fingerprint", lambda: "fixed")
    builds = []

    def fake_build(world, arch, seed, target, console):
        tmp = cache.new_temp_dir(target.parent, target.name)
        (tmp / "model").mkdir()
        (tmp / "model" / "weights.bin").write_bytes(b"\x01" * 64)
        cache.publish(tmp, target)
        builds.append(target)

    monkeypatch.setattr(base, "_build", fake_build)
    base.build_base("micro")
    (builds[0] / "checksums.json").write_text("{garbage")
    assert "unreadable" in cache.verify(builds[0])
    stale = builds[0].parent / f".{builds[0].name}.abc123"  # a killed build's temporary
    stale.mkdir()
    base.build_base("micro")
    assert len(builds) == 2 and cache.verify(builds[0]) is None and not stale.exists()


# -- kill -9 at named points --------------------------------------------------------------------------
RUN_ARGS = ["--methods", "lora", "--world", "micro", "--seeds", "0", "--limit", "4", "--set", "lora.steps=5",
            "--no-progress"]


def _killed_at(point: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    """Run ``python -m kore_bench ARGV`` (or ``python -c ARGV[1]``) until it kills itself at ``point``."""
    cmd = [sys.executable, *argv] if argv[0] == "-c" else [sys.executable, "-m", "kore_bench", *argv]
    proc = subprocess.run(cmd, env={**os.environ, **(env or {}), integrity.FAULT_ENV: point},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]


@pytest.mark.parametrize("point", ["after-train-save", "after-artifact-seal", "after-samples", "after-result",
                                   "manifest-write"])
def test_kill_at_a_named_point_resumes_to_identical_numbers(trained, tmp_path, point):
    out = tmp_path / "killed"
    _killed_at(point, ["run", *RUN_ARGS, "--output", str(out)])
    assert not (out / "scores.csv").exists()
    killed = json.loads((out / "manifest.json").read_text())
    assert "finished" not in killed["history"][-1]
    evaluating = [k for k, u in killed["units"].items() if u["status"] == "evaluating"]
    if point == "after-result":  # a finished unit (sealed result and samples) left marked "evaluating"
        assert evaluating == ["base/seed0/world-new"]
        result = out / evaluating[0] / "result.json"
        assert integrity.read_sealed(result, files=("samples.jsonl",))[1] is None
        written = result.stat().st_mtime_ns
    run(_cfg(out))
    assert _scores(out) == _scores(trained)
    assert not list(out.rglob(".*.tmp"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(u["status"] == "done" for u in manifest["units"].values())
    assert "finished" in manifest["history"][-1]
    for artifact in out.glob("*/seed*/artifact"):
        assert integrity.verify_dir(artifact) is None
    if point == "after-result":
        assert result.stat().st_mtime_ns == written  # kept as it was, not evaluated again


def test_kill_during_world_export_is_cleaned_and_exported_again(micro_world, tmp_path, monkeypatch):
    from kore_bench.cache import world_dir

    cache = tmp_path / "cache"
    _killed_at("world-export", ["-c", "from kore_bench.cache import world_dir; world_dir('micro')"],
               {"KORE_BENCH_CACHE": str(cache)})
    worlds = cache / "worlds"
    assert not (worlds / micro_world.name).exists()
    assert [p for p in worlds.iterdir() if p.is_dir()]  # the killed export's temporary
    monkeypatch.setenv("KORE_BENCH_CACHE", str(cache))
    again = world_dir("micro")
    assert again == worlds / micro_world.name and integrity.verify_dir(again) is None
    assert integrity.dir_checksums(again) == integrity.dir_checksums(micro_world)  # the same world
    assert sorted(p.name for p in worlds.iterdir()) == sorted([again.name, f".{again.name}.lock"])


FAST_BASE = """
from kore_bench import base, train
base.pretrain_vision = lambda model, processor, world, recipe: {}
train.train_model = lambda *a, **k: train.TrainInfo(steps=0, seconds=0.0, final_loss=0.0, trainable_params=0)
"""


def test_kill_before_base_publish_is_cleaned_and_built_again(tmp_path, monkeypatch):
    """A base build (training stubbed: the point is the publish) killed with its temporary complete."""
    from kore_bench import base, train

    monkeypatch.setenv("KORE_BENCH_CACHE", str(tmp_path / "cache"))
    target = base.base_dir("micro")
    _killed_at("base-publish", ["-c", FAST_BASE + "base.build_base('micro')"])
    temps = [p for p in target.parent.iterdir() if p.is_dir()]
    assert not target.exists() and len(temps) == 1 and temps[0].name.startswith(f".{target.name}.")
    killed_model = {k: v for k, v in integrity.dir_checksums(temps[0]).items() if k.startswith("model/")}
    monkeypatch.setattr(base, "pretrain_vision", lambda model, processor, world, recipe: {})
    monkeypatch.setattr(train, "train_model", lambda *a, **k: train.TrainInfo(0, 0.0, 0.0, 0))
    base.build_base("micro")
    assert integrity.verify_dir(target) is None
    rebuilt = {k: v for k, v in integrity.dir_checksums(target).items() if k.startswith("model/")}
    assert rebuilt == killed_model  # the same model, built again from scratch
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([target.name, f".{target.name}.lock"])


# -- temporaries a killed process left behind ---------------------------------------------------------
def test_stale_temporaries_in_a_run_directory_are_removed_by_the_next_run(trained, tmp_path):
    out = _copy(trained, tmp_path)
    planted = [out / ".manifest.json.k1ll3d.tmp", out / "lora" / "seed0" / "world-new" / ".samples.jsonl.x9.tmp"]
    for p in planted:
        p.write_text("half-writ")
    results = _mtimes(out, "*/seed0/*/result.json")
    run(_cfg(out))
    assert not any(p.exists() for p in planted) and not list(out.rglob(".*.tmp"))
    assert _mtimes(out, "*/seed0/*/result.json") == results  # nothing recomputed
    assert _scores(out) == _scores(trained)


def test_stale_base_build_temporary_is_removed_unless_a_build_is_running(micro_base, tmp_path):
    """Beside an intact base (a killed --force rebuild): removed when no process holds the build lock,
    left alone while one does (it is that build's work in progress)."""
    import fcntl

    from kore_bench.base import build_base

    target = Path(micro_base.path).parent
    stale = target.parent / f".{target.name}.k1ll3d"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "weights.bin").write_bytes(b"\x00" * 64)
    try:
        with open(target.parent / f".{target.name}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process is building it
            assert build_base("micro") == micro_base
            assert stale.exists()
        assert build_base("micro") == micro_base
        assert not stale.exists()
        assert integrity.verify_dir(target) is None
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def test_edited_evaluation_data_reruns_only_the_affected_units(trained, tmp_path, capsys):
    """The key holds sample content: editing one retention answer reruns that suite's evaluation."""
    out = _copy(trained, tmp_path)
    cfg = _cfg(out)
    from kore_bench import runner

    real = runner._evaluation_data

    def edited(suite, c):
        value = real(suite, c)
        return value + "-edited" if suite.name == "world-retention" else value

    runner._evaluation_data = edited
    try:
        new = _mtimes(out, "*/seed0/world-new/result.json")
        run(cfg)
    finally:
        runner._evaluation_data = real
    assert "rerun lora/seed0/world-retention: data changed" in capsys.readouterr().err
    assert _mtimes(out, "*/seed0/world-new/result.json") == new


# -- bad input: one line, exit 2, before any work ------------------------------------------------------
BAD = [
    (["--limit", "-1"], "--limit -1"),
    (["--limit", "0"], "--limit 0"),
    (["--seeds", ","], "--seeds"),
    (["--seeds", "0,a"], "'a' is not a non-negative integer"),
    (["--set", "lora.rank=0"], "lora.rank=0: must be ≥ 1"),
    (["--set", "lora.lr=abc"], "expected a number"),
    (["--set", "lora.lr=nan"], "finite"),
    (["--set", "lora.lr=inf"], "finite"),
    (["--set", "lora.lr=-1"], "must be > 0"),
    (["--set", "lora.steps=2.5"], "expected an integer"),
    (["--set", "lora.steps=-5"], "must be ≥ 1"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--dev-share", "-0.2"], "--dev-share -0.2"),
    (["--model", "/nonexistent"], "--model /nonexistent"),
    (["--device", "gpu7"], "--device 'gpu7'"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_option_exits_2_with_one_line(extra, message, tmp_path, capsys):
    code, text = _cli(["run", "--methods", "lora", "--world", "micro", "--output", str(tmp_path / "o"), *extra],
                      capsys)
    assert code == 2, text
    assert message in text and "Traceback" not in text
    assert not (tmp_path / "o").exists()


def test_output_that_is_a_file_or_under_one_exits_2(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for target, message in ((f, "is a file"), (f / "sub", "is under the file")):
        code, text = _cli(["run", "--methods", "lora", "--world", "micro", "--output", str(target)], capsys)
        assert code == 2 and message in text


@pytest.mark.parametrize("content,message", [
    ("", "empty file"),
    ("suite: s\nrole: retention\ntasks:\n  - task: t\n    source: {loader: jsonl, path: x.jsonl}\n"
     "    metrics: [no_such_metric]\n", "unknown metric 'no_such_metric'"),
])
def test_bad_suite_yaml_exits_2(content, message, tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(content)
    code, text = _cli(["ls", "suites", "--include-path", str(tmp_path)], capsys)
    assert code == 2 and message in text


@pytest.mark.parametrize("source,message", [("raise RuntimeError('boom')\n", "RuntimeError: boom"),
                                            ("def broken(:\n", "SyntaxError")])
def test_plugin_that_does_not_import_exits_2(source, message, tmp_path, capsys):
    (tmp_path / "plugin.py").write_text(source)
    code, text = _cli(["ls", "methods", "--include-path", str(tmp_path)], capsys)
    assert code == 2 and message in text and "plugin.py" in text


@pytest.mark.parametrize("command", ["table", "compare"])
def test_table_and_compare_on_a_missing_run_exit_2(command, tmp_path, capsys):
    code, text = _cli([command, str(tmp_path / "nonexistent")], capsys)
    assert code == 2 and "no such run directory" in text


def test_bad_data_files_are_named_by_prepare(tmp_path):
    from kore_bench.data import DataError, load_tsv
    from kore_bench.validate import samples_readable

    tsv = tmp_path / "t.tsv"
    tsv.write_text("index\tquestion\timage\n1\tq?\taGVsbG8=\n")
    with pytest.raises(DataError, match="missing column"):
        load_tsv(tsv)
    import base64

    cell = base64.b64encode(b"not an image " * 10).decode()  # valid base64 (> 64 chars), not an image
    tsv.write_text(f"index\tquestion\tanswer\timage\n1\tq?\ta\t{cell}\n")
    samples, _ = load_tsv(tsv)
    with pytest.raises(DataError, match=r"t\.tsv:2"):
        samples_readable(samples, "test")


# -- concurrency --------------------------------------------------------------------------------------
def test_two_processes_building_one_base_build_it_once(tmp_path, monkeypatch):
    """The second build_base waits on the first one's lock, then uses what it published."""
    import io
    import threading
    import time

    from rich.console import Console

    from kore_bench import base, cache

    monkeypatch.setenv("KORE_BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "world_code_fingerprint", lambda: "fixed")
    builds, building, release = [], threading.Event(), threading.Event()

    def slow_build(world, arch, seed, target, console):
        builds.append(threading.current_thread().name)
        building.set()
        release.wait(30)
        tmp = cache.new_temp_dir(target.parent, target.name)
        (tmp / "model").mkdir()
        (tmp / "model" / "weights.bin").write_bytes(b"\x01" * 64)
        cache.publish(tmp, target)

    monkeypatch.setattr(base, "_build", slow_build)
    refs, log = {}, io.StringIO()
    first = threading.Thread(name="first", target=lambda: refs.update(first=base.build_base("micro")))
    second = threading.Thread(name="second", target=lambda: refs.update(
        second=base.build_base("micro", console=Console(file=log))))
    first.start()
    assert building.wait(30)
    second.start()
    deadline = time.monotonic() + 30
    while "being built by another process; waiting" not in log.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "waiting" in log.getvalue()
    release.set()
    first.join(30)
    second.join(30)
    assert builds == ["first"]
    assert refs["first"] == refs["second"] and cache.verify(Path(refs["first"].path).parent) is None


# -- what a leaderboard row may mix ----------------------------------------------------------------------
def _unit(run_dir: Path, method: str, seed: int, suite: str, value: float) -> None:
    from kore_bench.store import RunDir, Unit

    if suite == "world-new":
        role, tasks = "new_knowledge", {"world-new": {
            "category": "new_knowledge", "primary_metric": "cem", "metrics": {"cem": value, "f1": value},
            "chance": None, "higher_is_better": {"cem": True, "f1": True}, "n": 4}}
    else:
        role, tasks = "retention", {"ocr": {
            "category": "ocr", "primary_metric": "exact_match", "metrics": {"exact_match": value},
            "chance": None, "higher_is_better": {"exact_match": True}, "n": 4}}
    records = [{"task": next(iter(tasks)), "id": str(i), "scores": {"x": value}} for i in range(4)]
    RunDir(run_dir).write_unit(Unit(method, seed, suite), {"unit": {"method": method, "seed": seed, "suite": suite},
                                                           "role": role, "split": "test", "tasks": tasks}, records)


def test_a_seed_missing_a_suite_is_left_out_of_its_row_not_mixed(tmp_path):
    from kore_bench.report import leaderboard

    for method, seed, new, ret in (("base", 0, 10.0, 80.0), ("lora", 0, 50.0, 60.0), ("lora", 1, 10.0, None)):
        _unit(tmp_path, method, seed, "world-new", new)
        if ret is not None:
            _unit(tmp_path, method, seed, "world-retention", ret)
    row = leaderboard(tmp_path).set_index("method").loc["lora"]
    assert row["K.A"] == pytest.approx(50.0) and row["K.R"] == pytest.approx(60.0)  # seed 0 alone, both
    assert row["seeds"] == 1
    assert row["status"] == "incomplete: seed 1 lacks world-retention"


# -- bad data: exit 2 naming the file and line, before the base is built ---------------------------------
def _png(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)


@pytest.mark.parametrize("case", ["corrupt image", "empty file"])
def test_unreadable_evaluation_data_exits_2_before_any_work(case, micro_world, tmp_path, capsys, monkeypatch):
    from kore_bench import runner

    data, suites = tmp_path / "data", tmp_path / "suites"
    data.mkdir()
    suites.mkdir()
    _png(data / "good.png")
    (data / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)  # a PNG signature, then junk
    lines = [{"id": "a", "question": "q?", "answer": "x", "image": "good.png"},
             {"id": "b", "question": "q?", "answer": "y", "image": "bad.png"}]
    (data / "eval.jsonl").write_text("" if case == "empty file" else "".join(json.dumps(r) + "\n" for r in lines))
    (suites / "mine.yaml").write_text(
        "suite: mine\nrole: retention\ntasks:\n  - task: t\n    category: ocr\n"
        f"    source: {{loader: jsonl, path: {data / 'eval.jsonl'}}}\n    output_type: generate\n"
        "    metrics: [exact_match]\n")
    monkeypatch.setattr(runner, "build_base", lambda *a, **k: pytest.fail("the base is built before the data "
                                                                          "is checked"))
    out = tmp_path / "out"
    code, text = _cli(["run", "--methods", "lora", "--world", "micro", "--retention", "mine", "--include-path",
                       str(suites), "--output", str(out), "--no-progress"], capsys)
    assert code == 2 and "Traceback" not in text
    if case == "corrupt image":
        assert f"{data / 'eval.jsonl'}:2" in text and "bad.png" in text
    else:
        assert "no test samples" in text and str(data / "eval.jsonl") in text
    assert not out.exists()


def test_missing_evoke_conversations_field_is_named_with_file_and_record(tmp_path, capsys):
    evoke = tmp_path / "evoke"
    evoke.mkdir()
    _png(evoke / "a.png")
    good = {"id": 1, "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nWho?"},
                                                        {"from": "gpt", "value": "Ada."}]}
    (evoke / "evoke_injection_data.json").write_text(json.dumps([good, {"id": 2, "image": "a.png"}]))
    (evoke / "evoke_evaluation_data.jsonl").write_text(json.dumps(
        {"question_id": 1, "image": "a.png", "text": "Who?", "answer": "Ada"}) + "\n")
    code, text = _cli(["run", "--methods", "lora", "--world", "micro", "--new", f"evoke:{evoke}",
                       "--output", str(tmp_path / "out"), "--no-progress"], capsys)
    assert code == 2 and "Traceback" not in text
    assert "missing required field 'conversations'" in text  # as EVOKE names it (not 'messages')
    assert f"{evoke / 'evoke_injection_data.json'}[1]" in text  # the file and the record


# -- stored files that parse but are not what they claim ---------------------------------------------------
@pytest.mark.parametrize("resealed", [True, False], ids=["resealed", "checksum-stale"])
def test_result_without_tasks_is_refused_by_table_and_recomputed_by_run(trained, tmp_path, capsys, resealed):
    out = _copy(trained, tmp_path)
    path = out / "lora" / "seed0" / "world-retention" / "result.json"
    rec = json.loads(path.read_text())
    del rec["tasks"]
    path.write_text(json.dumps(integrity.seal_record(rec) if resealed else rec))
    code, text = _cli(["table", str(out)], capsys)
    assert code == 2 and "Traceback" not in text and "lora/seed0/world-retention" in text
    assert ("not a unit result (no tasks)" if resealed else "fails its checksum") in text
    assert "--methods lora" in text, text  # the command that recomputes it
    others = _mtimes(out, "lora/seed0/world-new/result.json")
    run(_cfg(out))
    assert "tasks" in json.loads(path.read_text())
    assert _mtimes(out, "lora/seed0/world-new/result.json") == others
    assert _scores(out) == _scores(trained)


def test_garbled_samples_file_under_compare_exits_2_with_a_message(trained, tmp_path, capsys):
    out = _copy(trained, tmp_path)
    unit = out / "lora" / "seed0" / "world-retention"
    lines = (unit / "samples.jsonl").read_text().splitlines(keepends=True)
    lines[2] = "{garbled\n"
    (unit / "samples.jsonl").write_text("".join(lines))
    code, text = _cli(["compare", str(out), "--baseline", "base"], capsys)
    assert code == 2 and "Traceback" not in text and "samples.jsonl fails its checksum" in text
    # a result written before results were sealed has no checksum to catch it: the line is named
    rec = json.loads((unit / "result.json").read_text())
    del rec["checksum"], rec["files"]
    (unit / "result.json").write_text(json.dumps(rec))
    code, text = _cli(["compare", str(out), "--baseline", "base"], capsys)
    assert code == 2 and "Traceback" not in text and f"{unit / 'samples.jsonl'}:3: not a per-sample record" in text


def test_report_on_a_garbled_manifest_says_provenance_unknown(trained, tmp_path, capsys):
    out = _copy(trained, tmp_path)
    (out / "manifest.json").write_text("{not json")
    code, text = _cli(["report", str(out)], capsys)
    assert code == 0, text
    html = (out / "report.html").read_text()
    assert "manifest.json is unreadable" in html and "lora" in html


# -- a corrupt unit of a method this invocation does not run --------------------------------------------
def test_corrupt_unit_of_another_method_is_named_with_the_command_that_recomputes_it(trained, tmp_path, capsys):
    out = _copy(trained, tmp_path)
    other = ["--methods", "full-ft", "--set", "full-ft.steps=1", *RUN_ARGS[2:]]
    code, text = _cli(["run", *other, "--output", str(out)], capsys)
    assert code == 0, text
    good = _scores(out)
    path = out / "full-ft" / "seed0" / "world-retention" / "result.json"
    rec = json.loads(path.read_text())
    task = next(iter(rec["tasks"]))
    rec["tasks"][task]["metrics"][rec["tasks"][task]["primary_metric"]] = 99.0
    path.write_text(json.dumps(rec))

    code, text = _cli(["run", *RUN_ARGS, "--output", str(out)], capsys)  # lora only: skipped, full-ft untouched
    assert code == 1 and "Traceback" not in text
    assert "full-ft/seed0/world-retention" in text and "--methods full-ft --seeds 0" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert "finished" in manifest["history"][-1]
    assert list(manifest["history"][-1]["unreadable"]) == ["full-ft/seed0/world-retention"]
    assert not any(line.startswith("full-ft,0,world-retention") for line in _scores(out))  # left out
    board = (out / "leaderboard.csv").read_text()
    assert "unreadable: seed0/world-retention left out" in board

    code, text = _cli(["run", *other, "--output", str(out)], capsys)  # the command it named
    assert code == 0, text
    assert _scores(out) == good
    assert not json.loads((out / "manifest.json").read_text())["unreadable"]


# -- tune and frontier: a failing trial is exit 1 -----------------------------------------------------------
BROKEN = '''
from kore_bench.method import register_method
from kore_bench.methods.lora import LoRA


@register_method("broken-{command}")  # a name per test: plugins register into one process-wide registry
class BrokenLoRA(LoRA):
    def train(self, ctx):
        raise RuntimeError("deliberately broken")
'''


@pytest.mark.parametrize("command", [["tune", "--budget", "1"], ["frontier", "--points", "1"]],
                         ids=["tune", "frontier"])
def test_tune_and_frontier_exit_1_when_a_trial_fails(command, micro_base, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text(BROKEN.replace("{command}", command[0]))
    out = tmp_path / "study"
    code, text = _cli([*command, "--methods", f"broken-{command[0]}", "--world", "micro", "--limit", "2",
                       "--include-path", str(plugins), "--output", str(out), "--no-progress"], capsys)
    assert code == 1 and "Traceback" not in text, text
    assert f"broken-{command[0]}/seed0: RuntimeError: deliberately broken" in text
    failed = json.loads((out / "manifest.json").read_text())["failed"]
    assert [k.split(": ")[1] for k in failed] == [f"broken-{command[0]}/seed0"]
