#!/usr/bin/env bash
# Set up kore-bench in ./.venv: the CPU torch wheel first (an unpinned torch pulls a multi-GB CUDA
# build), then the package with its test extra. No torchvision: PyPI's build breaks beside this torch.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet torch==2.13.0
.venv/bin/pip install --quiet -e ".[test]"
.venv/bin/python -c "import torch, kore_bench; print('kore-bench', kore_bench.__version__, '| torch', torch.__version__)"
