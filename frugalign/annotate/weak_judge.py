"""CW-PO's weak judge: a Bradley–Terry reward model trained on the human-labelled pairs.

    loss = −log σ(r_w(x, y⁺) − r_w(x, y⁻))

Two backbones behind one class (:class:`WeakJudge`):

* ``"minilm"`` (cheap): frozen all-MiniLM-L6-v2 embeddings e(x), e(y) of the
  prompt and the response; features [e(x), e(y), e(x)⊙e(y)] feed a small MLP
  head. Embeddings are computed once per text, so an epoch costs almost nothing;
* a causal LM (a spec for :func:`frugalign.models.load_model`, or a loaded
  model): the chat-rendered prompt+response runs through the transformer body
  and a scalar head reads the last token's hidden state; the body is fully
  fine-tuned or adapted with LoRA (peft).

Part of the labels (``holdout``, split by prompt so one prompt's pairs never
straddle the split) is held out for early stopping on the holdout BT loss and,
optionally, for temperature calibration: T minimises the holdout NLL of
σ((r⁺ − r⁻)/T). On unlabelled pairs :func:`weak_judge_annotator` gives
p = σ((r_A − r_B)/T) and C = 2·(max(p, 1−p) − 0.5).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from ..chat import render_with_response, template_adds_special_tokens
from ..errors import ConfigError, DataError
from ..records import Annotation, PreferencePair, prompt_text
from .base import RewardAnnotator, RewardItem, RewardResult, fit_temperature, labelled_examples


@dataclass
class WeakJudgeSettings:
    """How the weak judge is built and trained (CW-PO's annotator)."""

    backbone: str = field(default="minilm", metadata={"help": "minilm, or a causal-LM spec (embedded name, dir, .gguf)"})
    lora: bool = field(default=True, metadata={"help": "causal-LM backbone: LoRA (true) or full fine-tune"})
    lora_r: int = 8
    lora_alpha: int | None = field(default=None, metadata={"help": "default 2 x lora_r"})
    head_hidden: int = field(default=64, metadata={"help": "MiniLM head width (0: a linear head)"})
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = field(default=16, metadata={"help": "pairs per step"})
    micro_batch: int = field(default=4, metadata={
        "help": "pairs per forward/backward, gradients accumulated to batch_size: a causal-LM backbone keeps "
                "every layer's activations for backward (16 pairs x 512 tokens of SmolLM2 ran out of 24 GiB)"})
    holdout: float = field(default=0.2, metadata={"help": "fraction of labelled pairs for early stopping and calibration"})
    patience: int = field(default=5, metadata={"help": "epochs without holdout improvement before stopping"})
    calibrate: bool = field(default=True, metadata={"help": "fit the temperature T on the holdout"})
    max_length: int = field(default=512, metadata={"help": "causal-LM backbone: tokens kept (from the end)"})
    seed: int = 0

    def validate(self) -> None:
        if not 0 <= self.holdout < 1:
            raise ConfigError(f"holdout must be in [0, 1), got {self.holdout}")
        for name in ("epochs", "batch_size", "micro_batch", "patience", "lora_r", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")


def split_holdout(examples: list, fraction: float, seed: int) -> tuple[list, list]:
    """Split by prompt (prompt_id or prompt text); no holdout if it would leave either side empty."""
    groups: dict[str, list] = {}
    for ex in examples:
        key = ex[0].prompt_id or repr(ex[0].prompt)
        groups.setdefault(key, []).append(ex)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n_hold = round(fraction * len(keys))
    if n_hold == 0 or n_hold == len(keys):
        return examples, []
    hold = {k for k in keys[:n_hold]}
    train = [ex for k in keys if k not in hold for ex in groups[k]]
    return train, [ex for k in keys if k in hold for ex in groups[k]]


# ---------------------------------------------------------------- reward heads
class EmbeddingReward(nn.Module):
    """Small head on frozen sentence embeddings: r = MLP([e_x, e_y, e_x ⊙ e_y])."""

    def __init__(self, encoder, dim: int, hidden: int = 64):
        super().__init__()
        self.encoder = encoder
        self.head = (nn.Sequential(nn.Linear(3 * dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
                     if hidden else nn.Linear(3 * dim, 1))
        self._emb: dict[str, torch.Tensor] = {}

    def _embed(self, texts: list[str]) -> torch.Tensor:
        todo = [t for t in dict.fromkeys(texts) if t not in self._emb]
        if todo:
            self._emb.update(zip(todo, self.encoder(todo)))
        return torch.stack([self._emb[t] for t in texts])

    def forward(self, items: Sequence[RewardItem]) -> torch.Tensor:
        xs = [f"{it.system}\n{prompt_text(it.prompt)}" if it.system else prompt_text(it.prompt)
              for it in items]
        ex, ey = self._embed(xs), self._embed([it.response for it in items])
        return self.head(torch.cat([ex, ey, ex * ey], dim=-1)).squeeze(-1)


class LMReward(nn.Module):
    """Causal-LM body (full or LoRA) + scalar head on the last token of prompt+response."""

    def __init__(self, model, tokenizer, *, lora: bool, lora_r: int, lora_alpha: int, max_length: int):
        super().__init__()
        from ..logprobs import decoder_of

        body = decoder_of(model)
        if lora:
            from peft import LoraConfig

            from ..models import add_lora

            body = add_lora(body, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                                                   target_modules="all-linear"))
        else:
            body.requires_grad_(True)
        self.body, self.tokenizer, self.max_length = body, tokenizer, max_length
        self.head = nn.Linear(model.config.hidden_size, 1)
        nn.init.zeros_(self.head.weight)  # r ≡ 0 at start: loss starts at log 2
        nn.init.zeros_(self.head.bias)

    def forward(self, items: Sequence[RewardItem]) -> torch.Tensor:
        tok = self.tokenizer
        texts = [render_with_response(tok, it.prompt, it.response, it.system)[0] for it in items]
        enc = [tok(t, add_special_tokens=template_adds_special_tokens(tok))["input_ids"][-self.max_length:]
               for t in texts]
        n = max(len(e) for e in enc)
        ids = torch.full((len(enc), n), tok.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(enc), n), dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, :len(e)], mask[i, :len(e)] = torch.tensor(e), 1
        device = self.head.weight.device
        h = self.body(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        last = h[torch.arange(len(enc), device=device), mask.sum(1).to(device) - 1]
        return self.head(last.float()).squeeze(-1)


# ---------------------------------------------------------------- the judge
class WeakJudge:
    """Trainable BT reward model; after :meth:`fit` it is a reward function for annotation."""

    def __init__(self, settings: WeakJudgeSettings | None = None, *, encoder=None, model=None,
                 tokenizer=None, device: str = "cpu", progress: bool = False):
        self.settings = settings or WeakJudgeSettings()
        self.settings.validate()
        self.device, self.progress = device, progress
        self.temperature = 1.0
        self.history: list[dict] = []
        self.counts: Counter = Counter()
        with torch.random.fork_rng():  # seeded head init without touching the caller's RNG
            torch.manual_seed(self.settings.seed)
            self.net = self._build(encoder, model, tokenizer).to(device)

    def _build(self, encoder, model, tokenizer) -> nn.Module:
        s = self.settings
        if s.backbone == "minilm" and model is None:
            if encoder is None:
                from .encoder import minilm_encoder

                encoder = minilm_encoder(self.device)
            dim = encoder(["dimension probe"]).shape[-1]
            return EmbeddingReward(encoder, dim, s.head_hidden)
        if model is None:
            from ..models import load_model

            model, tokenizer = load_model(s.backbone, device=self.device)
        return LMReward(model, tokenizer, lora=s.lora, lora_r=s.lora_r, lora_alpha=s.lora_alpha or 2 * s.lora_r,
                        max_length=s.max_length)

    @property
    def stats(self) -> dict:
        return dict(self.counts)

    def _margins(self, batch: Sequence[tuple[PreferencePair, str]]) -> torch.Tensor:
        """r(winner) − r(loser) per labelled pair, one forward over both sides."""
        items = []
        for pair, winner in batch:
            won, lost = ((pair.response_a, pair.response_b) if winner == "A"
                         else (pair.response_b, pair.response_a))
            items += [RewardItem(pair.prompt, won, pair.system), RewardItem(pair.prompt, lost, pair.system)]
        r = self.net(items)
        return r[0::2] - r[1::2]

    def _accumulate_step(self, batch: list, opt: torch.optim.Optimizer) -> None:
        """One optimizer step on ``batch``: the mean BT loss, its gradient summed over micro-batches."""
        opt.zero_grad()
        for m in range(0, len(batch), self.settings.micro_batch):
            part = batch[m:m + self.settings.micro_batch]
            # each part's share of the batch mean, so the summed gradient is the full batch's
            (-nn.functional.logsigmoid(self._margins(part)).sum() / len(batch)).backward()
        opt.step()

    @torch.no_grad()
    def _evaluate(self, examples) -> tuple[float, float, torch.Tensor]:
        self.net.eval()
        m = torch.cat([self._margins(examples[s:s + 32]) for s in range(0, len(examples), 32)])
        return float(-nn.functional.logsigmoid(m).mean()), float((m > 0).float().mean()), m

    def fit(self, pairs: Sequence[PreferencePair], labels: Sequence[Annotation]) -> dict:
        """Train on labelled pairs; returns a report (losses per epoch, best epoch, T, counts)."""
        s = self.settings
        examples, counts = labelled_examples(pairs, labels)
        train, hold = split_holdout(examples, s.holdout, s.seed)
        self.counts.update(counts, train_pairs=len(train), holdout_pairs=len(hold))
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
        rng = random.Random(s.seed)
        best, best_state, stale = math.inf, None, 0
        for epoch in tqdm(range(1, s.epochs + 1), desc="weak judge", disable=not self.progress, leave=False):
            order = list(range(len(train)))
            rng.shuffle(order)
            self.net.train()
            for b in range(0, len(order), s.batch_size):
                self._accumulate_step([train[i] for i in order[b:b + s.batch_size]], opt)
            train_loss, train_acc, _ = self._evaluate(train)
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
            watched = train_loss
            if hold:
                row["holdout_loss"], row["holdout_acc"], _ = self._evaluate(hold)
                watched = row["holdout_loss"]
            self.history.append(row)
            if watched < best - 1e-6:
                best, stale, self.counts["best_epoch"] = watched, 0, epoch
                best_state = {k: v.detach().clone() for k, v in self.net.named_parameters() if v.requires_grad}
            else:
                stale += 1
                if hold and stale >= s.patience:
                    break  # early stopping needs a holdout; without one all epochs run
        if best_state is not None:
            self.net.load_state_dict(best_state, strict=False)
        self.counts["epochs_run"] = len(self.history)
        if s.calibrate and hold:
            self.temperature = fit_temperature(self._evaluate(hold)[2])
        return {"history": self.history, "temperature": self.temperature, **self.stats}

    @torch.no_grad()
    def rewards(self, items: Sequence[RewardItem]) -> list[RewardResult]:
        """r_w(x, y) per response, in batches of 32 (call :meth:`fit` or :meth:`load` first)."""
        self.net.eval()
        out = []
        for b in range(0, len(items), 32):
            out += self.net(list(items[b:b + 32])).tolist()
        return [RewardResult(float(v)) for v in out]

    def save(self, path) -> None:
        """Trainable weights + settings + temperature (reload with :meth:`load`)."""
        state = {k: v for k, v in self.net.state_dict().items() if _trainable(self.net, k)}
        torch.save({"settings": asdict(self.settings), "temperature": self.temperature, "state": state}, path)

    @classmethod
    def load(cls, path, *, encoder=None, model=None, tokenizer=None, device: str = "cpu") -> WeakJudge:
        """Rebuild the judge from :meth:`save` (the backbone is re-created from the settings)."""
        try:
            blob = torch.load(path, map_location=device, weights_only=True)
        except (OSError, RuntimeError) as e:
            raise DataError(f"{path}: cannot read weak judge ({e})") from None
        judge = cls(WeakJudgeSettings(**blob["settings"]), encoder=encoder, model=model,
                    tokenizer=tokenizer, device=device)
        judge.net.load_state_dict(blob["state"], strict=False)
        judge.temperature = float(blob["temperature"])
        return judge


def _trainable(net: nn.Module, key: str) -> bool:
    params = dict(net.named_parameters())
    return key in params and params[key].requires_grad


def weak_judge_annotator(judge: WeakJudge, *, nan_policy: str = "error",
                         progress: bool = False) -> RewardAnnotator:
    """CW-PO annotation with the (calibrated) temperature of a fitted judge."""
    return RewardAnnotator(judge, "weak_judge", temperature=judge.temperature,
                           nan_policy=nan_policy, progress=progress)
