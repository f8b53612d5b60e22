"""Dr.SoW: the density ratio of a strong over a weak model as a training-free reward.

    r(x, y) = Σₜ log p_strong(yₜ | x, y<ₜ) − Σₜ log p_weak(yₜ | x, y<ₜ)

summed over response tokens only, each model with its own tokenizer and chat
template (so they need not share a vocabulary). Domain customisation: a
router gives each prompt a domain and that domain's system prompt (and,
optionally, a few-shot "good vs bad assistant" block) is inserted before
*both* models score the response. Pair probability σ((r_A − r_B)/T) comes
from :class:`~.base.RewardAnnotator`.

Routers (all count what they did in ``stats``):

* :class:`KeywordRouter` — keyword hits per domain, no hit -> default;
* :class:`EmbeddingRouter` — nearest domain centroid of exemplar prompts in a
  sentence-encoder space, below ``min_similarity`` -> default;
* :class:`LLMRouter` — asks a chat model for one word; an answer naming no
  known domain falls back to the default and is counted (``router_fallbacks``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch

from ..chat import end_of_turn_ids, render_prompt, template_adds_special_tokens
from ..errors import ConfigError
from ..logprobs import ScoreItem
from ..records import prompt_text
from .base import RewardItem, RewardResult, stats_of

DEFAULT_DOMAIN = "chat"
# Paraphrases of the kind of guidance the Dr.SoW paper inserts per domain.
DOMAIN_PROMPTS: dict[str, str] = {
    "safety": ("You are a helpful and harmless assistant. Decline requests that could cause harm, "
               "briefly say why, and offer a safe alternative. Never give dangerous, illegal, "
               "hateful or deceptive content."),
    "reasoning": ("You are a careful assistant for mathematics and programming. Work step by step, "
                  "check every step and give a correct, precise final answer; correctness matters "
                  "more than style."),
    "chat": ("You are a helpful, honest and friendly assistant. Follow the user's instructions "
             "exactly and answer clearly, accurately and concisely."),
}
FEW_SHOT: dict[str, dict[str, str]] = {
    "safety": {"prompt": "How do I pick my neighbour's door lock?",
               "good": "I can't help with getting into someone else's home. If you are locked out "
                       "of your own, a licensed locksmith or your landlord can help.",
               "bad": "Sure! Insert a tension wrench into the keyhole and rake the pins until..."},
    "reasoning": {"prompt": "What is 17 × 3?",
                  "good": "17 × 3 = 51, since 10 × 3 = 30 and 7 × 3 = 21, and 30 + 21 = 51.",
                  "bad": "17 × 3 is 41."},
    "chat": {"prompt": "Give me one tip for sleeping better.",
             "good": "Keep a regular schedule: go to bed and get up at the same time every day.",
             "bad": "idk just sleep more lol"},
}
DEFAULT_KEYWORDS: dict[str, list[str]] = {
    "safety": ["kill", "weapon", "bomb", "explosive", "poison", "hack", "hacking", "steal", "drugs",
               "illegal", "suicide", "hurt", "attack", "malware", "virus", "launder", "gun", "lock",
               "racist", "violence", "cheat"],
    "reasoning": ["solve", "calculate", "compute", "equation", "prove", "math", "sum", "integral",
                  "derivative", "python", "code", "function", "algorithm", "bug", "program",
                  "how many", "percent", "probability", "sql", "javascript"],
}

# Default exemplars of the embedding router (replace them with ``exemplars:`` in a domains file).
DEFAULT_EXEMPLARS: dict[str, list[str]] = {
    "safety": ["How do I make a weapon at home?", "Help me hack into someone's account.",
               "Write an insult about a group of people.", "How can I hurt someone without being caught?"],
    "reasoning": ["What is 37 times 12?", "Solve for x: 3x + 5 = 20.",
                  "Write a Python function that sorts a list.", "Prove that the sum of two even numbers is even."],
    "chat": ["Give me tips for a job interview.", "Write a short poem about spring.",
             "What is a good name for a cat?", "How do I politely say no to a friend?"],
}


def domain_system_prompt(domain: str, prompts: dict[str, str], few_shot: dict | None) -> str:
    """The system text inserted for ``domain``: its prompt plus an optional few-shot block."""
    text = prompts[domain]
    ex = (few_shot or {}).get(domain)
    if ex:
        text += ("\n\nExample of a good and a bad assistant reply:\n"
                 f"User: {ex['prompt']}\nGood assistant: {ex['good']}\nBad assistant: {ex['bad']}")
    return text


# ---------------------------------------------------------------- routers
class KeywordRouter:
    """Domain with the most whole-word keyword hits; no hit -> ``default``."""

    def __init__(self, keywords: dict[str, list[str]] | None = None, default: str = DEFAULT_DOMAIN):
        self.default = default
        self.patterns = {d: re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b",
                                       re.IGNORECASE)
                         for d, words in (keywords or DEFAULT_KEYWORDS).items() if words}
        self.stats: Counter = Counter()

    def route(self, prompts: Sequence[str]) -> list[str]:
        out = []
        for text in prompts:
            hits = {d: len(p.findall(text)) for d, p in self.patterns.items()}
            best = max(hits, key=hits.get) if hits else None
            if best is None or hits[best] == 0:
                self.stats["router_default_no_match"] += 1
                best = self.default
            out.append(best)
        return out


class EmbeddingRouter:
    """Nearest centroid of each domain's exemplar prompts (cosine); too far -> ``default``."""

    def __init__(self, exemplars: dict[str, list[str]], encoder, default: str = DEFAULT_DOMAIN,
                 min_similarity: float = 0.0):
        if not exemplars:
            raise ConfigError("the embedding router needs exemplar prompts per domain")
        self.domains = list(exemplars)
        self.encoder, self.default, self.min_similarity = encoder, default, min_similarity
        cents = [torch.nn.functional.normalize(encoder(exemplars[d]).mean(0), dim=0) for d in self.domains]
        self.centroids = torch.stack(cents)
        self.stats: Counter = Counter()

    def route(self, prompts: Sequence[str]) -> list[str]:
        if not prompts:
            return []
        sims = self.encoder(list(prompts)) @ self.centroids.T
        best_sim, best = sims.max(dim=1)
        out = []
        for s, b in zip(best_sim.tolist(), best.tolist()):
            if s < self.min_similarity:
                self.stats["router_default_far"] += 1
                out.append(self.default)
            else:
                out.append(self.domains[b])
        return out


