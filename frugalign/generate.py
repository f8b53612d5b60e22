"""Sample N responses per prompt.

A backend is anything with ``generate(requests, settings) -> list[list[str]]``
(:class:`GenerationBackend`); callers never see which engine runs. The
transformers backend here batches prompts by length, samples all N responses
of a prompt in one batch row group, stops each sequence at the model's
end-of-turn token, and is deterministic for a seed: each batch draws from a
generator seeded by (seed, index of its first prompt), so results do not
depend on what ran before.

Faster engines live in :mod:`frugalign.backends` (``get_backend(name, ...)``:
``fast`` for CPUs, ``vllm`` for GPUs) and share the helpers below: prompt
encoding with the context check, decoding up to the end-of-turn token, and
:func:`row_seed`, the per-(prompt, sample) seed that makes their sampling
independent of batching and of data-parallel sharding
(:mod:`frugalign.distributed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from tqdm.auto import tqdm

from .chat import end_of_turn_ids, render_prompt, template_adds_special_tokens
from .errors import ConfigError, ContextOverflowError
from .models import DEFAULT_MODEL
from .records import Prompt, PromptItem

EMPTY_RESPONSE = "(empty response)"
# The generation backends of frugalign.backends (named here so settings can check a name without importing them).
BACKENDS = ("transformers", "fast", "vllm", "auto")
BACKEND_HELP = ("auto (vllm on a GPU with vllm installed, else fast) | fast (continuous batching, "
                "per-prompt seeds) | transformers (plain model.generate) | vllm (GPU: pip install frugalign[vllm]; "
                "CPU: scripts/setup-vllm.sh)")


@dataclass
class GenerationSettings:
    n: int = 4
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 96
    seed: int = 0
    batch_size: int = 16          # sequences (prompts × n) per forward batch

    def validate(self) -> None:
        if self.n < 1:
            raise ConfigError(f"n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class GenerateConfig:
    """``frugalign generate``: sample N responses per prompt of a file, with a backend, on this process's device."""

    input: str = field(default="", metadata={"help": "prompts or pool (.jsonl/.json/.parquet): id, prompt[, system, domain]"})
    output: str = field(default="", metadata={"help": "pool file to write"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "embedded name, local dir, LoRA adapter dir, "
                                                                ".gguf file or hub id"})
    n: int = 4
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 96
    seed: int = 0
    batch_size: int = field(default=16, metadata={"help": "sequences decoded together (per process)"})
    dtype: str = field(default="auto", metadata={"help": "auto (bfloat16 only where the CPU/GPU runs it natively "
                                                         "and faster, else float32) | float32 | bfloat16 | float16"})
    device: str = "cpu"
    backend: str = field(default="auto", metadata={"help": BACKEND_HELP})
    threads: int = field(default=0, metadata={"help": "torch threads per process (0: torch's default; "
                                                      "under a multi-process launch on CPU: cores / processes)"})
    progress: bool = True

    def validate(self) -> None:
        if not self.input or not self.output:
            raise ConfigError("generate needs input=... and output=...")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown generation backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")
        self.sampling().validate()

    def sampling(self) -> GenerationSettings:
        return GenerationSettings(self.n, self.temperature, self.top_p, self.max_new_tokens, self.seed, self.batch_size)


@dataclass
class GenerationRequest:
    prompt: Prompt
    system: str | None = None
    # Stable identity for per-prompt seeding (backends that seed per prompt use
    # it instead of the position in the request list, so a shard of a larger
    # list samples exactly what the whole list would). None = the position.
    key: int | None = None


def request_keys(requests: Sequence[GenerationRequest]) -> list[int]:
    """Seeding key of each request: its ``key`` or, when unset, its position."""
    return [i if r.key is None else int(r.key) for i, r in enumerate(requests)]


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a bijection on 64-bit ints that scatters nearby inputs."""
    m = 2**64 - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def row_seed(seed: int, key: int, sample: int) -> int:
    """A 63-bit seed for sample ``sample`` of prompt ``key`` under ``seed``.

    It depends on nothing else, so sampling is independent of batching and
    sharding; nearby triples get unrelated generator streams.
    """
    m = 2**64 - 1
    h = _mix64(seed & m)
    h = _mix64(h ^ (key & m))
    return _mix64(h ^ (sample & m)) & (2**63 - 1)


def context_limit(model) -> int | None:
    """The model's context length, or None when the config does not say."""
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def encode_requests(tokenizer, requests: Sequence[GenerationRequest], max_new: int,
                    limit: int | None) -> list[list[int]]:
    """Token ids of each rendered prompt; a prompt that cannot fit ``max_new`` more tokens is an error."""
    if not requests:
        raise ConfigError("no prompts to generate for")
    texts = [render_prompt(tokenizer, r.prompt, r.system) for r in requests]
    ids = tokenizer(texts, add_special_tokens=template_adds_special_tokens(tokenizer))["input_ids"]
    for i, seq in enumerate(ids):
        if limit and len(seq) + max_new > limit:
            raise ContextOverflowError(f"prompt {i}: {len(seq)} tokens + max_new_tokens {max_new} "
                                       f"exceed the model context of {limit}")
    return [list(x) for x in ids]


