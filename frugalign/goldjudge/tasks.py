"""Common interface of the gold-judge tasks.

A task hands out prompts and scores responses; a simulated "gold human"
labeller only needs :meth:`BenchTask.prefer`::

    task = get_task("ifeval")
    prompts = task.prompts(n=64, split="train", seed=0)
    label, s_a, s_b = task.prefer(prompts[0], response_a, response_b)  # "A"|"B"|"tie"

Every gold score is *gated*: a response that is not about its base question
(see :mod:`frugalign.goldjudge.relevance`) gets the task's floor score.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from frugalign.goldjudge.questions import DEFAULT_SOURCES, SOURCES, BaseQuestion, questions_for_split
from frugalign.goldjudge.relevance import RelevanceGate


@dataclass(frozen=True)
class BenchPrompt:
    """One benchmark prompt.

    Attributes:
        id: unique and parseable: ``task/question_id/s{seed}v{variant}``.
        prompt: full text shown to the policy (question + constraints).
        question: the base question alone (what relevance is judged against).
        question_id: id of the base question (``mtbench:81``).
        split: ``train`` or ``test`` (fixed by ``question_id``).
        task: task name.
        instruction_ids: IFEval instruction ids of the constraints (maybe empty).
        kwargs: one kwargs dict per instruction id.
        seed, variant: what the constraint draw was derived from.
    """

    id: str
    prompt: str
    question: str
    question_id: str
    split: str
    task: str
    instruction_ids: tuple[str, ...] = ()
    kwargs: tuple[dict[str, Any], ...] = field(default=())
    seed: int = 0
    variant: int = 0

    def __hash__(self) -> int:  # kwargs holds dicts; the id is unique anyway
        return hash(self.id)

    @property
    def constraints(self) -> list[dict[str, Any]]:
        """``[{"instruction_id": ..., "kwargs": {...}}, ...]``."""
        return [{"instruction_id": i, "kwargs": dict(k)} for i, k in zip(self.instruction_ids, self.kwargs)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (lists instead of tuples)."""
        d = asdict(self)
        d["instruction_ids"] = list(self.instruction_ids)
        d["kwargs"] = [dict(k) for k in self.kwargs]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchPrompt:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["instruction_ids"] = tuple(d.get("instruction_ids", ()))
        d["kwargs"] = tuple(dict(k) for k in d.get("kwargs", ()))
        return cls(**d)


def parse_prompt_id(prompt_id: str) -> tuple[str, str, int, int]:
    """``task/question_id/s{seed}v{variant}`` -> (task, question_id, seed, variant)."""
    task, qid, tail = prompt_id.split("/")
    seed, variant = tail[1:].split("v")
    return task, qid, int(seed), int(variant)


class BenchTask:
    """Base class: prompt generation, gating, scoring and preferences.

    Subclasses set ``name``, ``floor`` (score of a gated response) and
    ``tie_threshold``, and implement :meth:`make_prompt` and :meth:`raw_score`.
    """

    name = "base"
    floor = 0.0
    tie_threshold = 0.0

    def __init__(
        self,
        gate: RelevanceGate | None = None,
        sources: tuple[str, ...] = DEFAULT_SOURCES,
        tie_threshold: float | None = None,
        gated: bool = True,
    ):
        self.gate = gate if gate is not None else RelevanceGate()
        self.sources = tuple(sources)
        self.gated = gated
        if tie_threshold is not None:
            self.tie_threshold = float(tie_threshold)

    # ---- prompts ---------------------------------------------------------
    def questions(self, split: str = "train") -> tuple[BaseQuestion, ...]:
        """Base questions of a split (``train``, ``test`` or ``all``)."""
        return questions_for_split(split, self.sources)

    def make_prompt(self, question: BaseQuestion, seed: int = 0, variant: int = 0) -> BenchPrompt:
        """Build the prompt for one base question (deterministic)."""
        raise NotImplementedError

    def bare_question_prompt(self, question: BaseQuestion, seed: int = 0, variant: int = 0) -> BenchPrompt:
        """The question alone, no constraint shown (variants differ only by id): a task's ``make_prompt``
        when its preference is not written in the prompt."""
        return BenchPrompt(id=self._prompt_id(question, seed, variant), prompt=question.text, question=question.text,
                           question_id=question.id, split=question.split, task=self.name, seed=seed, variant=variant)

    def prompts(self, n: int | None = None, split: str = "train", seed: int = 0) -> list[BenchPrompt]:
        """``n`` prompts of ``split`` (default: one per base question).

        Base questions are shuffled by ``seed`` and cycled: every question is
        used once before any gets a second variant (fresh constraints).
        """
        qs = list(self.questions(split))
        if not qs:
            return []
        random.Random(f"{self.name}|{seed}|order").shuffle(qs)
        n = len(qs) if n is None else int(n)
        return [self.make_prompt(qs[i % len(qs)], seed, i // len(qs)) for i in range(n)]

    def get(self, prompt_id: str) -> BenchPrompt:
        """Rebuild a prompt from its id."""
        task, qid, seed, variant = parse_prompt_id(prompt_id)
        if task != self.name:
            raise ValueError(f"prompt {prompt_id!r} belongs to task {task!r}, not {self.name!r}")
        by_id = {q.id: q for q in self.questions("all")}
        if qid not in by_id:  # drawn from an opt-in source: the id names it
            by_id = {q.id: q for q in questions_for_split("all", SOURCES)}
        return self.make_prompt(by_id[qid], seed, variant)

    def _prompt_id(self, question: BaseQuestion, seed: int, variant: int) -> str:
        return f"{self.name}/{question.id}/s{seed}v{variant}"

    # ---- scoring ---------------------------------------------------------
    def raw_score(self, prompt: BenchPrompt, response: str) -> float:
        """Ungated gold score."""
        raise NotImplementedError

    def score_many(self, prompts: Sequence[BenchPrompt], responses: Sequence[str]) -> list[float]:
        """Gated gold scores (one batched relevance pass)."""
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses must have the same length")
        raw = [self.raw_score(p, r) for p, r in zip(prompts, responses)]
        if not self.gated:
            return raw
        ok = self.gate.is_relevant_many([p.question for p in prompts], list(responses))
        return [s if keep else self.floor for s, keep in zip(raw, ok)]

    def score(self, prompt: BenchPrompt, response: str) -> float:
        """Gated gold score of one response."""
        return self.score_many([prompt], [response])[0]

    def details(self, prompt: BenchPrompt, response: str) -> dict[str, Any]:
        """Raw score, relevance evidence and gated score, for inspection."""
        rel = self.gate.details([prompt.question], [response])[0]
        raw = self.raw_score(prompt, response)
        gated = raw if (rel["relevant"] or not self.gated) else self.floor
        return {"raw": raw, "score": gated, **rel}

    def decide(self, score_a: float, score_b: float) -> str:
        """``A``, ``B`` or ``tie`` (|difference| under ``tie_threshold``)."""
        diff = score_a - score_b
        if abs(diff) < max(self.tie_threshold, 1e-9):
            return "tie"
        return "A" if diff > 0 else "B"

    def prefer(self, prompt: BenchPrompt, a: str, b: str) -> tuple[str, float, float]:
        """Gold preference between two responses: (label, score_a, score_b)."""
        sa, sb = self.score_many([prompt, prompt], [a, b])
        return self.decide(sa, sb), sa, sb
