"""Preference pairs as packed rows, and the forward that turns them into log-probs.

Training needs, for each pair, Σ log π(y⁺|x) and Σ log π(y⁻|x) with gradients.
Instead of two padded sequences per pair (TRL), each pair is **one row**
``prompt | chosen | rejected``:

* the prompt is encoded once; rejected tokens attend to the prompt but not to
  the chosen tokens (a 4-D boolean mask) and their position ids restart right
  after the prompt, so each response sees exactly what it would see alone;
* the LM head runs only on the hidden states that predict response tokens, in
  chunks with a float32 log-sum-exp (rebuilt in backward when checkpointing),
  so logits never exist for the whole batch.

Tokenisation and response boundaries come from :meth:`LogProbScorer.encode`, so
training log-probs equal the scorer's (the precomputed reference) exactly.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .data import read_preference_records, read_training
from .errors import DataError
from .logprobs import LogProbScorer, ScoreItem, common_prefix, decoder_of, lm_logits, token_logprobs
from .records import TrainingRow
from .weights import row_weight

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")  # TRL's names for precomputed reference log-probs


@dataclass
class Example:
    """One pair as a packed row ``prompt | chosen | rejected`` plus its targets."""

    ids: list[int]
    positions: list[int]
    prefix: int               # shared prompt tokens
    split: int                # first token of the rejected suffix
    chosen: tuple[list[int], list[int]]     # (indices of predicting hidden states, target ids)
    rejected: tuple[list[int], list[int]]
    weight: float
    smoothing: float
    ref: tuple[float, float] | None = None  # reference log-probs (chosen, rejected)
    trunk: torch.Tensor | None = None       # cached input of the first trainable layer [len(ids), d]


def pack_pair(ec, er) -> tuple[list[int], list[int], int, int, tuple, tuple]:
    """Pack two :class:`~frugalign.logprobs.Encoded` items sharing a prompt into one row."""
    p = min(common_prefix([ec.ids, er.ids]), ec.start, er.start)
    split = len(ec.ids)
    ids = ec.ids + er.ids[p:]
    positions = list(range(split)) + list(range(p, len(er.ids)))

    def packed(u: int) -> int:  # rejected-sequence index -> packed index
        return u if u < p else split + u - p

    chosen = (list(range(ec.start - 1, ec.end - 1)), ec.ids[ec.start:ec.end])
    rejected = ([packed(t - 1) for t in range(er.start, er.end)], er.ids[er.start:er.end])
    return ids, positions, p, split, chosen, rejected


def read_table(path: str, weights: str = "column") -> tuple[list[TrainingRow], list[tuple[float, float] | None]]:
    """Validated training rows plus any stored reference log-probs (both columns, finite)."""
    records = read_preference_records(path)
    rows, refs = read_training(path, records), []
    for (where, rec), row in zip(records, rows):
        row_weight(row, weights, where)  # a missing confidence fails here, with its row
        ref = None
        if all(rec.get(c) is not None for c in REF_COLUMNS):
            values = [rec[c] for c in REF_COLUMNS]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise DataError(f"{where}: fields {REF_COLUMNS}: must be finite numbers, got {values}")
            ref = (float(values[0]), float(values[1]))
        refs.append(ref)
    return list(rows), refs


def build_examples(rows, tokenizer, policy, *, weights: str = "column", smoothing: float | None = None,
                   max_length: int = 1024, overflow: str = "error") -> tuple[list[Example], list[int], dict]:
    """Tokenise with the scorer's boundary logic; return examples, kept row indices, drop counts."""
    scorer = LogProbScorer(policy, tokenizer, max_length=max_length, overflow=overflow, progress=False)
    items = [ScoreItem(r.prompt, side, r.system) for r in rows for side in (r.chosen, r.rejected)]
    enc = scorer.encode(items)
    examples, kept, dropped = [], [], {"identical": 0, "overflow": 0}
    for i, row in enumerate(rows):
        ec, er = enc[2 * i], enc[2 * i + 1]
        if ec.skipped or er.skipped:
            dropped["overflow"] += 1
            continue
        if row.chosen == row.rejected:  # no preference signal, and z = 0 forever
            dropped["identical"] += 1
            continue
        weight = row_weight(row, weights)
        eps = row.label_smoothing if smoothing is None else smoothing
        examples.append(Example(*pack_pair(ec, er), weight=float(weight), smoothing=float(eps)))
        kept.append(i)
    if not examples:
        raise DataError(f"no trainable pairs left after filtering ({len(rows)} rows; dropped {dropped})")
    return examples, kept, dropped


