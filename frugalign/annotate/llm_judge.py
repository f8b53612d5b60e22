"""LLM-as-judge baseline: read P("A") vs P("B") from a judge model's next token.

The judge sees the request and both responses and is asked for one letter.
p = σ(log P("A") − log P("B")), the two-way probability from the judge's
next-token distribution (computed with the shared log-prob scorer: the
"responses" ``A`` and ``B`` share the prompt, so the prompt is encoded once).

Small models favour one position, so each pair is judged in both orders and
averaged: p_A = ½·(P("A" | a shown first) + P("B" | a shown second)). A
judge that always answers "A" then gives p_A = 0.5 (a tie, confidence 0), and
p_A(a, b) = 1 − p_A(b, a). ``details`` keeps P("A") in both orders (p_order_ab,
p_order_ba) and the position bias ½·(p_ab + p_ba) − ½ (its mean lean to "A").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from tqdm.auto import tqdm

from ..errors import DataError
from ..logprobs import LogProbScorer, ScoreItem
from ..records import Annotation, PreferencePair, prompt_text
from .base import NAN_POLICIES, check_choice, confidence_from_p, sigmoid
from .cache import CachedScorer, ScoreCache

JUDGE_TEMPLATE = (
    "Which of the two responses below answers the user's request better? Consider helpfulness, "
    "correctness, harmlessness and whether the instructions are followed.\n\n"
    "{system}[User request]\n{prompt}\n\n[Response A]\n{a}\n\n[Response B]\n{b}\n\n"
    "Answer with a single letter: A or B."
)


class LLMJudge:
    """Pairwise judge from next-token probabilities of "A" and "B", position bias averaged out."""

    def __init__(self, model, tokenizer, *, template: str = JUDGE_TEMPLATE, both_orders: bool = True,
                 cache: ScoreCache | None = None, batch_pairs: int = 16, progress: bool = False,
                 nan_policy: str = "error", **scorer_kwargs):
        check_choice("nan_policy", nan_policy, NAN_POLICIES)
        self.nan_policy = nan_policy
        # The letter is the whole answer: do not also score an end-of-turn token.
        scorer_kwargs.setdefault("progress", False)
        base = LogProbScorer(model, tokenizer, score_end_of_turn=False, desc="llm-judge", **scorer_kwargs)
        self.scorer = CachedScorer(base, cache)
        self.template, self.both_orders = template, both_orders
        self.batch_pairs, self.progress = batch_pairs, progress
        self.counts: Counter = Counter()

    @property
    def stats(self) -> dict:
        out = dict(self.scorer.stats)
        out.update(self.counts)
        return out

    def judge_text(self, pair: PreferencePair, first: str, second: str) -> str:
        """The judge's user message with ``first`` shown as A and ``second`` as B."""
        system = f"[System prompt]\n{pair.system}\n\n" if pair.system else ""
        return self.template.format(system=system, prompt=prompt_text(pair.prompt), a=first, b=second)

    def p_first(self, texts: Sequence[str]) -> list[float]:
        """P(the judge answers "A") among {A, B} for each judge prompt."""
        items = [ScoreItem(t, letter) for t in texts for letter in ("A", "B")]
        res = self.scorer.score(items)
        return [sigmoid(res[2 * i].logprob - res[2 * i + 1].logprob) for i in range(len(texts))]

    def annotate(self, pairs: Sequence[PreferencePair]) -> list[Annotation]:
        """Judge every pair in both orders (batched by ``batch_pairs``); NaN per ``nan_policy``."""
        out = []
        steps = range(0, len(pairs), self.batch_pairs)
        for s in tqdm(steps, desc="llm-judge", disable=not self.progress, leave=False):
            chunk = pairs[s:s + self.batch_pairs]
            texts = [self.judge_text(p, p.response_a, p.response_b) for p in chunk]
            if self.both_orders:
                texts += [self.judge_text(p, p.response_b, p.response_a) for p in chunk]
            probs = self.p_first(texts)
            for k, pair in enumerate(chunk):
                p_ba = probs[len(chunk) + k] if self.both_orders else None
                if math.isnan(probs[k]) or (p_ba is not None and math.isnan(p_ba)):
                    if self.nan_policy == "error":
                        raise DataError(f"pair {pair.id}: judge score is NaN (prompt skipped for context "
                                        "length?); set nan_policy=skip to drop and count it")
                    self.counts["nan_pairs_skipped"] += 1
                    continue
                out.append(self._annotation(pair, probs[k], p_ba))
        self.counts["pairs"] += len(pairs)
        self.counts["annotated"] += len(out)
        self.counts["score_ties"] += sum(a.preferred == "tie" for a in out)
        return out

    @staticmethod
    def _annotation(pair: PreferencePair, p_ab: float, p_ba: float | None) -> Annotation:
        # In the swapped order pair.response_a is shown second, so it wins when the judge says "B".
        p = p_ab if p_ba is None else 0.5 * (p_ab + (1.0 - p_ba))
        if abs(p - 0.5) < 1e-9:  # rounding of 0.5·(x + (1 − x)) must not invent a winner
            p = 0.5
        preferred = "A" if p > 0.5 else "B" if p < 0.5 else "tie"
        details = {"p_order_ab": p_ab}
        if p_ba is not None:
            details.update(p_order_ba=p_ba, position_bias=0.5 * (p_ab + p_ba) - 0.5)
        return Annotation(pair.id, preferred, p, confidence_from_p(p), "llm_judge", details)
