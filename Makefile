# make demo  — set up (first time) and run the main job on the embedded default, offline on CPU
# make test  — set up (first time) and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast test-vllm bench-scorer

setup:
	@scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/frugalign demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -rs --durations=12

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not integration"

# make test-vllm — the real vLLM engine (CPU build) through backend=vllm, in its own venv (~3.3 GB)
test-vllm:
	@scripts/setup-vllm.sh
	HF_HUB_OFFLINE=1 .venv-vllm/bin/python -m pytest -q -s -p no:cacheprovider tests/vllm_real

bench-scorer: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/scorer.py

# make lock  — re-resolve to the newest releases pyproject.toml allows (torch stays 2.13.0), run the
#              test suite against them in a temporary venv, and only if it passes rewrite constraints.txt
.PHONY: lock
lock:
	scripts/refresh-lock.sh
