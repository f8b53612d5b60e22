"""Which precision to compute in: bf16 only where the hardware runs it natively *and* faster.

``precision=auto`` (the default of every command and preset) resolves once per
process and device:

1. **capability** — CUDA: ``torch.cuda.is_bf16_supported()``; CPU: oneDNN's
   native bf16 path (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``, i.e.
   AVX-512 BF16 or AMX). Without it bf16 matmuls fall back to a reference
   kernel: a LoRA DPO step measured ~28× slower than float32 on an AVX2-only
   EPYC.
2. **measurement** (CPU only) — a small matmul timed in both precisions; bf16
   is chosen only if it is at least ``MIN_SPEEDUP`` faster. The result is kept
   on disk (``$FRUGALIGN_CACHE/precision.json``, keyed by CPU model, ISA and
   torch version) so it is measured once per machine.

The choice is printed once. An explicit ``precision=bf16`` where bf16 is not
native warns once that it will be slow, and is honoured.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from functools import cache

import torch

PRECISIONS = ("auto", "float32", "bf16")
MIN_SPEEDUP = 1.2          # bf16 must beat float32 by this factor to be chosen
TORCH_DTYPES = {"float32": torch.float32, "bf16": torch.bfloat16}
_announced: set = set()


def check_precision(value: str) -> str:
    from .errors import ConfigError

    if value not in PRECISIONS:
        raise ConfigError(f"precision={value!r}: expected one of {', '.join(PRECISIONS)}")
    return value


def cpu_capability() -> str:
    """ATen's dispatch level (``AVX2``, ``AVX512``, ...)."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # very old torch
        return "unknown"


def _cpuinfo() -> tuple[str, list[str]]:
    """The CPU's model name and the flags that decide precision and speed, from /proc/cpuinfo."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return model, flags
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), model)
    have = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    return model, [x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if x in have]


def cpu_description() -> str:
    """The CPU model, ATen's ISA level and the flags that decide precision and speed (for reports)."""
    model, flags = _cpuinfo()
    return f"{model}, {torch.get_num_threads()} threads, {cpu_capability()} [{' '.join(flags)}]"


def native_bf16(device: str = "cpu") -> bool:
    """True when ``device`` has native bf16 matmuls."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cpu_key() -> str:
    return f"{_cpuinfo()[0]}|{cpu_capability()}|torch {torch.__version__}|threads {torch.get_num_threads()}"


def measure_bf16_speedup(size: int = 512, repeats: int = 8) -> float:
    """float32 time / bf16 time of a ``size``×``4·size`` by ``4·size``×``size`` matmul (median)."""
    def timed(dtype) -> float:
        a = torch.randn(size, 4 * size, dtype=dtype)
        b = torch.randn(4 * size, size, dtype=dtype)
        a @ b  # warm-up: kernel selection, packing
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            ts.append(time.perf_counter() - t0)
        return sorted(ts)[len(ts) // 2]

    return timed(torch.float32) / timed(torch.bfloat16)


def _cached_speedup() -> float:
    """The measured speed-up, read from / written to the on-disk cache."""
    from .data import cache_dir, write_json

    path, key = cache_dir() / "precision.json", _cpu_key()
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    if key in table:
        return float(table[key])
    speedup = measure_bf16_speedup()
    table[key] = round(speedup, 3)
    try:
        write_json(path, table)
    except OSError:  # a read-only cache only costs a re-measurement next time
        pass
    return speedup


@cache
def _decide(device: str) -> tuple[str, str]:
    """(precision, reason) for ``precision=auto`` on ``device`` (``cpu`` or ``cuda``)."""
    if not native_bf16(device):
        what = "the GPU" if device == "cuda" else f"this CPU ({cpu_capability()})"
        return "float32", f"{what} has no native bf16"
    if device == "cuda":
        return "bf16", "the GPU supports bf16"
    speedup = _cached_speedup()
    if speedup >= MIN_SPEEDUP:
        return "bf16", f"native bf16 on this CPU ({cpu_capability()}), matmul {speedup:.1f}x faster than float32"
    return "float32", f"native bf16 on this CPU ({cpu_capability()}) but only {speedup:.2f}x float32's matmul speed"


def _device_kind(device) -> str:
    name = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    return "cuda" if name.startswith("cuda") else "cpu"


def resolve_precision(precision: str, device=None, *, log=None) -> str:
    """``float32`` or ``bf16`` for a requested ``auto | float32 | bf16`` on ``device``.

    Prints the automatic choice (and a warning for slow explicit bf16) once per
    process and device, to ``log`` (default: standard error).
    """
    check_precision(precision)
    kind = _device_kind(device)
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    if precision == "auto":
        chosen, reason = _decide(kind)
        if ("auto", kind) not in _announced:
            _announced.add(("auto", kind))
            say(f"precision: {chosen} ({reason})")
        return chosen
    if precision == "bf16" and not native_bf16(kind) and ("slow", kind) not in _announced:
        _announced.add(("slow", kind))
        say(f"warning: precision=bf16 on {kind} without native bf16 ({cpu_capability()}): expect it to be "
            f"many times slower than float32 (use precision=auto)")
    return precision


def resolve_dtype_name(dtype: str, precision: str = "auto", device=None) -> str:
    """A model ``dtype`` setting (``auto`` follows ``precision``) as ``float32`` / ``bfloat16`` / ...."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if resolve_precision(precision, device) == "bf16" else "float32"


def autocast(precision: str, device):
    """bf16 autocast with float32 weights for a resolved ``precision=bf16``, else a no-op."""
    if precision == "auto":
        raise ValueError("resolve precision=auto (resolve_precision) before entering autocast")
    return torch.autocast(_device_kind(device), dtype=torch.bfloat16, enabled=precision == "bf16")
