"""LoRA: a frozen linear layer plus a trainable low-rank update (Hu et al., 2021).

``y = x W^T + b + (alpha / r) * x A^T B^T`` with ``A`` (r, in) and ``B`` (out, r). ``B`` starts at
zero, so adding adapters leaves the model's outputs unchanged until training moves them.

`LoRALinear` replaces an ``nn.Linear`` in place and keeps its ``weight`` and ``bias``
under the same names, so a state dict holds ``h.0.attn.c_attn.weight`` (the base) beside
``h.0.attn.c_attn.lora_A`` and ``h.0.attn.c_attn.lora_B``. A checkpoint saved with adapters
reloads into a model given the same adapters; `merge_lora` folds them away for inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError

# The attention and MLP projections of every block (the names of GPT-2's modules).
LORA_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


class LoRALinear(nn.Linear):
    """``nn.Linear`` with a low-rank adapter; shares (does not copy) the base layer's tensors."""

    def __init__(
        self, base: nn.Linear, r: int, alpha: float, generator: torch.Generator | None = None
    ) -> None:
        nn.Module.__init__(self)  # not nn.Linear.__init__: the weight and bias are base's
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # (out, in)
        self.bias = base.bias  # (out,) or None
        self.r, self.alpha = r, alpha
        self.scaling = alpha / r
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **like))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, **like))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.linear(x, self.weight, self.bias)  # (.., out)
        down = F.linear(x, self.lora_A)  # (.., in) -> (.., r): the small product first
        # base + scaling * down B^T in one kernel: no (.., out) temporaries for the update
        out = torch.addmm(
            base.reshape(-1, self.out_features),
            down.reshape(-1, self.r),
            self.lora_B.t(),
            alpha=self.scaling,
        )
        return out.view(base.shape)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` whose weight is ``W + (alpha / r) B A`` (updated in place)."""
        self.weight += self.scaling * (self.lora_B @ self.lora_A)  # (out, r) @ (r, in)
        with torch.device("meta"):  # allocate nothing: the tensors are ours
            linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear.weight, linear.bias = self.weight, self.bias
        return linear

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}"


def add_lora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16.0,
    targets: tuple[str, ...] = LORA_TARGETS,
    generator: torch.Generator | None = None,
    include: Callable[[str], bool] | None = None,
) -> list[str]:
    """Wrap every ``nn.Linear`` whose name ends with one of ``targets`` (and, when ``include``
    is given, for which ``include(name)`` is true) in a `LoRALinear`.

    Returns the wrapped modules' names. Layers that already carry adapters of the same rank and
    alpha are left as they are; different ones raise `UsageError`.
    """
    wrapped = []
    for name, module in list(model.named_modules()):
        if not name.endswith(targets) or not isinstance(module, nn.Linear):
            continue
        if include is not None and not include(name):
            continue
        if isinstance(module, LoRALinear):
            if (module.r, module.alpha) != (r, alpha):
                raise UsageError(
                    f"{name} already has LoRA adapters with r={module.r}, alpha={module.alpha}; "
                    "merge them first (merge_lora) or use the same rank and alpha"
                )
        else:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, LoRALinear(module, r, alpha, generator))
        wrapped.append(name)
    return wrapped


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base weight and drop it; the outputs stay the same."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.merged())
