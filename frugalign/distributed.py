"""Data-parallel generation and scoring across processes (``accelerate launch``).

Every process calls the same function with the *whole* input; each takes
the shard ``rank::world`` (strided, so long and short prompts spread evenly),
runs it, and the results are gathered back into the original order on every
process. Without a launcher (``WORLD_SIZE`` unset or 1) the functions are a
plain call, so the same code runs on a laptop and on eight GPUs:

    accelerate launch --num_processes 2 --cpu my_script.py     # CPU, gloo
    accelerate launch --num_processes 8 my_script.py           # GPUs, NCCL

Determinism: each request gets its global index as its seeding key, and the
``fast`` and ``vllm`` backends seed every sample from ``(seed, key, sample)``,
so the output is the same for any number of processes. Plain
``transformers`` generation seeds per batch, so with sampling its outputs
depend on the sharding (a warning says so). Scores are sums of float
log-probs and can differ between shardings in the last bits only (batches
are packed differently).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .generate import GenerationRequest, GenerationSettings
from .generate import generate_pool as _generate_pool
from .records import PromptItem


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_context() -> DistContext:
    """This process's place in an ``accelerate launch`` (or ``torchrun``) job; (0, 1) alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    import torch
    from accelerate import PartialState  # sets up the process group (gloo on CPU, NCCL on GPU)

    # accelerate only picks gloo (MULTI_CPU) when told it runs on CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    return DistContext(state.process_index, state.num_processes, state.local_process_index)


def shutdown() -> None:
    """Tear down the process group, if a launch made one, before the process exits.

    Left to interpreter exit, gloo's worker threads are sometimes destroyed
    while still joinable and the process aborts ("terminate called without an
    active exception"), failing a run that had finished.
    """
    import sys

    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def process_device(device: str, ctx: DistContext) -> str:
    """This process's device: under a multi-process launch ``cuda`` is one GPU per process."""
    return f"cuda:{ctx.local_rank}" if ctx.world > 1 and device == "cuda" else device


def process_threads(threads: int, device: str, ctx: DistContext) -> int:
    """Torch threads for this process: on CPU under a multi-process launch, the cores split between processes."""
    if ctx.world > 1 and not device.startswith("cuda") and not threads:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world))
        return max(1, (os.cpu_count() or 1) // local)   # no oversubscription across processes
    return threads


def shard_indices(n: int, ctx: DistContext) -> list[int]:
    """Indices of the items this process handles."""
    return list(range(ctx.rank, n, ctx.world))


def gather_in_order(n: int, indices: Sequence[int], values: Sequence[Any], ctx: DistContext) -> list:
    """Every process's ``(indices, values)`` put back into one list of length ``n``."""
    if ctx.world == 1:
        parts = [(list(indices), list(values))]
    else:
        import torch.distributed as dist

        parts = [None] * ctx.world
        dist.all_gather_object(parts, (list(indices), list(values)))
    out: list = [None] * n
    for idx, vals in parts:
        for i, v in zip(idx, vals):
            out[i] = v
    missing = [i for i, v in enumerate(out) if v is None]
    if missing:
        raise RuntimeError(f"data-parallel gather lost items {missing[:5]}")
    return out


def map_sharded(fn: Callable[[list], list], items: Sequence, ctx: DistContext | None = None) -> list:
    """Apply a batch function to this process's shard and gather all results in order."""
    ctx = ctx or dist_context()
    idx = shard_indices(len(items), ctx)
    local = fn([items[i] for i in idx]) if idx else []
    if len(local) != len(idx):
        raise RuntimeError(f"shard function returned {len(local)} results for {len(idx)} items")
    return gather_in_order(len(items), idx, local, ctx)


def generate(backend, requests: Sequence[GenerationRequest], settings: GenerationSettings,
             ctx: DistContext | None = None) -> list[list[str]]:
    """``backend.generate`` over all processes; the same result on every process.

    Requests without a ``key`` get their global index, so per-prompt-seeded
    backends sample the same responses for any number of processes.
    """
    ctx = ctx or dist_context()
    settings.validate()
    if ctx.world > 1 and settings.temperature > 0 and not getattr(backend, "per_prompt_seeding", False):
        warnings.warn(f"{type(backend).__name__} seeds per batch: sampled outputs depend on the "
                      "number of processes; use the fast or vllm backend for sharding-independent "
                      "samples", stacklevel=2)
    # Keys fix each prompt's seed to its global position, whatever shard it lands in.
    keyed = [r if r.key is not None else replace(r, key=i) for i, r in enumerate(requests)]
    if not keyed:
        return backend.generate(keyed, settings)     # the backend's own empty-input error
    return map_sharded(lambda part: backend.generate(part, settings), keyed, ctx)


def generate_pool(backend, items: Sequence[PromptItem], settings: GenerationSettings,
                  ctx: DistContext | None = None) -> list[PromptItem]:
    """:func:`frugalign.generate.generate_pool` with the prompts spread over all processes."""
    ctx = ctx or dist_context()

    class _Sharded:  # a backend view whose generate() runs data-parallel
        per_prompt_seeding = getattr(backend, "per_prompt_seeding", False)

        def generate(self, requests, s):
            return generate(backend, requests, s, ctx)

    return _generate_pool(_Sharded(), items, settings)


def score(scorer, items: Sequence, ctx: DistContext | None = None, **score_options) -> list:
    """``scorer.score(items, **score_options)`` over all processes, results in input order.

    Works with :class:`~frugalign.logprobs.LogProbScorer` and the vLLM backend's ``score``.
    """
    from .logprobs import as_score_items

    return map_sharded(lambda part: scorer.score(part, **score_options), as_score_items(items), ctx)
