"""Data-parallel check run by tests/test_distributed.py under ``accelerate launch``.

    CUDA_VISIBLE_DEVICES= python -m accelerate.commands.launch --multi_gpu --num_processes 2 \
        tests/dp_script.py OUT.json

Every process builds the same tiny model, generates and scores through
:mod:`frugalign.distributed`; rank 0 writes the gathered results to OUT.json.
``compute()`` is also called in-process by the test for the 1-process answer.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

PROMPTS = ["Write a poem about the sea.", "Paris is", "def add(a, b):", "x",
           "Sure! Here is a list: first item", "The quick brown fox", "I cannot help with that"]


def compute(ctx=None) -> dict:
    import torch
    from conftest import build_model, build_tokenizer

    from frugalign import distributed
    from frugalign.backends.fast_cpu import FastBackend
    from frugalign.generate import GenerationRequest, GenerationSettings
    from frugalign.logprobs import LogProbScorer

    torch.set_num_threads(1)
    tok = build_tokenizer()
    model = build_model(tok, seed=0)
    reqs = [GenerationRequest(p) for p in PROMPTS]
    sampled = GenerationSettings(n=2, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=5, batch_size=3)
    greedy = GenerationSettings(n=1, temperature=0.0, max_new_tokens=12, batch_size=4)
    backend = FastBackend(model, tok, progress=False)
    out = {"sampled": distributed.generate(backend, reqs, sampled, ctx),
           "greedy": distributed.generate(backend, reqs, greedy, ctx)}
    items = [(p, r) for p, rs in zip(PROMPTS, out["sampled"]) for r in rs if r.strip()]
    scores = distributed.score(LogProbScorer(model, tok, progress=False), items, ctx)
    out["scores"] = [s.logprob for s in scores]
    return out


def main() -> int:
    from frugalign.distributed import dist_context, shutdown

    ctx = dist_context()
    result = compute(ctx)
    if ctx.is_main:
        result["world"] = ctx.world
        with open(sys.argv[1], "w") as f:
            json.dump(result, f)
    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
