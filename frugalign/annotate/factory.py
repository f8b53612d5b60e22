"""Build any annotator from one settings object (shared by ``annotate`` and ``eval``).

``model`` / ``ref_model`` mean, per method:

=============  ========================  ===============================
method         model                     ref_model
=============  ========================  ===============================
density-ratio  strong model              weak model (default gemma3-270m)
implicit       policy π_θ                reference π_ref (required)
llm-judge      judge                     —
weak-judge     —  (``judge.backbone``)   —
=============  ========================  ===============================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..config import block, settle_blocks
from ..errors import ConfigError, ModelLoadError
from ..models import DEFAULT_MODEL
from ..records import Annotation, PreferencePair
from .weak_judge import WeakJudgeSettings

METHODS = ("weak-judge", "density-ratio", "implicit", "llm-judge")
ROUTERS = ("none", "keyword", "embedding", "llm")
DEFAULT_WEAK = "gemma3-270m"


@dataclass
class AnnotatorSettings:
    method: str = field(default="density-ratio", metadata={"help": " | ".join(METHODS)})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "strong (density-ratio), policy (implicit) or judge (llm-judge) model"})
    ref_model: str | None = field(default=None, metadata={"help": f"weak model (density-ratio, default {DEFAULT_WEAK}) or reference (implicit)"})
    temperature: float = field(default=1.0, metadata={"help": "density ratio: p = σ((r_A − r_B)/T)"})
    router: str = field(default="keyword", metadata={"help": " | ".join(ROUTERS)})
    router_model: str | None = field(default=None, metadata={"help": "llm router model (default: model)"})
    domain_prompts: bool = field(default=True, metadata={"help": "insert per-domain system prompts (density-ratio)"})
    end_of_response: bool = field(default=False, metadata={
        "help": "density-ratio: also score the token that ends the response, on both sides "
                "(end-of-turn; EOS for a template-less model). Not the specification"})
    domains_file: str | None = field(default=None, metadata={"help": "YAML with prompts/keywords/exemplars/few_shot per domain"})
    default_domain: str = "chat"
    router_min_similarity: float = 0.0
    few_shot: bool = False
    rejected: str | None = field(default=None, metadata={"help": "pool pairs: lowest | random (default: random for density-ratio, else lowest)"})
    beta: float = 0.1
    mix_lambda: float = field(default=0.0, metadata={"help": "implicit: extrapolated logits (1+λ)h_θ − λh_ref when > 0"})
    labels: str | None = field(default=None, metadata={
        "help": "human labels (annotations file): weak-judge training data; density-ratio/implicit: fit the temperature on them"})
    label_pairs: str | None = field(default=None, metadata={"help": "weak-judge: pairs the labels refer to (default: input)"})
    judge: WeakJudgeSettings = block(WeakJudgeSettings, "weak-judge: the judge's backbone and training "
                                     "(its seed is this seed)", prefix="judge_",
                                     legacy=("backbone", "lora", "lora_r", "epochs", "lr", "batch_size", "holdout",
                                             "patience", "calibrate"))
    judge_save: str | None = field(default=None, metadata={"help": "weak-judge: save the trained judge here"})
    judge_load: str | None = field(default=None, metadata={"help": "weak-judge: load a saved judge instead of training"})
    nan_policy: str = field(default="error", metadata={"help": "error | skip (count and drop pairs with NaN scores)"})
    cache: bool = field(default=True, metadata={"help": "cache log-probs on disk"})
    cache_path: str | None = field(default=None, metadata={"help": "SQLite file (default $FRUGALIGN_CACHE/scores.sqlite)"})
    dtype: str = field(default="auto", metadata={"help": "auto (bfloat16 only where native and faster) | float32 | bfloat16"})
    device: str = "cpu"
    token_budget: int = 4096
    max_batch: int = 64
    overflow: str = field(default="error", metadata={"help": "error | skip | truncate"})
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        settle_blocks(self)

    def validate(self) -> None:
        self.judge.validate()
        if self.method not in METHODS:
            raise ConfigError(f"method={self.method!r}: expected one of {METHODS}")
        if self.router not in ROUTERS:
            raise ConfigError(f"router={self.router!r}: expected one of {ROUTERS}")
        if self.method == "implicit" and not self.ref_model:
            raise ConfigError("method=implicit needs ref_model=... (the initial/SFT model)")
        if self.method == "weak-judge" and not (self.labels or self.judge_load):
            raise ConfigError("method=weak-judge needs labels=... (human labels) or judge_load=...")
        if self.method == "llm-judge" and self.labels:
            raise ConfigError("labels=... (temperature calibration) is not supported for method=llm-judge")

    def pool_rejected(self) -> str:
        """Pool pairs: Dr.SoW picks a random lower response, SPA (and the rest) the lowest."""
        return self.rejected or ("random" if self.method == "density-ratio" else "lowest")


def load_role(role: str, spec: str, s: AnnotatorSettings):
    """Load a model, naming its role in the one-line error if it fails."""
    from ..models import load_model

    try:
        return load_model(spec, dtype=s.dtype, device=s.device)
    except ModelLoadError as e:
        raise ModelLoadError(f"{role} model {spec!r}: {e}") from None


def check_models(s: AnnotatorSettings) -> None:
    """Resolve every model spec before loading any, so a typo fails in a second, not after a load."""
    from ..models import resolve_source

    roles = {"density-ratio": [("strong", s.model), ("weak", s.ref_model or DEFAULT_WEAK)],
             "implicit": [("policy", s.model), ("reference", s.ref_model)],
             "llm-judge": [("judge", s.model)],
             "weak-judge": [] if s.judge.backbone == "minilm" or s.judge_load
             else [("weak-judge backbone", s.judge.backbone)]}[s.method]
    if s.method == "density-ratio" and s.router == "llm" and s.router_model:
        roles.append(("router", s.router_model))
    for role, spec in roles:
        try:
            resolve_source(spec)
        except ModelLoadError as e:
            raise ModelLoadError(f"{role} model {spec!r}: {e}") from None


def _cached_scorer(model, tok, s: AnnotatorSettings, cache, desc: str, *, score_end_of_turn: bool = True,
                   eos_without_template: bool = False):
    from ..logprobs import LogProbScorer
    from .cache import CachedScorer

    scorer = LogProbScorer(model, tok, token_budget=s.token_budget, max_batch=s.max_batch,
                           overflow=s.overflow, progress=s.progress, desc=desc,
                           score_end_of_turn=score_end_of_turn, eos_without_template=eos_without_template)
    return CachedScorer(scorer, cache)


def _domains_file(path: str | None) -> dict:
    if not path:
        return {}
    from ..config import load_yaml

    data = load_yaml(path)
    unknown = set(data) - {"prompts", "keywords", "exemplars", "few_shot"}
    if unknown:
        raise ConfigError(f"{path}: unknown sections {sorted(unknown)}; "
                          "expected prompts, keywords, exemplars, few_shot")
    return data


def _router(s: AnnotatorSettings, domains: dict, known: Sequence[str], strong):
    from . import density_ratio as dr

    if s.router == "none":
        return None
    if s.router == "keyword":
        return dr.KeywordRouter(domains.get("keywords"), s.default_domain)
    if s.router == "embedding":
        from .encoder import minilm_encoder

        exemplars = domains.get("exemplars") or dr.DEFAULT_EXEMPLARS
        return dr.EmbeddingRouter(exemplars, minilm_encoder(s.device), s.default_domain,
                                  s.router_min_similarity)
    model, tok = strong if not s.router_model else load_role("router", s.router_model, s)
    return dr.LLMRouter(model, tok, known, s.default_domain)


def build_density_ratio(s: AnnotatorSettings, cache):
    """Strong and weak scorers (cached), router and domain prompts -> a RewardAnnotator."""
    from . import density_ratio as dr
    from .base import RewardAnnotator

    strong = load_role("strong", s.model, s)
    weak = load_role("weak", s.ref_model or DEFAULT_WEAK, s)
    domains = _domains_file(s.domains_file)
    prompts = {**dr.DOMAIN_PROMPTS, **(domains.get("prompts") or {})} if s.domain_prompts else None
    few_shot = {**dr.FEW_SHOT, **(domains.get("few_shot") or {})} if s.few_shot else None
    router = _router(s, domains, list(prompts or dr.DOMAIN_PROMPTS), strong) if prompts else None
    reward = dr.DensityRatioReward(
        _cached_scorer(*strong, s, cache, f"strong ({s.model})", score_end_of_turn=s.end_of_response,
                       eos_without_template=s.end_of_response),
        _cached_scorer(*weak, s, cache, f"weak ({s.ref_model or DEFAULT_WEAK})", score_end_of_turn=s.end_of_response,
                       eos_without_template=s.end_of_response),
        router=router, domain_prompts=prompts, default_domain=s.default_domain, few_shot=few_shot)
    return RewardAnnotator(reward, "density_ratio", temperature=s.temperature,
                           nan_policy=s.nan_policy, progress=s.progress)


def build_implicit(s: AnnotatorSettings, cache):
    """Policy and reference scorers (cached) -> SPA's self-annotator."""
    from .implicit import implicit_annotator

    policy = load_role("policy", s.model, s)
    ref = load_role("reference", s.ref_model, s)
    return implicit_annotator(_cached_scorer(*policy, s, cache, f"policy ({s.model})"),
                              _cached_scorer(*ref, s, cache, f"reference ({s.ref_model})"),
                              beta=s.beta, mix_lambda=s.mix_lambda, nan_policy=s.nan_policy,
                              progress=s.progress)