def precompute_reference(examples, rows, tokenizer, ref_model, *, max_length: int, overflow: str,
                         progress: bool = True, autocast=None) -> None:
    """Fill ``ex.ref`` with the reference's log-probs, via the scorer (prefix-shared, no grad)."""
    scorer = LogProbScorer(ref_model, tokenizer, max_length=max_length, overflow=overflow,
                           progress=progress, desc="reference log-probs")
    items = [ScoreItem(r.prompt, side, r.system) for r in rows for side in (r.chosen, r.rejected)]
    with autocast() if autocast else torch.autocast("cpu", enabled=False):
        res = scorer.score(items)
    for i, ex in enumerate(examples):
        ex.ref = (res[2 * i].logprob, res[2 * i + 1].logprob)


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded packed rows, their 4-D attention mask and flat target indices.

    When every example carries a cached ``trunk``, ``batch["trunk"]`` holds them padded.
    """
    n, width = len(examples), max(len(e.ids) for e in examples)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    pos = torch.zeros((n, width), dtype=torch.long)
    q, k = torch.arange(width)[:, None], torch.arange(width)[None, :]
    mask = torch.zeros((n, 1, width, width), dtype=torch.bool)
    pred, tgt, seg = [], [], []
    for b, e in enumerate(examples):
        ids[b, :len(e.ids)] = torch.tensor(e.ids)
        pos[b, :len(e.ids)] = torch.tensor(e.positions)
        # causal, keys inside the row, and rejected queries never see chosen keys
        allowed = (k <= q) & (k < len(e.ids)) & ~((q >= e.split) & (k >= e.prefix) & (k < e.split))
        mask[b, 0] = allowed | torch.eye(width, dtype=torch.bool)  # pad queries see themselves: no NaN rows
        for side, (p_idx, t_ids) in enumerate((e.chosen, e.rejected)):
            pred += [b * width + j for j in p_idx]
            tgt += t_ids
            seg += [2 * b + side] * len(t_ids)
    lengths = torch.tensor([[len(e.chosen[1]), len(e.rejected[1])] for e in examples], dtype=torch.float32)
    batch = {"input_ids": ids, "position_ids": pos, "attention_mask": mask, "pred": torch.tensor(pred),
             "targets": torch.tensor(tgt), "seg": torch.tensor(seg), "lengths": lengths}
    if all(e.trunk is not None for e in examples):
        trunk = examples[0].trunk
        batch["trunk"] = torch.zeros((n, width, trunk.shape[-1]), dtype=trunk.dtype)
        for b, e in enumerate(examples):
            batch["trunk"][b, :len(e.ids)] = e.trunk
    return batch


class PairLogProbs(torch.nn.Module):
    """``model`` → summed response log-probs ``[B, 2]`` (chosen, rejected) of packed pairs.

    A module (not a function) so DistributedDataParallel can wrap the whole forward.
    With ``trunk_layer`` > 0 and a batch carrying ``trunk`` (the cached input of that
    layer), the forward starts there: the frozen layers below are not run again.
    """

    def __init__(self, model, chunk: int = 256, recompute: bool = True, trunk_layer: int = 0):
        super().__init__()
        self.model, self.chunk, self.recompute, self.trunk_layer = model, chunk, recompute, trunk_layer

    def hidden(self, batch) -> torch.Tensor:
        """Final hidden states at the positions that predict response tokens ``[N, d]``."""
        common = dict(position_ids=batch["position_ids"], attention_mask=batch["attention_mask"], use_cache=False)
        if self.trunk_layer and "trunk" in batch:
            with starting_at(self.model, self.trunk_layer) as decoder:
                out = decoder(inputs_embeds=batch["trunk"], **common)
        else:
            out = decoder_of(self.model)(input_ids=batch["input_ids"], **common)
        h = out.last_hidden_state
        return h.reshape(-1, h.shape[-1])[batch["pred"]]

    def sums(self, token_lp: torch.Tensor, batch) -> torch.Tensor:
        n = batch["input_ids"].shape[0]
        return torch.zeros(2 * n, dtype=torch.float32, device=token_lp.device).index_add(0, batch["seg"], token_lp).view(n, 2)

    def forward(self, batch):
        h = self.hidden(batch)
        lp = token_logprobs(self.model, h, batch["targets"], self.chunk, recompute=self.recompute)
        return self.sums(lp, batch), h.detach()


# --------------------------------------------------------------------------- the frozen trunk
# With LoRA on the upper layers only, the layers below the first adapter are frozen:
# their output for a given pair is the same in every epoch, so it is computed once
# and cached (Example.trunk), and later forwards (and backwards) start above it.


def decoder_layers(model) -> torch.nn.ModuleList | None:
    """The decoder's layer list when a forward may start at any layer, else None.

    Needs a ``layers`` ModuleList and layers of one kind (a mix of sliding-window and
    global layers is indexed by position inside the decoder's loop).
    """
    decoder = decoder_of(model)
    layers = getattr(decoder, "layers", None)
    kinds = getattr(getattr(decoder, "config", None), "layer_types", None)
    if not isinstance(layers, torch.nn.ModuleList) or (kinds and len(set(kinds)) > 1):
        return None
    return layers


def first_trainable_layer(model) -> int:
    """Index of the lowest decoder layer with a trainable parameter (0 when the trunk cannot be cached)."""
    layers = decoder_layers(model)
    if layers is None:
        return 0
    embeddings = decoder_of(model).get_input_embeddings()
    if any(p.requires_grad for p in embeddings.parameters()):
        return 0
    for i, layer in enumerate(layers):
        if any(p.requires_grad for p in layer.parameters()):
            return i
    return 0  # nothing trainable in the layers: keep the plain forward


@contextmanager
def starting_at(model, layer: int):
    """The decoder with layers ``[layer:]`` only; feed it the trunk as ``inputs_embeds``."""
    decoder = decoder_of(model)
    layers = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(layers)[layer:])
    try:
        yield decoder
    finally:
        decoder.layers = layers


class _TrunkCaptured(Exception):
    """Raised by the capture hook: nothing above the trunk needs computing."""


@torch.no_grad()
def trunk_states(model, batch, layer: int) -> torch.Tensor:
    """The hidden states entering decoder layer ``layer``, ``[B, W, d]`` (layers above are not run)."""
    box = {}

    def grab(module, args, kwargs):
        box["h"] = args[0] if args else kwargs["hidden_states"]
        raise _TrunkCaptured

    handle = decoder_layers(model)[layer].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        decoder_of(model)(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                        attention_mask=batch["attention_mask"], use_cache=False)
    except _TrunkCaptured:
        pass
    finally:
        handle.remove()
    return box["h"].detach()


def cache_trunks(model, examples: list[Example], layer: int, pad_id: int, device, budget_bytes: float,
                 used_bytes: float) -> float:
    """Fill ``trunk`` for the examples that lack one, within ``budget_bytes``; return the bytes used."""
    missing = [e for e in examples if e.trunk is None]
    if not layer or not missing:
        return used_bytes
    width = model.get_input_embeddings().embedding_dim if hasattr(model, "get_input_embeddings") else 0
    need = sum(len(e.ids) for e in missing) * width * 4
    if used_bytes + need > budget_bytes:
        return used_bytes
    batch = {k: v.to(device) for k, v in collate(missing, pad_id).items()}
    h = trunk_states(model, batch, layer)
    for b, e in enumerate(missing):
        e.trunk = h[b, :len(e.ids)].clone()
    return used_bytes + need


@contextmanager
def as_reference(policy, ref_model):
    """The reference model: a separate frozen model, or the policy with its LoRA adapter disabled."""
    if ref_model is not None:
        yield ref_model
    else:
        with policy.disable_adapter():
            yield policy


@torch.no_grad()
def mixed_logps(scorer: PairLogProbs, ref_model, h_policy: torch.Tensor, batch, lam: float) -> torch.Tensor:
    """SPA's decoupled noise detection: summed log-probs under logits (1 + λ)·h_θ − λ·h_ref.

    ``h_policy`` are the policy's hidden states from the training forward (reused);
    the reference is ``ref_model``, or the policy with its adapter disabled if None.
    """
    with as_reference(scorer.model, ref_model) as ref:
        h_ref = PairLogProbs(ref, trunk_layer=scorer.trunk_layer if ref_model is None else 0).hidden(batch)

    def ref_head(x: torch.Tensor) -> torch.Tensor:  # per chunk: the adapter is back on for the policy's head
        with as_reference(scorer.model, ref_model) as ref:
            return lm_logits(ref, x)

    lp = token_logprobs(scorer.model, h_policy, batch["targets"], scorer.chunk, mix=(ref_head, h_ref, lam))
    return scorer.sums(lp, batch)
