"""Probe (rejected path, kept for reproducibility): how far int8 activation quantization moves SmolLM2-135M.

Greedy float32 responses to 8 benchmark prompts; every nn.Linear replaced by FBGEMM's dynamic int8 linear
(per-row or per-tensor activation scale, 7-bit `reduce_range` or 8-bit, optionally SmoothQuant-style
per-channel smoothing calibrated on 8 other prompts); prints the mean per-token log-prob shift of the
float32 greedy tokens and the mean KL(float32 || int8) per token.

    FBGEMM_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/probes/int8_activation_quality.py
"""
import copy
import sys
import warnings

import torch

sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__file__), "..", ".."))
warnings.simplefilter("ignore")
from frugalign.generate import GenerationRequest, encode_requests
from frugalign.models import load_model

torch.backends.quantized.engine = "fbgemm"
model, tok = load_model("smollm2-135m-instruct")
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__file__), ".."))
from generation import PROMPTS


class Q(torch.nn.Module):
    def __init__(self, lin, per_row, rr):
        super().__init__()
        w = lin.weight.detach().float()
        s = (w.abs().amax(1) / 127).clamp_min(1e-12).double()
        q = torch.quantize_per_channel(w, s, torch.zeros_like(s, dtype=torch.long), 0, torch.qint8)
        self.p = torch.ops.quantized.linear_prepack(q, None); self.per_row, self.rr = per_row, rr
    def forward(self, x):
        x2 = x.reshape(-1, x.shape[-1])
        if self.per_row == "row":
            a = x2.abs().amax(-1, keepdim=True).clamp_min(1e-6)
            y = torch.ops.quantized.linear_dynamic(x2 / a, self.p, self.rr) * a
        elif self.per_row == "wonly":   # weight-only: dequantize
            y = x2 @ self.p.unpack()[0].dequantize().t()
        else:
            y = torch.ops.quantized.linear_dynamic(x2, self.p, self.rr)
        return y.reshape(*x.shape[:-1], -1)
def quant(m, mode, rr, which):
    m = copy.deepcopy(m)
    for name, mod in list(m.named_modules()):
        for cn, c in list(mod.named_children()):
            if type(c) is torch.nn.Linear and any(w in f"{name}.{cn}" for w in which):
                setattr(mod, cn, Q(c, mode, rr))
    return m
texts = []
for p in PROMPTS[:8]:
    ids = encode_requests(tok, [GenerationRequest(p)], 0, 2048)[0]
    out = model.generate(torch.tensor([ids]), max_new_tokens=48, do_sample=False)[0].tolist()
    texts.append((len(ids), out))
@torch.no_grad()
def shift(m):
    tot, kl, n = 0.0, 0.0, 0
    for plen, ids in texts:
        x = torch.tensor([ids])
        a = model(x).logits[0, plen - 1:-1].log_softmax(-1); b = m(x).logits[0, plen - 1:-1].log_softmax(-1)
        t = torch.tensor(ids[plen:])
        tot += float((b.gather(1, t[:, None]) - a.gather(1, t[:, None])).sum()); n += len(t)
        kl += float((a.exp() * (a - b)).sum())
    return tot / n, kl / n
for mode, rr, which in [("row", True, ["proj", "lm_head"]), ("row", False, ["proj", "lm_head"]),
                        ("tensor", True, ["proj", "lm_head"]), ("wonly", True, ["proj", "lm_head"]),
                        ("row", True, ["proj"]), ("row", True, ["mlp"]), ("row", True, ["self_attn"]),
                        ("row", True, ["down_proj"]), ("row", True, ["lm_head"])]:
    s, k = shift(quant(model, mode, rr, which))
    print(f"{mode:7s} rr={rr!s:5s} {','.join(which):22s} logprob shift {s:+.4f}  KL {k:.4f}", flush=True)
print("smoothquant")
# calibration: per-input-channel max |x| of every Linear, on other prompts' greedy text
acts = {}
def hook(name):
    def f(mod, inp, out):
        a = inp[0].detach().reshape(-1, inp[0].shape[-1]).abs().amax(0)
        acts[name] = torch.maximum(acts[name], a) if name in acts else a
    return f
hs = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if type(m) is torch.nn.Linear]
with torch.no_grad():
    for p in PROMPTS[16:24]:
        ids = encode_requests(tok, [GenerationRequest(p)], 0, 2048)[0]
        out = model.generate(torch.tensor([ids]), max_new_tokens=48, do_sample=False)
        model(out)
for h in hs: h.remove()
class SQ(Q):
    def __init__(self, lin, amax, alpha, rr):
        torch.nn.Module.__init__(self)
        w = lin.weight.detach().float()
        s = (amax.clamp_min(1e-5) ** alpha / w.abs().amax(0).clamp_min(1e-5) ** (1 - alpha)).clamp_min(1e-5)
        w = w * s
        sc = (w.abs().amax(1) / 127).clamp_min(1e-12).double()
        q = torch.quantize_per_channel(w, sc, torch.zeros_like(sc, dtype=torch.long), 0, torch.qint8)
        self.p = torch.ops.quantized.linear_prepack(q, None); self.rr = rr; self.inv = 1 / s
    def forward(self, x):
        x2 = x.reshape(-1, x.shape[-1]) * self.inv
        a = x2.abs().amax(-1, keepdim=True).clamp_min(1e-6)
        y = torch.ops.quantized.linear_dynamic(x2 / a, self.p, self.rr) * a
        return y.reshape(*x.shape[:-1], -1)
def squant(m, alpha, rr):
    m = copy.deepcopy(m)
    for name, mod in list(m.named_modules()):
        for cn, c in list(mod.named_children()):
            full = f"{name}.{cn}" if name else cn
            if type(c) is torch.nn.Linear:
                setattr(mod, cn, SQ(c, acts[full], alpha, rr))
    return m
for alpha in (0.3, 0.4, 0.5, 0.7, 0.85):
    for rr in (True, False):
        s, k = shift(squant(model, alpha, rr))
        print(f"SQ alpha={alpha} rr={rr!s:5s} logprob shift {s:+.4f}  KL {k:.4f}", flush=True)
