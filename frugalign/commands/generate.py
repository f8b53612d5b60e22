"""``frugalign generate``: sample N responses per prompt of a pool or prompt file."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import add_config_arguments, build_config
from ..errors import ConfigError
from ..models import DEFAULT_MODEL


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
    batch_size: int = 16
    dtype: str = "float32"
    device: str = "cpu"
    backend: str = "transformers"
    progress: bool = True

    def validate(self) -> None:
        if not self.input or not self.output:
            raise ConfigError("generate needs input=... and output=...")
        if self.backend != "transformers":
            raise ConfigError(f"unknown generation backend {self.backend!r}; available: transformers")


def register(sub) -> None:
    p = sub.add_parser("generate", help="sample N responses per prompt",
                       description="Sample N responses per prompt and write a pool file.")
    add_config_arguments(p, GenerateConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = build_config(GenerateConfig, args)
    from ..data import read_pool, write_records
    from ..generate import GenerationSettings, TransformersBackend, generate_pool
    from ..models import load_model

    items = read_pool(cfg.input)
    settings = GenerationSettings(cfg.n, cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.seed, cfg.batch_size)
    settings.validate()
    model, tok = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    pool = generate_pool(TransformersBackend(model, tok, progress=cfg.progress), items, settings)
    write_records(cfg.output, pool)
    empty = sum(it.meta.get("empty_responses", 0) for it in pool)
    print(f"wrote {len(pool)} prompts × {cfg.n} responses to {cfg.output}"
          + (f" ({empty} empty samples marked)" if empty else ""))
    return 0
