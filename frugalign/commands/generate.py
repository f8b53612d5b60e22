"""``frugalign generate``: sample N responses per prompt of a pool or prompt file.

Under ``accelerate launch`` with several processes each process generates a
shard of the prompts and rank 0 writes the whole pool, in input order. The
settings (:class:`frugalign.generate.GenerateConfig`) live with generation.
"""

from __future__ import annotations

from ..config import add_config_arguments, build_config
from ..errors import ConfigError
from ..generate import GenerateConfig


def register(sub) -> None:
    p = sub.add_parser("generate", help="sample N responses per prompt",
                       description="Sample N responses per prompt and write a pool file.")
    add_config_arguments(p, GenerateConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = build_config(GenerateConfig, args)
    from ..backends import open_backend
    from ..data import read_pool, write_records
    from ..distributed import dist_context, generate_pool, process_device, process_threads
    from ..models import load_model

    items = read_pool(cfg.input)
    if not items:
        raise ConfigError(f"{cfg.input}: no prompts to generate for")
    ctx = dist_context()
    device = process_device(cfg.device, ctx)
    threads = process_threads(cfg.threads, device, ctx)
    # vLLM is tried before any model is loaded: a missing extra or GPU is a one-line error at once.
    backend = open_backend(cfg.backend, lambda: load_model(cfg.model, dtype=cfg.dtype, device=device),
                           model_spec=cfg.model, dtype=cfg.dtype, progress=cfg.progress and ctx.is_main,
                           threads=threads or None, seed=cfg.seed)
    pool = generate_pool(backend, items, cfg.sampling(), ctx)
    if not ctx.is_main:
        return 0
    write_records(cfg.output, pool)
    empty = sum(it.meta.get("empty_responses", 0) for it in pool)
    print(f"wrote {len(pool)} prompts × {cfg.n} responses to {cfg.output}"
          + (f" ({empty} empty samples marked)" if empty else "")
          + (f" from {ctx.world} processes" if ctx.world > 1 else ""))
    return 0