def decode_response(tokenizer, tokens: Sequence[int], stop_ids: Sequence[int]) -> str:
    """Text of generated ``tokens`` up to (not including) the first end-of-turn id."""
    tokens = list(tokens)
    for k, t in enumerate(tokens):
        if t in stop_ids:
            tokens = tokens[:k]
            break
    return tokenizer.decode(tokens, skip_special_tokens=True).strip()


class GenerationBackend(Protocol):
    def generate(self, requests: Sequence[GenerationRequest],
                 settings: GenerationSettings) -> list[list[str]]: ...


class TransformersBackend:
    """Batched sampling with ``model.generate`` (left padding, KV cache).

    The reference implementation: every faster path is checked against it.
    Its sampled outputs depend on which prompts share a batch (one generator
    per batch); use the ``fast`` backend for per-prompt seeding.
    """

    per_prompt_seeding = False

    def __init__(self, model, tokenizer, *, progress: bool = True):
        self.model, self.tokenizer, self.progress = model, tokenizer, progress
        self.stop_ids = end_of_turn_ids(tokenizer)

    def _encode(self, requests: Sequence[GenerationRequest], max_new: int) -> list[list[int]]:
        return encode_requests(self.tokenizer, requests, max_new, context_limit(self.model))

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest],
                 settings: GenerationSettings) -> list[list[str]]:
        settings.validate()
        if not requests:
            raise ConfigError("no prompts to generate for")
        ids = self._encode(requests, settings.max_new_tokens)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch
        per_batch = max(1, settings.batch_size // settings.n)
        out: list[list[str]] = [[] for _ in requests]
        bar = tqdm(total=len(requests) * settings.n, desc="generating", unit="resp",
                   disable=not self.progress, leave=False)
        for b in range(0, len(order), per_batch):
            chunk = order[b:b + per_batch]
            texts = self._generate_batch([ids[i] for i in chunk], settings, seed_offset=b)
            for k, i in enumerate(chunk):
                out[i] = texts[k * settings.n:(k + 1) * settings.n]
            bar.update(len(chunk) * settings.n)
        bar.close()
        return out

    def _generate_batch(self, batch_ids: list[list[int]], s: GenerationSettings, seed_offset: int) -> list[str]:
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        width = max(len(x) for x in batch_ids)
        input_ids = torch.full((len(batch_ids), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for r, seq in enumerate(batch_ids):  # left padding: new tokens line up on the right
            input_ids[r, width - len(seq):] = torch.tensor(seq)
            mask[r, width - len(seq):] = 1
        sample = s.temperature > 0
        torch.manual_seed(s.seed * 1_000_003 + seed_offset)
        gen = self.model.generate(
            input_ids=input_ids.to(device), attention_mask=mask.to(device),
            do_sample=sample, temperature=s.temperature if sample else None,
            top_p=s.top_p if sample else None, top_k=0 if sample else None,
            max_new_tokens=s.max_new_tokens, num_return_sequences=s.n,
            eos_token_id=self.stop_ids, pad_token_id=pad,
        )
        new = gen[:, width:]
        return [self._decode(row) for row in new]

    def _decode(self, row: torch.Tensor) -> str:
        return decode_response(self.tokenizer, row.tolist(), self.stop_ids)


def generate_pool(backend: GenerationBackend, items: Sequence[PromptItem],
                  settings: GenerationSettings) -> list[PromptItem]:
    """Fill each pool item's ``responses`` with ``settings.n`` new samples (existing ones are kept)."""
    requests = [GenerationRequest(it.prompt, it.system) for it in items]
    samples = backend.generate(requests, settings)
    out = []
    for it, resp in zip(items, samples):
        # An empty sample would fail validation downstream; keep a visible, counted marker instead.
        cleaned = [r if r.strip() else EMPTY_RESPONSE for r in resp]
        meta = dict(it.meta)
        if EMPTY_RESPONSE in cleaned:
            meta["empty_responses"] = meta.get("empty_responses", 0) + cleaned.count(EMPTY_RESPONSE)
        out.append(PromptItem(it.id, it.prompt, it.system, it.domain, list(it.responses) + cleaned, meta))
    return out
