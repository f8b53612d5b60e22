"""The batched response log-prob scorer: the hot path of every method here.

DPO's reference pass, Dr.SoW's density ratio, SPA's self-judgement and REAL's
policy embeddings all need, for many (prompt, response) items, the model's
hidden states over the response tokens. This module computes them exactly
(equal to a naive one-at-a-time loop) while skipping wasted work:

* **shared prompts** — items whose rendered prompt is identical are a group;
  the common token prefix is encoded once and its KV cache is re-used by
  every response of the group (``share_prompts=True``);
* **no padding waste** — groups are sorted by length and packed into batches
  under a token budget;
* **no logits for prompt or pad tokens** — the LM head runs only on the
  hidden states that predict response tokens, in row chunks, with a
  float32 log-sum-exp, so memory is O(chunk × vocab), not O(length × vocab).

Boundaries come from tokenising prompt+response *together* and mapping the
response's character span (from the rendered chat template) to tokens.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from .chat import end_of_turn_ids, has_template, render_prompt, render_with_response, template_adds_special_tokens
from .errors import ConfigError, ContextOverflowError
from .records import Prompt

OVERFLOW_POLICIES = ("error", "skip", "truncate")


@dataclass
class ScoreItem:
    prompt: Prompt
    response: str
    system: str | None = None


@dataclass
class ScoreResult:
    logprob: float                 # sum over response tokens (NaN when skipped)
    n_tokens: int                  # response tokens scored
    token_logprobs: list[float] | None = None
    skipped: bool = False          # context overflow under the "skip" policy

    @property
    def mean_logprob(self) -> float:
        return self.logprob / self.n_tokens if self.n_tokens else float("nan")


@dataclass
class Encoded:
    ids: list[int]
    start: int                     # first response token
    end: int                       # one past the last scored token
    group: str                     # rendered prompt: items sharing it share a prefix
    n_eot: int = 0                 # trailing end-of-turn tokens included in [start, end)
    skipped: bool = False


@dataclass
class ScorerStats:
    items: int = 0
    groups: int = 0
    batches: int = 0
    tokens_forward: int = 0        # tokens run through the transformer body (incl. padding)
    tokens_scored: int = 0
    overflow_skipped: int = 0
    overflow_truncated: int = 0
    extra: dict = field(default_factory=dict)


def as_score_items(items: Sequence) -> list[ScoreItem]:
    out = []
    for it in items:
        if isinstance(it, ScoreItem):
            out.append(it)
        elif isinstance(it, dict):
            out.append(ScoreItem(it["prompt"], it["response"], it.get("system")))
        else:
            out.append(ScoreItem(*it))
    return out


class LogProbScorer:
    """Sum of response-token log-probs under ``model`` for (prompt, response) items.

    >>> scorer = LogProbScorer(model, tokenizer)
    >>> [r.logprob for r in scorer.score([("Hi", "Hello!"), ("Hi", "Go away.")])]

    ``mix_with=(other_model, lam)`` scores with extrapolated logits
    h = (1 + lam)·h_self − lam·h_other (same tokenizer; SPA's decoupled noise
    detection).

    ``score_end_of_turn`` also scores the chat template's end-of-turn token
    after the response. A template-less (base) model has nothing there;
    ``eos_without_template=True`` appends and scores its EOS token instead,
    so two models of different kinds can both score "the response ends here"
    (Dr.SoW's ``end_of_response`` setting).
    """

    def __init__(self, model, tokenizer, *, token_budget: int = 4096, max_batch: int = 64,
                 share_prompts: bool = True, vocab_chunk_rows: int | None = None,
                 score_end_of_turn: bool = True, eos_without_template: bool = False,
                 max_length: int | None = None,
                 overflow: str = "error", progress: bool = True, desc: str = "scoring"):
        if overflow not in OVERFLOW_POLICIES:
            raise ConfigError(f"overflow policy {overflow!r}; expected one of {OVERFLOW_POLICIES}")
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError("the scorer needs a fast (Rust) tokenizer for character offsets")
        self.model, self.tokenizer = model, tokenizer
        self.token_budget, self.max_batch = token_budget, max_batch
        # Rows per LM-head chunk: bounds the float32 logits buffer to ~128 MB whatever the vocabulary.
        vocab = getattr(model.config, "vocab_size", 32000) or 32000
        self.vocab_chunk_rows = vocab_chunk_rows or max(64, (128 << 20) // (4 * vocab))
        self.share_prompts = share_prompts
        self.score_end_of_turn, self.overflow = score_end_of_turn, overflow
        self.eos_without_template = eos_without_template and not has_template(tokenizer)
        if self.eos_without_template and tokenizer.eos_token_id is None:
            raise ConfigError("eos_without_template: the tokenizer has no EOS token")
        self.max_length = max_length or _context_length(model)
        self.progress, self.desc = progress, desc
        self.eot_ids = set(end_of_turn_ids(tokenizer))
        self.stats = ScorerStats()

    @property
    def scores_end_of_response(self) -> bool:
        """Whether each sum includes the token that ends the response (end-of-turn, or EOS without a template)."""
        return self.score_end_of_turn and (has_template(self.tokenizer) or self.eos_without_template)

    # ------------------------------------------------------------ encoding
    def encode(self, items: Sequence[ScoreItem]) -> list[Encoded]:
        """Tokenise each conversation once and locate its response tokens."""
        tok = self.tokenizer
        rendered = [render_with_response(tok, it.prompt, it.response, it.system) for it in items]
        groups = [render_prompt(tok, it.prompt, it.system) for it in items]
        batch = tok([r[0] for r in rendered], add_special_tokens=template_adds_special_tokens(tok),
                    return_offsets_mapping=True)
        out = []
        for i, ((_, c0, c1), group) in enumerate(zip(rendered, groups)):
            ids, offsets = batch["input_ids"][i], batch["offset_mapping"][i]
            out.append(self._locate(i, ids, offsets, c0, c1, group))
        return out

    def _locate(self, i, ids, offsets, c0, c1, group) -> Encoded:
        # A token belongs to the response if its character span overlaps it.
        resp = [t for t, (a, b) in enumerate(offsets) if b > c0 and a < c1 and b > a]
        if not resp:
            raise ContextOverflowError(f"item {i}: response has no tokens after tokenisation")
        start, end = resp[0], resp[-1] + 1
        n_eot = 0
        if self.score_end_of_turn and end < len(ids) and ids[end] in self.eot_ids:
            end, n_eot = end + 1, 1
        elif self.score_end_of_turn and self.eos_without_template and end == len(ids):
            ids, end, n_eot = list(ids) + [self.tokenizer.eos_token_id], end + 1, 1
        if start == 0:
            raise ContextOverflowError(f"item {i}: nothing precedes the response (need a prompt or BOS token)")
        enc = Encoded(list(ids[:end]), start, end, group, n_eot)
        return self._fit_context(i, enc)

    def _fit_context(self, i: int, enc: Encoded) -> Encoded:
        if len(enc.ids) <= self.max_length:
            return enc
        if self.overflow == "error":
            raise ContextOverflowError(
                f"item {i}: {len(enc.ids)} tokens exceed the model context of {self.max_length} "
                "(set overflow='skip' or 'truncate')")
        cut = len(enc.ids) - self.max_length
        if self.overflow == "truncate" and cut < enc.start:
            # Drop the oldest prompt tokens; the response is kept whole.
            self.stats.overflow_truncated += 1
            return Encoded(enc.ids[cut:], enc.start - cut, enc.end - cut, f"{enc.group}\0trunc{cut}", enc.n_eot)
        self.stats.overflow_skipped += 1
        return Encoded(enc.ids, enc.start, enc.end, enc.group, enc.n_eot, skipped=True)

    # ------------------------------------------------------------ public API
    @torch.inference_mode()
    def score(self, items: Sequence, *, per_token: bool = False,
              mix_with: tuple | None = None) -> list[ScoreResult]:
        """Score items; results are in input order."""
        items = as_score_items(items)
        self.stats = ScorerStats(items=len(items))
        if not items:
            return []
        encoded = self.encode(items)
        results: list[ScoreResult | None] = [None] * len(items)
        for idx in (i for i, e in enumerate(encoded) if e.skipped):
            results[idx] = ScoreResult(float("nan"), 0, [] if per_token else None, skipped=True)
        other = mix_with[0] if mix_with else None
        lam = float(mix_with[1]) if mix_with else 0.0
        if other is not None and other.config.vocab_size != self.model.config.vocab_size:
            raise ConfigError("mixed-logit scoring needs two models with the same tokenizer and vocabulary")
        self._mix_model = other
        for rows, hidden, hidden_other in self._hidden_batches(encoded, other):
            self._logprobs_for_batch(rows, encoded, hidden, hidden_other, lam, per_token, results)
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def embed(self, items: Sequence, *, normalize: bool = True) -> torch.Tensor:
        """Mean of last-layer hidden states over response tokens (REAL's policy embedding)."""
        items = as_score_items(items)
        self.stats = ScorerStats(items=len(items))
        encoded = self.encode(items)
        dim = self.model.config.hidden_size
        out = torch.zeros(len(items), dim, dtype=torch.float32)
        for rows, hidden, _ in self._hidden_batches(encoded, None):
            for r, (idx, offset) in enumerate(rows):
                e = encoded[idx]
                # Hidden at the response tokens themselves (not the positions predicting them).
                sl = hidden[r, e.start - offset + 1: e.end - e.n_eot - offset + 1]
                out[idx] = sl.float().mean(0)
        return torch.nn.functional.normalize(out, dim=-1) if normalize else out

    # ------------------------------------------------------------ batching
    def _plan(self, encoded: list[Encoded]) -> list[list[tuple[int, list[int]]]]:
        """Batches of groups ``(prefix_len, [item indices])`` under the token budget."""
        by_group: dict[str, list[int]] = {}
        for i, e in enumerate(encoded):
            if not e.skipped:
                key = e.group if self.share_prompts else f"{i}"
                by_group.setdefault(key, []).append(i)
        groups = []
        for members in by_group.values():
            prefix = common_prefix([encoded[i].ids for i in members]) if self.share_prompts else 0
            # Stop the prefix before the first response token so every scored
            # position is produced by the suffix pass or the prefix's last state.
            prefix = min([prefix] + [encoded[i].start for i in members])
            groups.append((prefix, members))
        self.stats.groups = len(groups)
        groups.sort(key=lambda g: (max(len(encoded[i].ids) for i in g[1]) - g[0], g[0]))
        batches, cur, cur_rows, cur_p, cur_s = [], [], 0, 0, 0
        for prefix, members in groups:
            s = max(len(encoded[i].ids) for i in members) - prefix
            p, s_max, rows = max(cur_p, prefix), max(cur_s, s), cur_rows + len(members)
            cost = (len(cur) + 1) * p + rows * s_max
            if cur and (cost > self.token_budget or rows > self.max_batch):
                batches.append(cur)
                cur, cur_rows, p, s_max, rows = [], 0, prefix, s, len(members)
            cur.append((prefix, members))
            cur_rows, cur_p, cur_s = rows, p, s_max
        if cur:
            batches.append(cur)
        return batches

    def _hidden_batches(self, encoded: list[Encoded], other_model):
        """Yield ``(rows, hidden, hidden_other)`` per batch.

        ``rows[r] = (item index, offset)``; ``hidden[r, j]`` is the final hidden
        state at absolute position ``offset + j - 1`` (j = 0 is the prefix's
        last position), so the state predicting token t is at ``t - offset``.
        """
        plan = self._plan(encoded)
        self.stats.batches = len(plan)
        bar = tqdm(plan, desc=self.desc, unit="batch", disable=not self.progress, leave=False)
        for batch in bar:
            rows, hidden = self._forward_batch(self.model, batch, encoded)
            hidden_other = None
            if other_model is not None:
                _, hidden_other = self._forward_batch(other_model, batch, encoded)
            yield rows, hidden, hidden_other
        bar.close()

    def _forward_batch(self, model, batch, encoded):
        device = next(model.parameters()).device
        pad = self.tokenizer.pad_token_id or 0
        body = decoder_of(model)
        prefix_lens = [p for p, _ in batch]
        p_max = max(prefix_lens)
        rows, suffixes, group_of_row = [], [], []
        for g, (p, members) in enumerate(batch):
            for i in members:
                rows.append((i, p))
                suffixes.append(encoded[i].ids[p:])
                group_of_row.append(g)
        s_max = max(len(s) for s in suffixes)
        cache, last_prefix, prefix_mask = None, None, None
        if p_max > 0:
            # Prefixes right-padded: pad slots sit between prompt and suffix and
            # are masked out, so no query row is ever fully masked.
            ids = torch.full((len(batch), p_max), pad, dtype=torch.long)
            prefix_mask = torch.zeros((len(batch), p_max), dtype=torch.long)
            for g, (p, members) in enumerate(batch):
                ids[g, :p] = torch.tensor(encoded[members[0]].ids[:p])
                prefix_mask[g, :p] = 1
            out = body(input_ids=ids.to(device), attention_mask=prefix_mask.to(device), use_cache=True)
            cache = output_cache(out)
            idx = torch.tensor(group_of_row, device=device)
            cache.reorder_cache(idx)  # one prefix copy per response row
            lens = torch.tensor(prefix_lens, device=device)
            last_prefix = out.last_hidden_state[torch.arange(len(batch), device=device), lens - 1][idx]
            prefix_mask = prefix_mask.to(device)[idx]
            self.stats.tokens_forward += len(batch) * p_max
        ids = torch.full((len(rows), s_max), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), s_max), dtype=torch.long)
        for r, s in enumerate(suffixes):
            ids[r, :len(s)] = torch.tensor(s)
            mask[r, :len(s)] = 1
        starts = torch.tensor([p for _, p in rows])
        position_ids = (starts[:, None] + torch.arange(s_max)[None, :]).to(device)
        full_mask = mask.to(device) if prefix_mask is None else torch.cat([prefix_mask, mask.to(device)], 1)
        out = body(input_ids=ids.to(device), attention_mask=full_mask, position_ids=position_ids,
                   **{cache_kwarg(body): cache}, use_cache=cache is not None)
        self.stats.tokens_forward += len(rows) * s_max
        h = out.last_hidden_state
        first = last_prefix[:, None, :] if last_prefix is not None else torch.zeros_like(h[:, :1])
        return rows, torch.cat([first, h], dim=1)

    # ------------------------------------------------------------ log-probs
    def _logprobs_for_batch(self, rows, encoded, hidden, hidden_other, lam, per_token, results):
        gather_h, gather_o, targets, spans = [], [], [], []
        n = 0
        for r, (idx, offset) in enumerate(rows):
            e = encoded[idx]
            a, b = e.start - offset, e.end - offset      # states predicting tokens start..end-1
            gather_h.append(hidden[r, a:b])
            if hidden_other is not None:
                gather_o.append(hidden_other[r, a:b])
            targets.extend(e.ids[e.start:e.end])
            spans.append((idx, n, n + (b - a)))
            n += b - a
        h = torch.cat(gather_h)
        o = torch.cat(gather_o) if gather_o else None
        tgt = torch.tensor(targets, device=h.device)
        lp = self._chunked_logprobs(h, o, lam, tgt)
        self.stats.tokens_scored += n
        for idx, a, b in spans:
            vals = lp[a:b]
            results[idx] = ScoreResult(float(vals.sum()), b - a, vals.tolist() if per_token else None)

    def _chunked_logprobs(self, h, o, lam, targets) -> torch.Tensor:
        mix = (lambda x: lm_logits(self._mix_model, x), o, lam) if o is not None else None
        return token_logprobs(self.model, h, targets, self.vocab_chunk_rows, mix=mix).float().cpu()


