"""The fast generation path: continuous batching on a slot cache, per-row seeds.

Where the time goes in plain ``model.generate`` on a small CPU (see the
benchmark, ``benchmarks/generation.py``): the weight matmuls of every decode
step dominate, and they cost nearly as much for a batch row that has already
finished (or is left padding) as for a live one, because a step streams all
weights from memory whatever the batch holds. So this backend keeps every
row of its batch busy: a sequence that ends frees its slot, and the next
waiting sequence is prefilled straight into it. Smaller savings: no per-step
``torch.cat`` of the KV cache or mask rebuild, sampling without the full
logits-processor pipeline, and prefill work done once: the N samples of a
prompt share one prefill (a sample that starts later copies the prompt's
K/V from a slot that holds it), and tokens every prompt starts with (system
prompt, template header) are encoded once per call (prefix caching).

Outputs keep transformers' distribution. Greedy decoding in float32 gives
the same tokens as ``model.generate``; sampling draws from each sequence's
own generator (:mod:`.sampling`), so results depend only on
``(seed, request key, sample index)``, not on batch size or sharding.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..chat import end_of_turn_ids
from ..generate import (
    GenerationRequest,
    GenerationSettings,
    TransformersBackend,
    context_limit,
    decode_response,
    encode_requests,
    request_keys,
    row_seed,
)
from .runner import DecoderRunner, unsupported_reason
from .sampling import make_generator, sample_rows


@dataclass
class _Seq:
    prompt: int                      # index into the request list
    sample: int                      # which of the N samples
    gen: torch.Generator
    tokens: list[int] = field(default_factory=list)


@dataclass
class _PromptKV:
    """Which prompt's K/V each slot holds, so later samples of a prompt skip its prefill.

    A slot's first ``len(prompt)`` cache positions keep the prompt's K/V while
    its sample decodes and after it ends, until a prefill or copy overwrites
    them; ``logits`` keeps each prompt's next-token logits until its last
    sample has started (``remaining`` counts the samples not yet started).
    """
    holder: list[int | None]
    logits: dict[int, torch.Tensor]
    remaining: Counter
    shared: int = 0                  # leading tokens common to every prompt, encoded once in `past`
    past: object = None

    def source(self, prompt: int, slot: int) -> int | None:
        """A slot holding ``prompt``'s K/V (``slot`` itself first), or None."""
        if prompt not in self.logits:
            return None
        if self.holder[slot] == prompt:
            return slot
        return next((r for r, p in enumerate(self.holder) if p == prompt), None)