def build_weak_judge(s: AnnotatorSettings, train_pairs: Sequence[PreferencePair] | None,
                     labels: Sequence[Annotation] | None):
    """Load a saved judge or train one on ``labels`` (optionally saving it)."""
    from .weak_judge import WeakJudge, weak_judge_annotator

    if s.judge_load:
        judge = WeakJudge.load(s.judge_load, device=s.device)
    else:
        if not labels or not train_pairs:
            raise ConfigError("weak-judge training needs labels and the pairs they refer to")
        ws = replace(s.judge, seed=s.seed)
        model = tok = None
        if ws.backbone != "minilm":
            model, tok = load_role("weak-judge backbone", ws.backbone, s)
        judge = WeakJudge(ws, model=model, tokenizer=tok, device=s.device, progress=s.progress)
        judge.fit(train_pairs, labels)
        if s.judge_save:
            judge.save(s.judge_save)
    return weak_judge_annotator(judge, nan_policy=s.nan_policy, progress=s.progress)


def build_annotator(s: AnnotatorSettings, *, train_pairs: Sequence[PreferencePair] | None = None,
                    labels: Sequence[Annotation] | None = None):
    """The annotator ``s.method`` describes, with its models loaded and its cache attached."""
    from .cache import ScoreCache

    s.validate()
    check_models(s)
    cache = ScoreCache(s.cache_path) if s.cache else None
    if s.method == "weak-judge":
        return build_weak_judge(s, train_pairs, labels)
    if s.method in ("density-ratio", "implicit"):
        annotator = build_density_ratio(s, cache) if s.method == "density-ratio" else build_implicit(s, cache)
        if labels:  # human labels at hand: fit T on them instead of trusting the raw scale
            if not train_pairs:
                raise ConfigError("temperature calibration needs the pairs the labels refer to")
            annotator.calibrate(train_pairs, labels)
        return annotator
    from .llm_judge import LLMJudge

    model, tok = load_role("judge", s.model, s)
    return LLMJudge(model, tok, cache=cache, progress=s.progress, nan_policy=s.nan_policy,
                    token_budget=s.token_budget, max_batch=s.max_batch, overflow=s.overflow)
