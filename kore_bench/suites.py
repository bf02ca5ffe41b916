"""Declarative suites (YAML in ``tasks/`` or a user's folder) and the data they name.

A suite file::

    suite: world-retention          # CLI key
    role: retention                 # new_knowledge | retention
    train: {loader: conversations, path: "{world}/train/old_knowledge.json", image_root: "{world}"}
    tasks:
      - task: counting
        category: counting          # retention category (K.R averages categories)
        source: {loader: jsonl, path: "{world}/retention/counting.jsonl", image_root: "{world}"}
        output_type: generate       # an evaluator backend: generate | multiple_choice |
                                    # multiple_choice_loglikelihood | yes_no (kore_bench.evaluate.backends)
        metrics: [exact_match]      # the first one is the task's primary metric
        generation: {max_new_tokens: 8}

``facts`` (optional) is a folder with the structured facts of the knowledge (the exported world's
``world.json``): what a knowledge augmenter reads, reaching it through the suite.
``train`` is the suite's training pool: the knowledge to inject for a ``new_knowledge`` suite, the
old-knowledge pool (replay, calibration) for a ``retention`` suite. Paths may use ``{world}`` (the
exported embedded world) and ``{path}`` (given by the user as ``--new evoke:/data/EVOKE``). A task's
source may also name an lm-evaluation-harness task (``{loader: lm_eval, task: arc_easy}``), which
lm-eval itself scores (:mod:`kore_bench.evaluate.lm_eval_tasks`), or a VLMEvalKit benchmark
(``{loader: vlmeval, path: "{path}", benchmark: MME}``), scored as VLMEvalKit (:mod:`kore_bench.vlmeval`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import data as loaders
from .evaluate import lm_eval_tasks
from . import vlmeval
from .data import Sample
from .errors import DataError, KoreBenchError, UnknownNameError

ROLES = ("new_knowledge", "retention")
EVOKE_IMAGES = ("evaluation", "injection")  # an evoke source's `image:`: the question's own, or its injection image


@dataclass
class TaskSpec:
    name: str
    category: str
    source: dict[str, str]
    metrics: list[str]
    output_type: str = "generate"
    split: str = "test"
    generation: dict[str, Any] = field(default_factory=lambda: {"max_new_tokens": 32})
    prompt: str | None = None  # e.g. "{question}\nBe brief." applied to the last user turn

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]


@dataclass
class Suite:
    name: str
    role: str
    tasks: list[TaskSpec]
    train: dict[str, str] | None = None
    description: str = ""
    file: Path | None = None
    facts: str | None = None  # folder of the knowledge's structured facts (world.json), for augmenters
    variables: dict[str, str] = field(default_factory=dict)
    dev_share: float = 0.0  # seeded dev hold-out of tasks without a dev split (data.hold_out_dev)
    dev_seed: int = 0

    def with_variables(self, **variables: str) -> "Suite":
        """A copy whose ``{name}`` placeholders will be filled from ``variables``."""
        return dataclasses.replace(self, variables={**self.variables, **{k: str(v) for k, v in variables.items()}})

    def with_dev_holdout(self, share: float, seed: int) -> "Suite":
        """A copy that holds out ``share`` of each dev-less task's test samples as its dev split."""
        return dataclasses.replace(self, dev_share=share, dev_seed=seed)

    @property
    def needs(self) -> set[str]:
        """Placeholders used by the suite's sources (``world``, ``path`` ...)."""
        import string

        specs = [t.source for t in self.tasks] + ([self.train] if self.train else [])
        specs += [{"facts": self.facts}] if self.facts else []
        return {f for s in specs for v in s.values() for _, f, _, _ in string.Formatter().parse(str(v)) if f}

    def _fill(self, spec: dict[str, str]) -> dict[str, str]:
        missing = self.needs - set(self.variables)
        if missing:
            hint = " (give it as --new NAME:/path or --retention NAME:/path)" if "path" in missing else ""
            raise KoreBenchError(f"suite {self.name!r} needs {', '.join(sorted(missing))}{hint}")
        return {k: str(v).format(**self.variables) for k, v in spec.items()}

    def facts_dir(self) -> Path | None:
        """The folder of the suite's structured facts (placeholders filled), or None."""
        return Path(self._fill({"facts": self.facts})["facts"]) if self.facts else None

    def train_samples(self) -> list[Sample]:
        return load_source(self._fill(self.train)) if self.train else []

    def task_samples(self, task: TaskSpec, split: str | None = None) -> list[Sample]:
        samples = self._split_samples(task)
        samples = loaders.select_split(samples, split or task.split)
        if task.prompt:
            samples = [_apply_prompt(s, task.prompt) for s in samples]
        return samples

    def source(self, task: TaskSpec) -> dict[str, str]:
        """The task's source spec with the suite's placeholders filled in."""
        return self._fill(task.source)

    def _split_samples(self, task: TaskSpec) -> list[Sample]:
        samples = load_source(self.source(task))
        return loaders.hold_out_dev(samples, self.dev_share, self.dev_seed, f"{self.name}/{task.name}")

    def split_summary(self) -> dict[str, dict[str, Any]]:
        """Per task: dev and test sample counts and where the dev split comes from (recorded in
        manifests, so a reader knows which items selection saw)."""
        out = {}
        for task in self.tasks:
            samples = self._split_samples(task)
            held = [s for s in samples if s.meta.get("dev_holdout")]
            out[task.name] = {
                "dev": sum(s.meta.get("split") == "dev" for s in samples),
                "test": sum(s.meta.get("split", "test") == "test" for s in samples),
                "dev_source": ("held out" if held else "data") if any(s.meta.get("split") == "dev" for s in samples)
                else "none",
            }
            if held:
                out[task.name].update(dev_share=self.dev_share, dev_seed=self.dev_seed,
                                      dev_ids_sha=hashlib.sha256("\n".join(sorted(s.id for s in held)).encode()
                                                                 ).hexdigest()[:16])
        return out


