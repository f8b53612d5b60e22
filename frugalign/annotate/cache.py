"""On-disk cache of response log-probs, so re-running an annotator costs nothing.

Entries are keyed by a *model fingerprint* and a hash of the exact text scored
(prompt, system prompt, response). The fingerprint is the model's name plus a
hash of a strided sample of every weight tensor: a policy that was trained
in between (SPA's iterations) gets a new fingerprint, so stale scores are
never served under the same model name. Storage is one SQLite file
(``$FRUGALIGN_CACHE/scores.sqlite`` by default), safe for concurrent readers
and writers.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import torch

from ..data import cache_dir
from ..logprobs import LogProbScorer, ScoreItem, ScoreResult, as_score_items
from ..models import model_identity

_SAMPLES_PER_TENSOR = 64


def model_fingerprint(model) -> str:
    """``name#hash``: the hash covers every parameter's name, shape, dtype and 64 sampled values."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda t: t[0]):
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
            sample = flat[::step][:_SAMPLES_PER_TENSOR].float().cpu().numpy().tobytes()
            h.update(f"{name}{tuple(p.shape)}{p.dtype}".encode())
            h.update(sample)
    return f"{model_identity(model)}#{h.hexdigest()[:16]}"


def text_key(item: ScoreItem, extra: str = "") -> str:
    """Hash of the exact text of one scored item (and the scoring mode)."""
    blob = json.dumps([item.prompt, item.system, item.response, extra], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ScoreCache:
    """SQLite table ``(model, key) -> (logprob, n_tokens)``."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else cache_dir() / "scores.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (model TEXT, key TEXT, logprob REAL, "
                         "n_tokens INTEGER, PRIMARY KEY (model, key))")
        self._db.commit()

    def get_many(self, model: str, keys: Sequence[str]) -> dict[str, tuple[float, int]]:
        out: dict[str, tuple[float, int]] = {}
        uniq = list(dict.fromkeys(keys))
        for s in range(0, len(uniq), 500):  # SQLite caps the number of bound parameters
            chunk = uniq[s:s + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, logprob, n_tokens FROM scores WHERE model = ? "
                                    f"AND key IN ({marks})", [model, *chunk])
            out.update({k: (lp, n) for k, lp, n in rows})
        return out

    def put_many(self, model: str, values: dict[str, tuple[float, int]]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                             [(model, k, lp, n) for k, (lp, n) in values.items()])
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class CachedScorer:
    """A :class:`LogProbScorer` whose sums are read from / written to a :class:`ScoreCache`.

    Only missing items reach the model. Skipped (context-overflow) items are
    returned as NaN and never stored. ``stats`` counts ``cache_hits`` and
    ``cache_misses``.
    """

    def __init__(self, scorer: LogProbScorer, cache: ScoreCache | None, identity: str | None = None):
        self.scorer, self.cache, self.fixed_identity = scorer, cache, identity
        self.model, self.tokenizer = scorer.model, scorer.tokenizer
        self.stats = {"cache_hits": 0, "cache_misses": 0}

    @property
    def identity(self) -> str:
        """Recomputed per call (a few ms): a policy trained in between must not hit old entries."""
        s = self.scorer
        mode = f"eot={s.score_end_of_turn};max={s.max_length};overflow={s.overflow}"
        if getattr(s, "eos_without_template", False):  # only when set: older entries keep their keys
            mode += ";eos"
        return f"{self.fixed_identity or model_fingerprint(s.model)}|{mode}"

    def score(self, items: Sequence, *, mix_with: tuple | None = None) -> list[ScoreResult]:
        """Like :meth:`LogProbScorer.score` (sums only), computing just the cache misses."""
        items = as_score_items(items)
        if self.cache is None:
            self.stats["cache_misses"] += len(items)
            return self.scorer.score(items, mix_with=mix_with)
        extra = f"mix={model_fingerprint(mix_with[0])}:{float(mix_with[1])}" if mix_with else ""
        keys = [text_key(it, extra) for it in items]
        identity = self.identity
        found = self.cache.get_many(identity, keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.stats["cache_hits"] += len(items) - len(todo)
        self.stats["cache_misses"] += len(todo)
        fresh = self.scorer.score([items[i] for i in todo], mix_with=mix_with) if todo else []
        new = {keys[i]: (r.logprob, r.n_tokens) for i, r in zip(todo, fresh) if not r.skipped}
        if new:
            self.cache.put_many(identity, new)
        by_index = dict(zip(todo, fresh))
        return [by_index[i] if i in by_index else ScoreResult(*found[keys[i]]) for i in range(len(items))]
