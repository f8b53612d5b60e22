"""The model a benchmark times: an embedded name / dir / hub id, or random weights from a config dir."""

from __future__ import annotations

import torch


def load_for_benchmark(spec: str, dtype: str, device: str, random_init: bool = False):
    """``(model, tokenizer)``; ``random_init`` builds the model from ``spec``'s config (timing only, no weights)."""
    if not random_init:
        from frugalign.models import load_model

        return load_model(spec, dtype=dtype, device=device)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(spec)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)).to(device).eval()
    return model, AutoTokenizer.from_pretrained(spec)
