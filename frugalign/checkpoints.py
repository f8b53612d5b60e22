"""Training checkpoints: written atomically, restored exactly (parameters, optimiser, scheduler,
SPA's margin window, every process's RNG), so a resumed run reproduces the loss curve.

``checkpoints/step-N`` holds only the trainable tensors (``trainable.safetensors``;
the LoRA adapter or the full model), the optimiser and scheduler state, a JSON
state file and one RNG file per process; older checkpoints beyond
``keep_checkpoints`` are removed once a newer one is complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from .data import write_json
from .errors import ConfigError


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
