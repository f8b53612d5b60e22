"""The real vLLM engine (CPU build) on the embedded default, run by ``make test-vllm`` in .venv-vllm.

Never skipped: without vLLM these tests fail (the main suite does not collect them,
see tests/conftest.py). One engine is loaded for the whole session (about 50 s).
"""

from __future__ import annotations

import os

import pytest

# In-process engine core (no spawned worker, so no __main__ guard is needed) and a small KV cache.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODEL = "smollm2-135m-instruct"
MAX_MODEL_LEN = 1024


@pytest.fixture(scope="session")
def engine():
    from frugalign.backends.vllm_backend import VLLMBackend

    return VLLMBackend.from_model(MODEL, dtype="float32", enforce_eager=True, max_model_len=MAX_MODEL_LEN)


@pytest.fixture(scope="session")
def reference():
    """The transformers model and tokenizer in float32: what the vLLM engine must agree with."""
    from frugalign.models import load_model

    return load_model(MODEL, dtype="float32")
