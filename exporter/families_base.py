"""What every autoencoder family gives the exporter, and the BatchNorm folding they share.

A family is an :class:`Autoencoder`: an ``nn.Module`` over flat feature vectors (N × F) with

- ``sizes`` — ``[F, w_1 … w_L]``: the input width and the width of each pathway state h_i,
  written to the manifest as ``layer_sizes``; h_L is the bottleneck code;
- ``encode_path(x)`` — ``[h_1 … h_L]``, each 2-D (N × w_i): convolutional and recurrent
  states are flattened or pooled *inside* the model, so the exported graph, the agent's
  backends and its scorer see the same contract for every family;
- ``decode(code)`` — x̂ (N × F), in the feature layout (channel-major for raw windows);
- ``config()`` / ``from_config()`` — the JSON that rebuilds the architecture (model.json);
- ``folded()`` — an eval-mode copy with every BatchNorm folded into the layer before it
  (and replaced by an identity), which is what gets exported.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from exporter.errors import ExportInputError

NEGATIVE_SLOPE = 0.2
# How a temporal family turns a block's (channels × time) state into the flat h_i: every
# value (channel-major) or the mean over time per channel.
PATHWAY_MODES = ("flatten", "pool")


class Autoencoder(nn.Module):
    family: ClassVar[str] = ""
    sizes: list[int]

    def encode_path(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode_path(x)[-1])

    def pathway(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.encode_path(x)
        x_hat = self.decode(hidden[-1])
        return (*hidden, x_hat, *self.encode_path(x_hat))

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Autoencoder:
        raise NotImplementedError

    def folded(self) -> Autoencoder:
        """An eval-mode copy whose BatchNorms are folded into the preceding layers."""
        out = copy.deepcopy(self).eval()
        fold_in_place(out)
        return out


def fold_linear(linear: nn.Linear, norm: nn.BatchNorm1d) -> nn.Linear:
    """One Linear computing eval-mode Linear → BatchNorm."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    folded = nn.Linear(linear.in_features, linear.out_features)
    with torch.no_grad():
        folded.weight.copy_(linear.weight * scale[:, None])
        folded.bias.copy_((linear.bias - norm.running_mean) * scale + norm.bias)
    return folded


def fold_conv(conv: nn.Conv1d, norm: nn.BatchNorm1d) -> nn.Conv1d:
    """One Conv1d computing eval-mode Conv1d → BatchNorm (scale per output channel)."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    folded = copy.deepcopy(conv)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale[:, None, None])
        folded.bias.copy_((conv.bias - norm.running_mean) * scale + norm.bias)
    return folded


def fold_in_place(module: nn.Module) -> None:
    """Fold every (Linear | Conv1d, BatchNorm1d) pair of consecutive ``nn.Sequential``
    entries; the BatchNorm's slot becomes an ``nn.Identity`` so indices stay put."""
    for child in module.children():
        fold_in_place(child)
    if not isinstance(module, nn.Sequential):
        return
    layers = list(module)
    for i in range(len(layers) - 1):
        layer, norm = layers[i], layers[i + 1]
        if not isinstance(norm, nn.BatchNorm1d):
            continue
        if isinstance(layer, nn.Linear):
            module[i] = fold_linear(layer, norm)
        elif isinstance(layer, nn.Conv1d):
            module[i] = fold_conv(layer, norm)
        else:
            continue
        module[i + 1] = nn.Identity()


def check_pathway_mode(mode: str) -> str:
    if mode not in PATHWAY_MODES:
        raise ExportInputError(f"pathway {mode!r}: choose one of {', '.join(PATHWAY_MODES)}")
    return mode
