"""Task ``sentiment``: a denser second gold judge.

Same base questions, shown without constraints. Gold = VADER compound score
of the response (in [-1, 1], higher = more positive), gated on relevance.
Scores closer than 0.05 are a tie (VADER's own neutral band width).

Gated floor is -1.0, the minimum of the scale, not 0: with 0 an irrelevant
upbeat canned reply would still beat every relevant but negative answer.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from frugalign.goldjudge.tasks import BenchPrompt, BenchTask

#: Gold difference below which two responses tie.
SENTIMENT_TIE = 0.05


@lru_cache(maxsize=1)
def _analyzer():
    # The lexicon ships inside the vaderSentiment package: no download.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(text: str) -> float:
    """VADER compound sentiment of ``text`` in [-1, 1]."""
    return float(_analyzer().polarity_scores(text)["compound"])


class SentimentTask(BenchTask):
    """Positivity gold judge (VADER), gated on relevance."""

    name = "sentiment"
    floor = -1.0
    tie_threshold = SENTIMENT_TIE

    def __init__(self, floor: float = -1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.floor = float(floor)

    make_prompt = BenchTask.bare_question_prompt

    def raw_score(self, prompt: BenchPrompt, response: str) -> float:
        """VADER compound of the response (ungated)."""
        return vader_compound(response) if response.strip() else self.floor
