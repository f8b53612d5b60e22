"""frugalign's model calls use the current transformers API: no deprecation on the pinned versions.

transformers 5.x renamed the KV-cache keyword ``past_key_values`` to ``cache``
(``past_key_values`` warns with a FutureWarning, and goes in 5.40) and the
output field ``out.past_key_values`` to ``out.cache`` (a once-per-process
logger warning). Both are errors here, so a refreshed lock (``make lock``) that
brings a new deprecation fails its tests instead of printing on every run.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import pytest

from frugalign.generate import GenerationRequest, GenerationSettings, TransformersBackend
from frugalign.logprobs import LogProbScorer, ScoreItem, cache_kwarg, decoder_of


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def no_deprecations():
    """FutureWarning and DeprecationWarning raise; transformers' logged deprecations are collected and fail."""
    from transformers.utils import logging as hf_logging

    root = hf_logging.get_logger()           # the "transformers" library logger
    handler = _Records()
    root.addHandler(handler)
    logging.Logger.warning_once.cache_clear()  # "once" per process: an earlier test may have used it up
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            warnings.simplefilter("error", DeprecationWarning)
            yield
    finally:
        root.removeHandler(handler)
    deprecated = [m for m in handler.messages if "deprecat" in m.lower()]
    assert not deprecated, deprecated


def shared_prompt_items():
    prompt = "Write a poem about the sea."
    return [ScoreItem(prompt, r) for r in ("Blue.", "The sea is blue and deep.", "Waves!")] + [
        ScoreItem("What is the capital of France?", "Paris.")]


def test_cache_keyword_is_the_current_one(tiny_model):
    import inspect

    params = inspect.signature(type(decoder_of(tiny_model)).forward).parameters
    assert cache_kwarg(decoder_of(tiny_model)) in params


def test_prefix_cache_scoring_has_no_deprecation(tiny_model, tiny_tokenizer):
    items = shared_prompt_items()
    shared = LogProbScorer(tiny_model, tiny_tokenizer, share_prompts=True, progress=False)
    with no_deprecations():
        got = shared.score(items)
    # The prompt really went through the KV cache: fewer tokens forwarded than
    # prompt+response per item, and the same numbers as without sharing.
    plain = LogProbScorer(tiny_model, tiny_tokenizer, share_prompts=False, progress=False)
    want = plain.score(items)
    assert shared.stats.tokens_forward < plain.stats.tokens_forward
    for g, w in zip(got, want):
        assert g.logprob == pytest.approx(w.logprob, abs=1e-4)


def test_generation_has_no_deprecation(tiny_model, tiny_tokenizer):
    settings = GenerationSettings(n=2, temperature=0.7, max_new_tokens=4, batch_size=4)
    with no_deprecations():
        out = TransformersBackend(tiny_model, tiny_tokenizer, progress=False).generate(
            [GenerationRequest("Say hi."), GenerationRequest("Name a city.", system="Be brief.")], settings)
    assert [len(r) for r in out] == [2, 2]


def test_lora_training_step_prints_no_deprecation(tiny_tokenizer, tmp_path):
    """The training loop's model set-up (activation checkpointing, peft's LoRA wrap) on the current API."""
    from conftest import build_model

    from frugalign.data import write_records
    from frugalign.train import TrainConfig, train

    rows = [{"prompt": f"Question {i}?", "chosen": "Paris is the capital of France.", "rejected": "No."}
            for i in range(4)]
    write_records(tmp_path / "d.jsonl", rows)
    cfg = TrainConfig(data=str(tmp_path / "d.jsonl"), output_dir=str(tmp_path / "run"), finetune="lora", lora_r=2,
                      max_steps=1, batch_size=2, micro_batch_size=2, precision="float32", progress=False,
                      tensorboard=False, threads=1)
    with no_deprecations():
        summary = train(cfg, build_model(tiny_tokenizer), tiny_tokenizer)
    assert summary["steps"] == 1