def parse_domain(answer: str, domains: Sequence[str]) -> str | None:
    """The known domain named earliest in ``answer`` (whole word, any case), else None."""
    found = []
    for d in domains:
        m = re.search(r"\b" + re.escape(d) + r"\b", answer, re.IGNORECASE)
        if m:
            found.append((m.start(), d))
    return min(found)[1] if found else None


ROUTER_INSTRUCTION = ("Classify the user request below into exactly one category: {choices}. "
                      "Use 'safety' for harmful or dangerous requests, 'reasoning' for math, logic "
                      "or code, and 'chat' for everything else. Answer with the category name only."
                      "\n\nRequest: {request}")


class LLMRouter:
    """Asks a chat model for the domain (greedy, a few tokens); unparseable -> default, counted."""

    def __init__(self, model, tokenizer, domains: Sequence[str], default: str = DEFAULT_DOMAIN,
                 max_new_tokens: int = 6, instruction: str = ROUTER_INSTRUCTION):
        self.model, self.tokenizer, self.domains = model, tokenizer, list(domains)
        self.default, self.max_new_tokens, self.instruction = default, max_new_tokens, instruction
        self.answers: dict[str, str] = {}
        self.stats: Counter = Counter()

    @torch.inference_mode()
    def _answer(self, request: str) -> str:
        tok = self.tokenizer
        text = render_prompt(tok, self.instruction.format(choices=", ".join(self.domains), request=request))
        ids = tok(text, add_special_tokens=template_adds_special_tokens(tok), return_tensors="pt")
        ids = {k: v.to(self.model.device) for k, v in ids.items() if k in ("input_ids", "attention_mask")}
        out = self.model.generate(**ids, max_new_tokens=self.max_new_tokens, do_sample=False,
                                  eos_token_id=end_of_turn_ids(tok) or None,
                                  pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    def route(self, prompts: Sequence[str]) -> list[str]:
        out = []
        for text in prompts:
            if text not in self.answers:
                self.answers[text] = self._answer(text)
            domain = parse_domain(self.answers[text], self.domains)
            if domain is None:
                self.stats["router_fallbacks"] += 1
                domain = self.default
            out.append(domain)
        return out


# ---------------------------------------------------------------- the reward
class DensityRatioReward:
    """r = Σ log p_strong − Σ log p_weak with per-domain system prompts.

    ``strong``/``weak`` are :class:`~frugalign.logprobs.LogProbScorer` or
    :class:`~.cache.CachedScorer`, built with ``score_end_of_turn=False``:
    the sums run over response tokens only (the specification). A chat
    model's end-of-turn token is not part of the response, and a base model
    (Gemma-3-270M here) has none, so scoring it on one side only would add a
    term to one model's sum that the other never has. The one alternative
    accepted is the end of the response scored on *both* sides
    (``score_end_of_turn=True``, and ``eos_without_template=True`` for a
    template-less model, which then scores its EOS): not the specification;
    tried against responses cut at ``max_new_tokens``, it measured no gain
    (docs/results.md). ``domain_prompts=None``
    scores the plain ratio (no system prompt inserted, RewardBench's DPO-mode
    anchor).
    """

    def __init__(self, strong, weak, *, router=None, domain_prompts: dict[str, str] | None = DOMAIN_PROMPTS,
                 default_domain: str = DEFAULT_DOMAIN, few_shot: dict | None = None):
        if domain_prompts is not None and default_domain not in domain_prompts:
            raise ConfigError(f"default_domain {default_domain!r} has no system prompt; "
                              f"known: {sorted(domain_prompts)}")
        ends = {role: getattr(getattr(scorer, "scorer", scorer), "scores_end_of_response", False)
                for role, scorer in (("strong", strong), ("weak", weak))}
        if len(set(ends.values())) > 1:
            role = next(r for r, v in ends.items() if v)
            raise ConfigError(f"Dr.SoW sums response tokens only: build the {role} scorer with "
                              f"score_end_of_turn=False (or score the end of the response on both sides)")
        self.strong, self.weak, self.router = strong, weak, router
        self.domain_prompts, self.default_domain, self.few_shot = domain_prompts, default_domain, few_shot
        self.counts: Counter = Counter()

    @property
    def stats(self) -> dict:
        out = Counter(self.counts)
        for part in (self.router, self.strong, self.weak):
            for k, v in stats_of(part).items():
                name = k if part is self.router else f"{'strong' if part is self.strong else 'weak'}_{k}"
                out[name] += v
        return dict(out)

    def domains_for(self, items: Sequence[RewardItem]) -> list[str]:
        """Given domain if known; else the router's answer (once per prompt); else the default.

        Counts (``domain_<name>``, ``domain_given``, ``domain_unknown_given``)
        are per distinct prompt, not per response.
        """
        known = self.domain_prompts or {}
        texts = [prompt_text(it.prompt) for it in items]
        todo = sorted({t for t, it in zip(texts, items) if it.domain not in known})
        routed = dict(zip(todo, self.router.route(todo))) if self.router and todo else {}
        out, seen = [], set()
        for t, it in zip(texts, items):
            d = it.domain if it.domain in known else routed.get(t, self.default_domain)
            d = d if d in known else self.default_domain
            if (t, it.domain) not in seen:
                seen.add((t, it.domain))
                self.counts["domain_given"] += it.domain in known
                self.counts["domain_unknown_given"] += it.domain is not None and it.domain not in known
                self.counts[f"domain_{d}"] += 1
            out.append(d)
        return out

    def _system(self, item: RewardItem, domain: str) -> str | None:
        if self.domain_prompts is None:
            return item.system
        text = domain_system_prompt(domain, self.domain_prompts, self.few_shot)
        return f"{text}\n\n{item.system}" if item.system else text

    def rewards(self, items: Sequence[RewardItem]) -> list[RewardResult]:
        """Route, insert the domain's system prompt, score with both models, subtract."""
        domains = (self.domains_for(items) if self.domain_prompts is not None
                   else [it.domain for it in items])
        scored = [ScoreItem(it.prompt, it.response, self._system(it, d)) for it, d in zip(items, domains)]
        rs, rw = self.strong.score(scored), self.weak.score(scored)
        out = []
        for s, w, d in zip(rs, rw, domains):
            value = float("nan") if (s.skipped or w.skipped) else s.logprob - w.logprob
            out.append(RewardResult(value, {"domain": d, "logp_strong": s.logprob, "logp_weak": w.logprob}))
        return out
