"""A slot-based decoder for Llama-family models: the engine of the fast backend.

``model.generate`` keeps one growing KV cache per batch (a ``torch.cat`` per
layer and step), builds a fresh 4-D mask every step, and keeps computing rows
that have already finished. This runner instead owns a preallocated KV cache
of ``slots`` rows; every row has its own length, so a finished row's slot can
be handed to a new sequence at once (continuous batching), and every decode
step runs only rows that are still generating.

It reuses the model's own norms, rotary embedding and (with ``pack=False``)
projections, MLP and LM head, so that arithmetic is the model's, LoRA-wrapped
projections included; the cache and the attention call are its own and
mirror transformers' SDPA path (GQA packed for single-token decoding,
repeated K/V for prefill).

``pack=True`` (CPU, float32/bfloat16) is the speed path: the Q/K/V
projections become one matmul, gate and up another, and every weight is
pre-reordered once into oneDNN's blocked layout (what ``torch.compile``'s
weight freezing does, without the compile). On a small CPU this makes the
matmuls of a decode step 1.5-2.6x faster than ``F.linear`` (MKL), which is
where a decode step spends its time. The summation order changes, so
float32 logits differ from the model's in the last bits (greedy agreement is
measured in the benchmark); plain ``nn.Linear`` modules only: a LoRA-wrapped
layer keeps its own modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def unsupported_reason(model) -> str | None:
    """Why the runner cannot drive ``model`` (None when it can)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    if cfg.model_type not in SUPPORTED_TYPES:
        return f"model type {cfg.model_type!r} is not one of {SUPPORTED_TYPES}"
    body = getattr(base, "model", None)
    if body is None or not hasattr(body, "layers") or not hasattr(body, "rotary_emb"):
        return "unexpected module layout (no model.layers / rotary_emb)"
    window = getattr(cfg, "sliding_window", None) if getattr(cfg, "use_sliding_window", True) else None
    if window and window < (getattr(cfg, "max_position_embeddings", 0) or 0):
        return "sliding-window attention is not implemented in the fast runner"
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type") == "dynamic":
        return "dynamic RoPE scaling depends on the batch's length"
    return None


def can_pack(device: torch.device, dtype: torch.dtype) -> bool:
    """oneDNN prepacked linear weights exist for CPU float32 and (with AVX-512 BF16) bfloat16."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if not hasattr(torch.ops.mkldnn, "_reorder_linear_weight"):
        return False
    return dtype == torch.float32 or (dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class PackedLinear:
    """Several ``nn.Linear`` sharing an input, fused into one prepacked oneDNN matmul."""

    def __init__(self, linears: list[torch.nn.Linear], batch_hint: int = 16):
        w = torch.cat([m.weight.detach() for m in linears], 0)
        self.splits = [m.out_features for m in linears]
        if any(m.bias is not None for m in linears):
            self.bias = torch.cat([m.bias.detach() if m.bias is not None else
                                   torch.zeros(m.out_features, dtype=w.dtype) for m in linears])
        else:
            self.bias = None
        self.weight = torch.ops.mkldnn._reorder_linear_weight(w, batch_hint)
        self.out = w.shape[0]

    def __call__(self, x: torch.Tensor):
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), self.weight, self.bias, "none", [], "")
        y = y.reshape(*x.shape[:-1], self.out)
        return y.split(self.splits, -1) if len(self.splits) > 1 else y


def _plain_linears(*mods) -> bool:
    return all(type(m) is torch.nn.Linear for m in mods)


class _LayerOps:
    """The matmul parts of one decoder layer: the model's modules, or fused prepacked ones."""

    def __init__(self, layer, pack: bool):
        a, mlp = layer.self_attn, layer.mlp
        self.a, self.mlp = a, mlp
        self.packed = pack and _plain_linears(a.q_proj, a.k_proj, a.v_proj, a.o_proj) \
            and _plain_linears(getattr(mlp, "gate_proj", None), getattr(mlp, "up_proj", None),
                               getattr(mlp, "down_proj", None))
        if self.packed:
            self.qkv_w = PackedLinear([a.q_proj, a.k_proj, a.v_proj])
            self.o_w = PackedLinear([a.o_proj])
            self.gate_up_w = PackedLinear([mlp.gate_proj, mlp.up_proj])
            self.down_w = PackedLinear([mlp.down_proj])

    def qkv(self, h):
        if self.packed:
            return self.qkv_w(h)
        return self.a.q_proj(h), self.a.k_proj(h), self.a.v_proj(h)

    def o(self, x):
        return self.o_w(x) if self.packed else self.a.o_proj(x)

    def ffn(self, h):
        if not self.packed:
            return self.mlp(h)
        gate, up = self.gate_up_w(h)
        return self.down_w(self.mlp.act_fn(gate) * up)