def _apply_prompt(sample: Sample, template: str) -> Sample:
    messages = [dict(m) for m in sample.messages]
    last = messages[-1]
    head, sep, question = last["content"].rpartition(loaders.IMAGE_TOKEN + "\n")
    last["content"] = head + sep + template.format(question=question)
    return Sample(sample.id, messages, sample.image, sample.answer, sample.choices, sample.category,
                  sample.source, sample.meta)


_CACHE: dict[tuple, list[Sample]] = {}


def load_source(spec: dict[str, str]) -> list[Sample]:
    """Samples named by a source spec ``{loader, path, part?, image?, image_root?}`` (cached per process).

    ``part`` (evoke): ``train`` or ``eval``; ``image`` (evoke eval): one of :data:`EVOKE_IMAGES`;
    ``{loader: lm_eval, task, ...}``: an lm-eval task's documents (:mod:`kore_bench.evaluate.lm_eval_tasks`).
    The cache is keyed by the state (size, mtime) of the record files too: a file edited between two
    runs of one process is read again, so its samples and the unit keys made of them are current."""
    key = (tuple(sorted(spec.items())), _files_state(spec.get("path")))
    if key not in _CACHE:
        _CACHE[key] = _load_uncached(spec)
    return _CACHE[key]


def _files_state(path: str | None) -> tuple:
    """(name, size, mtime) of a source's record file, or of the record files of its folder (EVOKE:
    the folder and its ``json/``). Images need none: they are read, and hashed, by path and mtime."""
    if not path:
        return ()
    p = Path(path)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for d in (p, p / "json") if d.is_dir() for f in d.iterdir()
                       if f.suffix in (".json", ".jsonl", ".tsv") and f.is_file())
    else:
        return ()
    return tuple((f.name, (st := f.stat()).st_size, st.st_mtime_ns) for f in files)


def _load_uncached(spec: dict[str, str]) -> list[Sample]:
    if lm_eval_tasks.is_lm_eval(spec):
        return lm_eval_tasks.load_samples(spec)
    if vlmeval.is_vlmeval(spec):
        return vlmeval.load_source(spec)
    kind, path = spec.get("loader"), spec.get("path")
    if not kind or not path:
        raise KoreBenchError(f"a suite source needs 'loader' and 'path': {spec}")
    image_root = spec.get("image_root")
    if kind == "evoke":
        train, evaluation, _ = loaders.load_evoke(Path(path))
        if spec.get("part", "eval") == "train":
            return train
        image = spec.get("image", "evaluation")
        if image not in EVOKE_IMAGES:
            raise UnknownNameError("evoke image choice", image, EVOKE_IMAGES)
        return loaders.on_injection_images(evaluation, train) if image == "injection" else evaluation
    if kind == "conversations":
        return loaders.load_conversations(Path(path), image_root)[0]
    if kind == "jsonl":
        return loaders.load_jsonl(Path(path), image_root)[0]
    if kind == "tsv":
        return loaders.load_tsv(Path(path))[0]
    raise UnknownNameError("loader", kind, ["evoke", "conversations", "jsonl", "tsv", lm_eval_tasks.LOADER, vlmeval.LOADER])


def samples_fingerprint(samples: list[Sample]) -> str:
    """A content hash of samples (text, answers, image identities) for unit fingerprints."""
    h = hashlib.sha256()
    for s in samples:
        h.update(repr((s.id, s.messages, s.answer, s.choices, s.image.key if s.image else None)).encode())
    return h.hexdigest()[:16]


