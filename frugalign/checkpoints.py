"""What a training run writes: checkpoints, the metrics log and the final model.

Checkpoints are written atomically and restored exactly (parameters, optimiser, scheduler,
SPA's margin window, every process's RNG), so a resumed run reproduces the loss curve.

``checkpoints/step-N`` holds only the trainable tensors (``trainable.safetensors``;
the LoRA adapter or the full model), the optimiser and scheduler state, a JSON
state file and one RNG file per process; older checkpoints beyond
``keep_checkpoints`` are removed once a newer one is complete.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from .data import atomic_path, write_json
from .errors import ConfigError
from .models import quiet_weight_io


def trainable_tensors(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(run, step: int) -> None:
    """Write ``checkpoints/step-N`` atomically: a temp dir, renamed when complete."""
    from safetensors.torch import save_file

    acc, root = run.accelerator, Path(run.cfg.output_dir) / "checkpoints"
    final, tmp = root / f"step-{step:06d}", root / f".step-{step:06d}.tmp"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    torch.save(rng, tmp / f"rng-{acc.process_index}.pt")
    if acc.is_main_process:
        save_file(trainable_tensors(run.policy), str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict()}, tmp / "optim.pt")
        write_json(tmp / "state.json", {"step": step, "refine": run.refine.state_dict() if run.refine else None})
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(root.glob("step-*"))[:-max(1, run.cfg.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def load_checkpoint(run, path: Path) -> int:
    """Restore parameters, optimiser, scheduler, SPA window and RNG; return the step."""
    from safetensors.torch import load_file

    state = load_file(str(path / "trainable.safetensors"))
    missing = set(trainable_tensors(run.policy)) - set(state)
    if missing:
        raise ConfigError(f"{path}: checkpoint lacks {len(missing)} trainable tensors (e.g. {sorted(missing)[0]})")
    run.policy.load_state_dict(state, strict=False)
    optim = torch.load(path / "optim.pt", weights_only=False)
    run.optimizer.load_state_dict(optim["optimizer"])
    run.scheduler.load_state_dict(optim["scheduler"])
    meta = json.loads((path / "state.json").read_text())
    if run.refine is not None and meta.get("refine"):
        run.refine.load_state_dict(meta["refine"])
    rng_file = path / f"rng-{run.accelerator.process_index}.pt"
    if rng_file.exists():
        rng = torch.load(rng_file, weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
    return int(meta["step"])


def _logged_step(line: str) -> float:
    """The step of a metrics line; a line cut short by a crash counts as after every checkpoint."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


class MetricsLog:
    """metrics.jsonl (one line per optimiser step) and the same scalars in TensorBoard; main process only."""

    def __init__(self, cfg, start_step: int, enabled: bool):
        self.path, self.tb = (Path(cfg.output_dir) / "metrics.jsonl") if enabled else None, None
        if self.path and self.path.exists():  # a resumed run rewrites the steps after its checkpoint
            kept = [ln for ln in self.path.read_text().splitlines() if _logged_step(ln) <= start_step]
            with atomic_path(self.path) as tmp:
                Path(tmp).write_text("".join(ln + "\n" for ln in kept))
        if self.path and cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(cfg.output_dir) / "tensorboard"), purge_step=start_step + 1)

    def log(self, step: int, metrics: dict) -> None:
        if self.path:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
        for k, v in metrics.items():
            if self.tb is not None and isinstance(v, (int, float)):
                self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def save_final(run) -> Path:
    """Save a model plain transformers loads: merged weights (+ the LoRA adapter alone)."""
    return _save_loadable(run, Path(run.cfg.output_dir) / "final", run.policy)


def save_snapshot(run, step: int) -> Path:
    """``snapshots/step-N``: the model as it is at step N, for :func:`frugalign.models.load_model` (validation
    picks one).

    LoRA on a base model loaded by name saves the adapter alone, naming that base: megabytes instead of a
    merged copy of the model (1.6 GB for a 135M model's three candidates, 40 GB for a 7B's). Otherwise the
    model is saved whole; with LoRA it is merged on a copy, so training goes on and its numbers do not change."""
    target = Path(run.cfg.output_dir) / "snapshots" / f"step-{step:06d}"
    base = getattr(run.policy, "name_or_spec", None) if run.cfg.finetune == "lora" else None
    if base:  # a local path absolute, so the adapter loads from any working directory
        return _save_adapter(run, target, str(Path(base).expanduser().resolve()) if Path(base).expanduser().exists()
                             else base)
    return _save_loadable(run, target, run.policy, live=True)


def _save_adapter(run, target: Path, base: str) -> Path:
    """The live LoRA adapter (PEFT's layout), its ``base_model_name_or_path`` the spec the base was loaded from."""
    acc = run.accelerator
    tmp = target.with_name(f".{target.name}.tmp")
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        peft_config = run.policy.peft_config["default"]
        recorded, peft_config.base_model_name_or_path = peft_config.base_model_name_or_path, base
        try:
            with quiet_weight_io():
                run.policy.save_pretrained(str(tmp), save_embedding_layers=False)  # "auto" asks the hub about base
                run.tokenizer.save_pretrained(str(tmp))
        finally:
            peft_config.base_model_name_or_path = recorded
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    acc.wait_for_everyone()
    return target


def _save_loadable(run, final: Path, model, live: bool = False) -> Path:
    """``live``: the model goes on training (merge a copy, restore its config)."""
    import copy

    acc = run.accelerator
    tmp = final.with_name(f".{final.name}.tmp")
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        if live and run.cfg.finetune == "lora":  # one copy, on the main process only
            model = copy.deepcopy(model)
        use_cache = model.config.use_cache
        with quiet_weight_io():
            if run.cfg.finetune == "lora":
                model.save_pretrained(str(tmp / "adapter"))
                model = model.merge_and_unload()
            model.config.use_cache = True
            model.save_pretrained(str(tmp), safe_serialization=True)
            run.tokenizer.save_pretrained(str(tmp))
        if live:  # the live model keeps training without a KV cache
            model.config.use_cache = use_cache
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    acc.wait_for_everyone()
    return final