@dataclass
class SlotCache:
    """Preallocated keys/values: one ``[slots, kv_heads, length, head_dim]`` pair per layer."""
    k: list[torch.Tensor]
    v: list[torch.Tensor]

    def move(self, src: list[int], dst: list[int]) -> None:
        """Copy rows ``src`` to rows ``dst`` (to close holes so live rows form a prefix)."""
        if not src:
            return
        s = torch.tensor(src, device=self.k[0].device)
        d = torch.tensor(dst, device=self.k[0].device)
        for t in self.k + self.v:
            t[d] = t.index_select(0, s)


class DecoderRunner:
    """Prefill and single-token decode steps on a :class:`SlotCache`."""

    def __init__(self, model, *, pack: bool | None = None):
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(reason)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.body, self.lm_head, cfg = base.model, base.get_output_embeddings(), base.config
        self.layers = list(self.body.layers)
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.scaling = self.layers[0].self_attn.scaling
        weight = self.body.embed_tokens.weight
        self.device, self.dtype = weight.device, weight.dtype
        usable = can_pack(self.device, self.dtype)
        self.pack = usable if pack is None else (pack and usable)
        self.ops = [_LayerOps(layer, self.pack) for layer in self.layers]
        head = self.lm_head
        self.head = PackedLinear([head]) if self.pack and _plain_linears(head) else head

    def new_cache(self, slots: int, length: int) -> SlotCache:
        """Zeroed K/V for ``slots`` sequences of up to ``length`` tokens (prompt + response)."""
        shape = (slots, self.n_kv, length, self.head_dim)
        make = lambda: torch.zeros(shape, dtype=self.dtype, device=self.device)  # noqa: E731
        return SlotCache([make() for _ in self.layers], [make() for _ in self.layers])

    # ------------------------------------------------------------ shared pieces
    def _qkv(self, ops: _LayerOps, h: torch.Tensor, cos, sin):
        """Projections (+ Qwen3's per-head norms) and RoPE, as the model computes them."""
        b, s, _ = h.shape
        q, k, v = ops.qkv(h)
        q, k = q.reshape(b, s, -1, self.head_dim), k.reshape(b, s, -1, self.head_dim)
        if hasattr(ops.a, "q_norm"):
            q, k = ops.a.q_norm(q), ops.a.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = v.reshape(b, s, -1, self.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        return q, k, v

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(self.body.norm(h)).float()

    # ------------------------------------------------------------ prefill
    @torch.inference_mode()
    def prefill(self, cache: SlotCache, prompts: list[list[int]], slots: list[list[int]],
                past: SlotCache | None = None) -> torch.Tensor:
        """Run ``prompts`` once each and copy their K/V into every slot listed for them.

        Returns next-token logits (float32), one row per slot, in the order of
        the flattened ``slots`` lists (prompt sharing: N samples, one prefill).
        ``past`` (a one-row cache, see :meth:`encode_prefix`) holds the K/V of
        tokens shared by every prompt: ``prompts`` are then what follows them,
        and only that is computed (prefix caching).
        """
        start = past.k[0].shape[2] if past is not None else 0
        lens = torch.tensor([len(p) for p in prompts], device=self.device)
        width = int(lens.max())
        ids = torch.zeros((len(prompts), width), dtype=torch.long, device=self.device)
        for r, p in enumerate(prompts):  # right padding: positions start at `start` in every row
            ids[r, :len(p)] = torch.tensor(p, device=self.device)
        valid = torch.arange(width, device=self.device)[None, :] < lens[:, None]
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        mask = (causal[None] & valid[:, None, :])[:, None]          # [g, 1, S, S]
        if start:                                                    # the shared prefix is visible to all
            mask = torch.cat([mask.new_ones(len(prompts), 1, width, start), mask], -1)
        positions = torch.arange(start, start + width, device=self.device)[None].expand(len(prompts), -1)
        x = self.body.embed_tokens(ids)
        cos, sin = self.body.rotary_emb(x, positions)
        src = torch.tensor([g for g, ss in enumerate(slots) for _ in ss], device=self.device)
        dst = torch.tensor([s for ss in slots for s in ss], device=self.device)
        rep = self.n_heads // self.n_kv
        for li, (layer, ops) in enumerate(zip(self.layers, self.ops)):
            q, k, v = self._qkv(ops, layer.input_layernorm(x), cos, sin)
            cache.k[li][dst, :, start:start + width] = k.index_select(0, src)
            cache.v[li][dst, :, start:start + width] = v.index_select(0, src)
            if start:
                cache.k[li][dst, :, :start] = past.k[li]
                cache.v[li][dst, :, :start] = past.v[li]
                k = torch.cat([past.k[li].expand(len(prompts), -1, -1, -1), k], 2)
                v = torch.cat([past.v[li].expand(len(prompts), -1, -1, -1), v], 2)
            out = F.scaled_dot_product_attention(q, _repeat_kv(k, rep), _repeat_kv(v, rep),
                                                 attn_mask=mask, scale=self.scaling)
            x = x + ops.o(out.transpose(1, 2).reshape(len(prompts), width, -1))
            x = x + ops.ffn(layer.post_attention_layernorm(x))
        last = x[torch.arange(len(prompts), device=self.device), lens - 1]   # [g, hidden]
        return self._logits(last.index_select(0, src))

    def encode_prefix(self, tokens: list[int]) -> SlotCache:
        """The K/V of ``tokens`` alone, as the ``past`` of later :meth:`prefill` calls."""
        past = self.new_cache(1, len(tokens))
        self.prefill(past, [tokens], [[0]])
        return past

    # ------------------------------------------------------------ decode
    @torch.inference_mode()
    def decode(self, cache: SlotCache, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One step for cache rows ``0..b-1``: ``tokens[r]`` sits at ``positions[r]``.

        Returns float32 logits ``[b, vocab]``. Each row attends only to its own
        ``positions[r] + 1`` cached entries, so rows of any length share a step.
        """
        b = tokens.shape[0]
        length = int(positions.max()) + 1
        rows = torch.arange(b, device=self.device)
        mask = (torch.arange(length, device=self.device)[None, :] <= positions[:, None])[:, None, None, :]
        x = self.body.embed_tokens(tokens[:, None])
        cos, sin = self.body.rotary_emb(x, positions[:, None])
        rep = self.n_heads // self.n_kv
        for li, (layer, ops) in enumerate(zip(self.layers, self.ops)):
            q, k, v = self._qkv(ops, layer.input_layernorm(x), cos, sin)
            kc, vc = cache.k[li], cache.v[li]
            kc[rows, :, positions] = k[:, :, 0]
            vc[rows, :, positions] = v[:, :, 0]
            # Packed GQA: the `rep` query heads of a KV head act as `rep` query
            # positions, so K/V are never repeated (what transformers does too).
            qp = q.reshape(b, self.n_kv, rep, self.head_dim)
            out = F.scaled_dot_product_attention(qp, kc[:b, :, :length], vc[:b, :, :length],
                                                 attn_mask=mask, scale=self.scaling)
            x = x + ops.o(out.reshape(b, 1, -1))   # [b, kv, rep, d] is already head-major
            x = x + ops.ffn(layer.post_attention_layernorm(x))
        return self._logits(x[:, 0])


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _repeat_kv(x: torch.Tensor, rep: int) -> torch.Tensor:
    if rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, rep, s, d).reshape(b, h * rep, s, d)
