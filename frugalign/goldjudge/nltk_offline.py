"""Offline replacements for the NLTK data that if-verifiable's checkers load.

``if_verifiable.ifeval`` counts sentences with NLTK's ``punkt`` model and
tokenises words with ``nltk.word_tokenize`` (which also needs ``punkt``);
neither can be downloaded here. We patch *only the if-verifiable module's*
view of them with regex tokenisers, always (not only when punkt is missing),
so gold scores do not depend on what happens to be in ``~/nltk_data``.

Sentence splitting reuses if-verifiable's own rule-based
``split_into_sentences`` (abbreviations, decimals, ellipses), which is the
splitter IFEval uses elsewhere.
"""

from __future__ import annotations

import re
import types
from typing import Any

# Words, contractions kept whole ("don't"), numbers with decimals, and any other
# non-space character as its own token (punctuation), roughly like Treebank.
_WORD_RE = re.compile(r"\w+(?:['’]\w+)*|\d+(?:[.,]\d+)*|[^\w\s]")


def regex_word_tokenize(text: str, *args: Any, **kwargs: Any) -> list[str]:
    """Regex stand-in for ``nltk.word_tokenize`` (extra arguments ignored)."""
    return _WORD_RE.findall(text)


class RegexSentenceTokenizer:
    """Stand-in for NLTK's punkt tokenizer: ``tokenize(text) -> list[str]``."""

    def tokenize(self, text: str) -> list[str]:
        from if_verifiable.ifeval.instructions_util import split_into_sentences

        return [s for s in split_into_sentences(text) if s.strip()]


class NltkProxy(types.SimpleNamespace):
    """The ``nltk`` module as one package sees it, with data-free tokenisers."""

    def __init__(self, real: types.ModuleType):
        super().__init__()
        object.__setattr__(self, "_real", real)
        self.word_tokenize = regex_word_tokenize
        self.sent_tokenize = lambda text, *a, **k: RegexSentenceTokenizer().tokenize(text)

    def __getattr__(self, name: str) -> Any:  # only called for missing attributes
        return getattr(object.__getattribute__(self, "_real"), name)


_INSTALLED = False


def install_offline_tokenizers() -> None:
    """Patch ``if_verifiable.ifeval`` to tokenise without NLTK data (idempotent).

    Only the if-verifiable modules are touched; global ``nltk`` is unchanged.
    """
    global _INSTALLED
    if _INSTALLED:
        return
    import if_verifiable.ifeval.instructions as ins
    import if_verifiable.ifeval.instructions_util as util

    sentence_tokenizer = RegexSentenceTokenizer()
    util._get_sentence_tokenizer = lambda: sentence_tokenizer  # count_sentences looks it up at call time
    proxy = NltkProxy(util.nltk if not isinstance(util.nltk, NltkProxy) else util.nltk._real)
    util.nltk = proxy  # CapitalWordFrequencyChecker calls instructions_util.nltk.word_tokenize
    if hasattr(ins, "nltk"):
        ins.nltk = proxy
    _INSTALLED = True
