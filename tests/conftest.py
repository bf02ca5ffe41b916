"""Shared fixtures: an isolated cache, the micro world and the micro kore-tiny base (built once)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Micro models are too small to gain from intra-op threads, and on a busy machine extra threads
# make backward passes many times slower; subprocesses (CLI tests) inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory) -> Path:
    """Every test session gets its own kore-bench cache (worlds, bases)."""
    root = tmp_path_factory.mktemp("kore-cache")
    os.environ["KORE_BENCH_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def micro_world(isolated_cache) -> Path:
    from kore_bench.cache import world_dir

    return world_dir("micro")


@pytest.fixture(scope="session")
def micro_base(micro_world):
    from kore_bench.base import build_base

    return build_base("micro", "llava")


@pytest.fixture(scope="session")
def micro_new_suite(micro_world):
    """The micro world's new-knowledge suite (its facts reach augmenters through it)."""
    from kore_bench.suites import load_suites

    return load_suites()["world-new"].with_variables(world=str(micro_world))
