"""Self-attention as the backbones compute it: causal over each row of a batch, or within each
text of a packed row (`llmclf.models.packing`).

On a CPU the products run in fp32 even under bf16/fp16 autocast: there the reduced-precision
attention kernels are slower than fp32 ones (forward and backward: 27 against 14 ms for 8 SMS
texts of GPT-2 small's heads), and on long texts their backward also holds far more memory
(gpt2-tiny on 16 IMDb reviews a step: 1.7 GB of peak RSS against 0.7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    spans: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    causal: bool = True,
) -> torch.Tensor:
    """Attention of queries q over keys k and values v, each (B, nh, T, hd) -> (B, nh, T, hd):
    causal (unless ``causal`` is False) over each row, or, given a packed row's ``spans``,
    within each of its texts (`attend_within_texts`)."""
    dtype = q.dtype
    if q.device.type == "cpu" and dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", enabled=False):  # which would cast them back
            return attend(
                q.float(), k.float(), v.float(), spans=spans, dropout_p=dropout_p, causal=causal
            ).to(dtype)
    if spans is not None:
        return attend_within_texts(q, k, v, spans, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)


def attend_within_texts(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spans: torch.Tensor, dropout_p: float = 0.0
) -> torch.Tensor:
    """Causal attention within each text of a packed row: q, k, v (1, nh, W, hd) ->
    (1, nh, W, hd); ``spans`` (N,) are the texts' lengths, in row order.

    One attention call per text does sum(L^2) work where one call over the row with a
    block-diagonal mask does W^2 (8 SMS texts: 2.2x faster over the 12 blocks' forward and
    backward; 16 IMDb reviews: 12x)."""
    sizes = spans.tolist()
    parts = [
        F.scaled_dot_product_attention(a, b, c, dropout_p=dropout_p, is_causal=True)
        for a, b, c in zip(q.split(sizes, 2), k.split(sizes, 2), v.split(sizes, 2), strict=True)
    ]
    return torch.cat(parts, 2)


def keep_out_of_compiled_graphs() -> None:
    """Run `attend_within_texts` eagerly inside ``torch.compile``d blocks: traced, its loop
    over the texts would recompile the graph for every number of texts in a batch. Called by
    `llmclf.training.trainer.compile_blocks`, not at import: ``torch.compiler.disable``
    imports torch._dynamo, which doubles the time to import the models."""
    global attend_within_texts  # looked up at each call, by `attend`
    if not getattr(attend_within_texts, "_kept_out", False):
        attend_within_texts = torch.compiler.disable(attend_within_texts)
        attend_within_texts._kept_out = True  # type: ignore[attr-defined]
