# make demo  — set up (first time) and run the main job on the embedded default, offline on CPU
# make test  — set up (first time) and run the test suite
# make test-fast — the suite without the tests marked slow or integration (≤ 2 min on 2 cores)
# make lint  — ruff check (the version constraints.txt pins; settings in pyproject.toml)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint test-vllm bench-scorer

setup:
	@scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/frugalign demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -rs --durations=12

test-fast: setup
	@start=$$(date +%s); HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not integration" --durations=5; \
	status=$$?; echo "make test-fast: $$(( $$(date +%s) - start )) s"; exit $$status

lint: setup
	$(VENV)/bin/ruff check .

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