@dataclass
class FastStats:
    sequences: int = 0
    new_tokens: int = 0              # generated tokens, end-of-turn included
    decode_steps: int = 0
    prefills: int = 0
    prefill_prompts: int = 0
    shared_prefix: int = 0           # tokens common to every prompt, prefilled once (prefix caching)
    prompt_reuses: int = 0           # sequences started from another slot's prompt K/V (no prefill)
    row_steps: int = 0               # Σ live rows over decode steps (batch occupancy)
    seconds: float = 0.0

    @property
    def mean_rows(self) -> float:
        """Average number of sequences decoded per step (the batch occupancy)."""
        return self.row_steps / self.decode_steps if self.decode_steps else 0.0


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily run torch ops on ``n`` threads (None/0: leave as is)."""
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FastBackend:
    """Generation backend ``fast``: same interface and outputs as :class:`TransformersBackend`.

    ``batch_size`` of the settings is the number of cache slots (sequences
    decoded together). ``threads`` sets torch's thread count while
    generating: on a shared or oversubscribed CPU one thread per process is
    often much faster than two (OpenMP barriers stall when a core is taken).
    ``pack`` (default: on where oneDNN supports the dtype) fuses and
    prepacks the weight matmuls (see :mod:`.runner`); ``pack=False`` keeps
    the model's own modules, for bit-level float32 parity with ``generate``.
    Models the runner does not support (see :data:`runner.SUPPORTED_TYPES`)
    fall back to :class:`TransformersBackend` with a warning.
    """

    per_prompt_seeding = True
    min_shared_prefix = 8

    def __init__(self, model, tokenizer, *, threads: int | None = None, pack: bool | None = None,
                 progress: bool = True):
        self.model, self.tokenizer, self.threads, self.progress = model, tokenizer, threads, progress
        self.stop_ids = end_of_turn_ids(tokenizer)
        self.stats = FastStats()
        reason = unsupported_reason(model)
        self.fallback = None
        if reason:
            warnings.warn(f"fast backend: {reason}; using plain transformers generate", stacklevel=2)
            self.fallback = TransformersBackend(model, tokenizer, progress=progress)
            self.per_prompt_seeding = False
        else:
            self.runner = DecoderRunner(model, pack=pack)

    def generate(self, requests: Sequence[GenerationRequest],
                 settings: GenerationSettings) -> list[list[str]]:
        """``settings.n`` responses per request, in request order (see the class docstring)."""
        settings.validate()
        if self.fallback is not None:
            return self.fallback.generate(requests, settings)
        ids = encode_requests(self.tokenizer, requests, settings.max_new_tokens, context_limit(self.model))
        keys = request_keys(requests)
        self.stats = FastStats()
        start = time.perf_counter()
        with torch_threads(self.threads):
            seqs = self._run(ids, keys, settings)
        self.stats.seconds = time.perf_counter() - start
        out: list[list[str]] = [[""] * settings.n for _ in requests]
        for s in seqs:
            out[s.prompt][s.sample] = decode_response(self.tokenizer, s.tokens, self.stop_ids)
        return out

    # ------------------------------------------------------------ scheduling
    def _run(self, ids: list[list[int]], keys: list[int], s: GenerationSettings) -> list[_Seq]:
        # Shortest prompts first: admissions that happen together have similar lengths.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        pending = deque(_Seq(i, j, make_generator(row_seed(s.seed, keys[i], j)))
                        for i in order for j in range(s.n))
        done: list[_Seq] = []
        slots = min(s.batch_size, len(pending))
        cache = self.runner.new_cache(slots, max(len(x) for x in ids) + s.max_new_tokens)
        live: list[_Seq | None] = [None] * slots
        prompts = _PromptKV([None] * slots, {}, Counter(q.prompt for q in pending))
        prompts.shared, prompts.past = self._shared_prefix(ids)
        bar = tqdm(total=len(pending), desc="generating", unit="resp", disable=not self.progress, leave=False)
        while True:
            if pending:
                self._admit(cache, live, pending, ids, s, done, bar, prompts)
                if pending and None in live:
                    continue                        # sequences that ended at once freed slots again
            if not pending:
                self._compact(cache, live)
            b = sum(x is not None for x in live)
            if b == 0:
                break
            self._step(cache, live[:b], ids, s, done, bar)
            for r in range(b):
                if live[r] is not None and self._finished(live[r], s):
                    live[r] = None
        bar.close()
        return done

    def _shared_prefix(self, ids: list[list[int]]) -> tuple[int, object]:
        """Tokens every prompt starts with (a system prompt, the chat template's header), encoded once.

        Every prompt keeps at least one token of its own, so each prefill still
        ends on a token it computes; prefixes shorter than ``min_shared_prefix``
        are not worth a separate pass.
        """
        shared = min(len(os.path.commonprefix(ids)), min(len(x) for x in ids) - 1)
        if len(ids) < 2 or shared < self.min_shared_prefix:
            return 0, None
        self.stats.shared_prefix = shared
        return shared, self.runner.encode_prefix(ids[0][:shared])

    def _admit(self, cache, live, pending, ids, s, done, bar, prompts: _PromptKV) -> None:
        """Start waiting sequences in free slots.

        A sequence whose prompt's K/V still sits in some slot (a live or
        just-finished sample of the same prompt) gets a copy of that slot and
        the prompt's saved next-token logits: no prefill. The others are
        prefilled, samples of one prompt sharing one prefill.
        """
        free = [r for r, x in enumerate(live) if x is None]
        if not free:
            return
        taken = [pending.popleft() for _ in range(min(len(free), len(pending)))]
        reused, copies, groups = [], [], []        # groups: [prompt index, [(seq, slot), ...]]
        for seq, slot in zip(taken, free):
            prompts.remaining[seq.prompt] -= 1
            src = prompts.source(seq.prompt, slot)
            if src is not None:
                reused.append((seq, slot))
                if src != slot:
                    copies.append((src, slot))
            elif groups and groups[-1][0] == seq.prompt:
                groups[-1][1].append((seq, slot))
            else:
                groups.append([seq.prompt, [(seq, slot)]])
        cache.move([a for a, _ in copies], [b for _, b in copies])   # before prefill overwrites sources
        rows = [prompts.logits[q.prompt] for q, _ in reused]
        for q, slot in reused:
            prompts.holder[slot] = q.prompt
        if groups:
            logits = self.runner.prefill(cache, [ids[p][prompts.shared:] for p, _ in groups],
                                         [[slot for _, slot in g] for _, g in groups], past=prompts.past)
            start = 0
            for p, g in groups:
                prompts.logits[p] = logits[start]
                for _, slot in g:
                    prompts.holder[slot] = p
                start += len(g)
            rows.extend(logits.unbind(0))
            self.stats.prefills += 1
            self.stats.prefill_prompts += len(groups)
        self.stats.prompt_reuses += len(reused)
        flat = reused + [x for _, g in groups for x in g]
        tokens = sample_rows(torch.stack(rows), [q.gen for q, _ in flat], s.temperature, s.top_p).tolist()
        for p in {q.prompt for q, _ in flat}:
            if prompts.remaining[p] == 0:           # every sample started: the logits are no longer needed
                prompts.logits.pop(p, None)
        for (q, slot), tok in zip(flat, tokens):
            q.tokens.append(tok)
            live[slot] = q
            if self._finished(q, s):
                live[slot] = None
                self._retire(q, done, bar)

    def _step(self, cache, rows: list[_Seq], ids, s, done, bar) -> None:
        device = self.runner.device
        last = torch.tensor([q.tokens[-1] for q in rows], device=device)
        pos = torch.tensor([len(ids[q.prompt]) + len(q.tokens) - 1 for q in rows], device=device)
        logits = self.runner.decode(cache, last, pos)
        tokens = sample_rows(logits, [q.gen for q in rows], s.temperature, s.top_p).tolist()
        self.stats.decode_steps += 1
        self.stats.row_steps += len(rows)
        for q, tok in zip(rows, tokens):
            q.tokens.append(tok)
            if self._finished(q, s):
                self._retire(q, done, bar)

    def _finished(self, q: _Seq, s: GenerationSettings) -> bool:
        return q.tokens[-1] in self.stop_ids or len(q.tokens) >= s.max_new_tokens

    def _retire(self, q: _Seq, done: list[_Seq], bar) -> None:
        done.append(q)
        self.stats.sequences += 1
        self.stats.new_tokens += len(q.tokens)
        bar.update(1)

    @staticmethod
    def _compact(cache, live: list) -> None:
        """Close holes so live rows are ``0..b-1`` (only once nothing is waiting)."""
        b = sum(x is not None for x in live)
        holes = [r for r in range(b) if live[r] is None]
        tail = [r for r in range(b, len(live)) if live[r] is not None]
        cache.move(tail, holes)
        for h, t in zip(holes, tail):
            live[h], live[t] = live[t], None