def decoder_of(model):
    """The transformer body (no LM head) of a causal LM, PEFT-wrapped or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder() if hasattr(base, "get_decoder") else base.model


def cache_kwarg(body) -> str:
    """The keyword a decoder's ``forward`` takes its KV cache by.

    transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name
    warns, and goes in 5.40); older releases know only ``past_key_values``.
    """
    return _cache_kwarg_of(type(body))


@functools.cache
def _cache_kwarg_of(cls) -> str:
    try:
        params = inspect.signature(cls.forward).parameters  # follows the deprecation wrapper
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out):
    """The KV cache a forward with ``use_cache=True`` returned (``out.cache``; ``past_key_values`` before 5.x)."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


def lm_logits(model, h: torch.Tensor) -> torch.Tensor:
    """LM-head logits in float32, with the final soft-capping some models use (Gemma 2)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    logits = base.get_output_embeddings()(h).float()
    cap = getattr(base.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def token_logprobs(model, h: torch.Tensor, targets: torch.Tensor, chunk: int, *, mix=None,
                   recompute: bool = False) -> torch.Tensor:
    """log p(target) for each row of hidden states ``h`` ``[N, d]``: the one LM-head log-softmax.

    The LM head runs on ``chunk`` rows at a time with a float32 log-sum-exp, so
    logits never exist for all rows at once. ``mix=(head, h_other, λ)`` scores
    under extrapolated logits (1 + λ)·head_model(h) − λ·head(h_other) (SPA's
    decoupled noise detection). With ``recompute`` (and grad enabled) each
    chunk's logits are rebuilt in backward instead of kept: memory O(chunk × vocab).
    """
    def chunk_logprobs(h_c, t_c, o_c):
        logits = lm_logits(model, h_c)
        if mix is not None:
            logits = (1.0 + mix[2]) * logits - mix[2] * mix[0](o_c)
        return logits.gather(-1, t_c[:, None]).squeeze(-1) - torch.logsumexp(logits, -1)

    out = []
    for s in range(0, h.shape[0], chunk):
        args = (h[s:s + chunk], targets[s:s + chunk], mix[1][s:s + chunk] if mix is not None else None)
        if recompute and torch.is_grad_enabled():
            out.append(checkpoint(chunk_logprobs, *args, use_reentrant=False))
        else:
            out.append(chunk_logprobs(*args))
    return torch.cat(out) if out else h.new_zeros(0, dtype=torch.float32)


def common_prefix(seqs: list[list[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return n


def _context_length(model) -> int:
    cfg = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def score_ratio(scorer_a: LogProbScorer, scorer_b: LogProbScorer, items: Sequence,
                ) -> tuple[list[float], list[ScoreResult], list[ScoreResult]]:
    """Σ log p_a − Σ log p_b per item, each model with its own tokenizer and template."""
    items = as_score_items(items)
    ra, rb = scorer_a.score(items), scorer_b.score(items)
    diff = [a.logprob - b.logprob if not (a.skipped or b.skipped) else math.nan for a, b in zip(ra, rb)]
    return diff, ra, rb
