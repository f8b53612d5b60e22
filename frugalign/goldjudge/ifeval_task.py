"""Task ``ifeval``: base question + 3 verifiable IFEval constraints.

Gold score = fraction of the prompt's constraints met, in IFEval's *loose*
sense (a constraint also counts as met when it holds after removing the first
and/or last line or all markdown asterisks), computed by if-verifiable's own
``evaluate_instructions``; then gated on relevance (floor 0).
"""

from __future__ import annotations

import random
from typing import Any

from if_verifiable.common import evaluate_instructions
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from frugalign.goldjudge.constraints import (
    CONSTRAINT_TYPES,
    FIXED_FORMAT_EXCLUDED,
    N_CONSTRAINTS,
    constraint_block,
    draw_constraints,
)
from frugalign.goldjudge.nltk_offline import install_offline_tokenizers
from frugalign.goldjudge.questions import BaseQuestion
from frugalign.goldjudge.tasks import BenchPrompt, BenchTask


class IFEvalTask(BenchTask):
    """Verifiable-constraint gold judge (primary task).

    Args:
        loose: score with IFEval's loose variant (default) or strict.
        n_constraints: constraints per prompt (3 in the benchmark).
        types: candidate constraint types (default: the 8 discriminative ones).
        **kwargs: passed to :class:`BenchTask` (gate, sources, tie_threshold, gated).
    """

    name = "ifeval"
    floor = 0.0
    tie_threshold = 0.0  # scores are multiples of 1/3: only equal scores tie

    def __init__(
        self,
        loose: bool = True,
        n_constraints: int = N_CONSTRAINTS,
        types: tuple[str, ...] = CONSTRAINT_TYPES,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.loose = loose
        self.n_constraints = n_constraints
        self.types = tuple(types)
        install_offline_tokenizers()  # no nltk_data here: regex tokenisers

    def _draw(self, question: BaseQuestion, seed: int, variant: int) -> list:
        """Variant ``variant``'s constraints: drawn from ``Random(task|seed|question|variant)``,
        redrawn (``...|retry k``) while they repeat an earlier variant's, so every variant
        of a question is a different prompt."""
        exclude = FIXED_FORMAT_EXCLUDED if question.fixed_format else frozenset()
        seen: set[str] = set()
        for v in range(variant + 1):  # the earlier variants, to know what not to repeat
            for retry in range(100):
                tag = f"{self.name}|{seed}|{question.id}|{v}" + (f"|retry {retry}" if retry else "")
                cons = draw_constraints(random.Random(tag), self.n_constraints, self.types, exclude)
                if self._key(cons) not in seen:
                    break
            seen.add(self._key(cons))
        return cons

    @staticmethod
    def _key(cons) -> str:
        return repr([(c.instruction_id, sorted(c.kwargs.items())) for c in cons])

    def make_prompt(self, question: BaseQuestion, seed: int = 0, variant: int = 0) -> BenchPrompt:
        """Question + constraints drawn for ``(seed, question, variant)``, distinct across variants."""
        cons = self._draw(question, seed, variant)
        return BenchPrompt(
            id=self._prompt_id(question, seed, variant),
            prompt=f"{question.text}\n\n{constraint_block(cons)}",
            question=question.text,
            question_id=question.id,
            split=question.split,
            task=self.name,
            instruction_ids=tuple(c.instruction_id for c in cons),
            kwargs=tuple(c.kwargs for c in cons),
            seed=seed,
            variant=variant,
        )

    def check(self, prompt: BenchPrompt, response: str) -> dict[str, bool]:
        """Per constraint id: met or not (loose or strict as configured)."""
        results, _ = evaluate_instructions(
            response=response,
            instruction_id_list=list(prompt.instruction_ids),
            kwargs_list=[dict(k) for k in prompt.kwargs],
            prompt=prompt.prompt,
            instruction_registry=INSTRUCTION_DICT,
        )
        return {r.instruction_id: (r.loose_pass if self.loose else r.strict_pass) for r in results}

    def raw_score(self, prompt: BenchPrompt, response: str) -> float:
        """Fraction of the prompt's constraints met (ungated)."""
        if not prompt.instruction_ids:
            return 0.0
        met = self.check(prompt, response)
        # an empty response returns no results: it meets nothing
        return sum(met.values()) / len(prompt.instruction_ids)

    def details(self, prompt: BenchPrompt, response: str) -> dict[str, Any]:
        """Adds the per-constraint results to :meth:`BenchTask.details`."""
        out = super().details(prompt, response)
        out["constraints"] = self.check(prompt, response)
        return out
