"""``frugalign generate``: sample N responses per prompt of a pool or prompt file.

Under ``accelerate launch`` with several processes each process generates a
shard of the prompts and rank 0 writes the whole pool, in input order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import add_config_arguments, build_config
from ..errors import ConfigError
from ..models import DEFAULT_MODEL

BACKEND_HELP = ("auto (vllm on a GPU with vllm installed, else fast) | fast (continuous batching, "
                "per-prompt seeds) | transformers (plain model.generate) | vllm (GPU: pip install frugalign[vllm]; "
                "CPU: scripts/setup-vllm.sh)")


@dataclass
class GenerateConfig:
    input: str = field(default="", metadata={"help": "prompts or pool (.jsonl/.json/.parquet): id, prompt[, system, domain]"})
    output: str = field(default="", metadata={"help": "pool file to write"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "embedded name, local dir, .gguf file or hub id"})
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
        from ..backends import BACKENDS

        if not self.input or not self.output:
            raise ConfigError("generate needs input=... and output=...")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown generation backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")


def register(sub) -> None:
    p = sub.add_parser("generate", help="sample N responses per prompt",
                       description="Sample N responses per prompt and write a pool file.")
    add_config_arguments(p, GenerateConfig)
    p.set_defaults(func=run)


def _process_settings(cfg: GenerateConfig, ctx) -> tuple[str, int]:
    """Device and thread count for this process of a (possibly multi-process) run."""
    import os

    device, threads = cfg.device, cfg.threads
    if ctx.world > 1 and device == "cuda":
        device = f"cuda:{ctx.local_rank}"        # one GPU per process
    if ctx.world > 1 and not device.startswith("cuda") and not threads:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world))
        threads = max(1, (os.cpu_count() or 1) // local)   # no oversubscription across processes
    return device, threads


def build_backend(cfg: GenerateConfig, device: str, threads: int):
    """The configured backend, loading only what it needs (vLLM loads its own weights)."""
    from ..backends import open_backend
    from ..models import load_model

    # vLLM is tried before any model is loaded: a missing extra or GPU is a one-line error at once.
    return open_backend(cfg.backend, lambda: load_model(cfg.model, dtype=cfg.dtype, device=device),
                        model_spec=cfg.model, dtype=cfg.dtype, progress=cfg.progress, threads=threads or None,
                        seed=cfg.seed)


def run(args) -> int:
    cfg = build_config(GenerateConfig, args)
    from ..data import read_pool, write_records
    from ..distributed import dist_context, generate_pool
    from ..generate import GenerationSettings

    items = read_pool(cfg.input)
    settings = GenerationSettings(cfg.n, cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.seed, cfg.batch_size)
    settings.validate()
    if not items:
        raise ConfigError(f"{cfg.input}: no prompts to generate for")
    ctx = dist_context()
    device, threads = _process_settings(cfg, ctx)
    if ctx.world > 1 and not ctx.is_main:
        cfg.progress = False
    backend = build_backend(cfg, device, threads)
    pool = generate_pool(backend, items, settings, ctx)
    if not ctx.is_main:
        return 0
    write_records(cfg.output, pool)
    empty = sum(it.meta.get("empty_responses", 0) for it in pool)
    print(f"wrote {len(pool)} prompts × {cfg.n} responses to {cfg.output}"
          + (f" ({empty} empty samples marked)" if empty else "")
          + (f" from {ctx.world} processes" if ctx.world > 1 else ""))
    return 0