def parse_suite(raw: dict[str, Any], file: Path | None = None) -> Suite:
    """Validate one suite definition; errors name the file and the field."""
    where = str(file) if file else "<suite>"
    if not isinstance(raw, dict):
        raise DataError(f"{where}: {'empty file' if raw is None else 'expected a mapping'}; a suite needs "
                        "suite, role and tasks")
    for key in ("suite", "role", "tasks"):
        if key not in raw:
            raise DataError(f"{where}: missing field {key!r}")
    if raw["role"] not in ROLES:
        raise DataError(f"{where}: role must be one of {ROLES}, not {raw['role']!r}")
    tasks = []
    for i, t in enumerate(raw["tasks"]):
        try:
            spec = TaskSpec(
                name=t["task"], category=t.get("category", t["task"]), source=t["source"],
                metrics=list(t["metrics"]), output_type=t.get("output_type", "generate"),
                split=t.get("split", "test"), generation=t.get("generation", {"max_new_tokens": 32}),
                prompt=t.get("prompt"),
            )
        except (KeyError, TypeError) as e:
            raise DataError(f"{where}: task #{i + 1} is missing or has a bad field: {e}") from e
        from .evaluate.backends import BACKENDS

        lm_eval = lm_eval_tasks.is_lm_eval(spec.source)
        foreign = sorted({"output_type", "generation", "prompt"} & set(t)) if lm_eval else []
        if foreign:
            raise DataError(f"{where}: task {spec.name!r} is an lm-eval task, which brings its own prompt, "
                            f"output type and generation settings; remove {', '.join(foreign)}")
        if lm_eval:
            spec.output_type = lm_eval_tasks.LOADER
        elif vlmeval.is_vlmeval(spec.source):
            spec.output_type = vlmeval.LOADER
            _check_vlmeval_metrics(spec, where)
        elif spec.output_type not in BACKENDS or spec.output_type in (lm_eval_tasks.LOADER, vlmeval.LOADER):
            types = [n for n in BACKENDS.names() if n not in (lm_eval_tasks.LOADER, vlmeval.LOADER)]
            raise DataError(f"{where}: task {spec.name!r}: output_type must be one of {', '.join(types)}, "
                            f"not {spec.output_type!r}")
        else:
            _check_metrics(spec, raw["role"], where)
        tasks.append(spec)
    return Suite(raw["suite"], raw["role"], tasks, raw.get("train"), raw.get("description", ""), file,
                 facts=raw.get("facts"))


def _check_vlmeval_metrics(spec: TaskSpec, where: str) -> None:
    """A VLMEvalKit benchmark reports its own metrics (VLMEvalKit's names): each asked must be one."""
    try:
        bench = vlmeval.get_benchmark(spec.source.get("benchmark", ""))
    except KoreBenchError as e:
        raise DataError(f"{where}: task {spec.name!r}: {e}") from None
    for name in spec.metrics:
        if name not in bench.metrics:
            raise DataError(f"{where}: task {spec.name!r}: {UnknownNameError(f'metric of {bench.name}', name, bench.metrics)}")


def _check_metrics(spec: TaskSpec, role: str, where: str) -> None:
    """Every metric is registered; a retention task's primary metric is higher-is-better (K.R)."""
    from .evaluate.metrics import check_retention_metric, get_metric

    for name in spec.metrics:
        try:
            get_metric(name)
        except UnknownNameError as e:
            raise DataError(f"{where}: task {spec.name!r}: {e}") from None
    if role == "retention" and spec.metrics:
        check_retention_metric(spec.primary_metric, get_metric(spec.primary_metric).higher_is_better,
                               f"{where}: task {spec.name!r}")


def load_suites(include_paths: list[Path | str] = ()) -> dict[str, Suite]:
    """Every suite from the built-in ``tasks/`` and the user's folders (later ones override)."""
    suites: dict[str, Suite] = {}
    import kore_bench.tasks as builtin

    for folder in [Path(builtin.__file__).parent, *map(Path, include_paths)]:
        if not folder.is_dir():
            raise KoreBenchError(f"--include-path {folder}: not a directory")
        for file in sorted(folder.glob("*.yaml")):
            try:
                raw = yaml.safe_load(file.read_text())
            except yaml.YAMLError as e:
                raise DataError(f"{file}: invalid YAML: {e}") from e
            suite = parse_suite(raw, file)
            suites[suite.name] = suite
    return suites


def resolve_suite(ref: str, suites: dict[str, Suite], role: str) -> Suite:
    """``NAME`` or ``NAME:/path`` → the suite, checked for its role."""
    name, _, path = ref.partition(":")
    if name not in suites:
        raise UnknownNameError("suite", name, suites)
    suite = suites[name]
    if suite.role != role:
        raise KoreBenchError(f"suite {name!r} has role {suite.role!r}, expected {role!r}")
    return suite.with_variables(path=path) if path else suite
