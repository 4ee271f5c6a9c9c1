"""Seeded training with early stopping on a validation split of normal data."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from agent.core.features import FeatureSpec
from exporter.errors import ExportError, ExportInputError
from exporter.model import FAMILIES, Autoencoder, make_autoencoder


@dataclass(frozen=True)
class TrainSettings:
    n_layers: int = 3
    bottleneck: int = 8
    epochs: int = 200
    patience: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    validation_fraction: float = 0.2
    seed: int = 0
    model: str = "mlp"  # the family: one of exporter.model.FAMILIES

    def __post_init__(self) -> None:
        if self.model not in FAMILIES:
            raise ExportInputError(
                f"model family {self.model!r}: choose one of {', '.join(FAMILIES)}"
            )


def seed_everything(seed: int) -> None:
    # Small MLPs gain nothing from intra-op threads, and on a 2-core box the thread pool
    # contends with everything else; one thread is also what makes runs repeatable.
    torch.set_num_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def split_validation(n: int, fraction: float, seed: int, block: int = 32) -> tuple[np.ndarray, ...]:
    """Hold out whole blocks of consecutive windows: overlapping neighbours of a validation
    window would otherwise sit in training and make validation loss optimistic."""
    if n < 4:
        raise ExportInputError(
            f"only {n} training windows; record more normal data or shorten windows"
        )
    n_blocks = max(2, -(-n // block))
    rng = np.random.default_rng(seed)
    n_val_blocks = max(1, int(np.rint(n_blocks * fraction)))
    val_blocks = rng.choice(n_blocks, size=n_val_blocks, replace=False)
    block_of = np.arange(n) * n_blocks // n
    is_val = np.isin(block_of, val_blocks)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _grad_norm(model: nn.Module) -> float:
    total = 0.0
    for p in model.parameters():
        if p.grad is not None:
            total += float(p.grad.detach().pow(2).sum())
    return total**0.5


def train_epoch(
    model: nn.Module,
    x: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
) -> tuple[float, list[float]]:
    """One pass over ``x`` in ``order`` (MSE, model left in eval mode): the mean training loss
    and each batch's gradient norm (for the exploding/vanishing-gradient sanity check)."""
    loss_fn = nn.MSELoss()
    model.train()
    total, seen, norms = 0.0, 0, []
    for lo in range(0, len(order), batch_size):
        batch = x[order[lo : lo + batch_size]]
        if len(batch) < 2:  # BatchNorm needs two rows
            continue
        optimizer.zero_grad()
        loss = loss_fn(model(batch), batch)
        loss.backward()
        norms.append(_grad_norm(model))
        optimizer.step()
        total += float(loss.detach()) * len(batch)
        seen += len(batch)
    model.eval()
    return total / max(seen, 1), norms


def train_autoencoder(
    features: np.ndarray,
    settings: TrainSettings,
    progress: Callable[[int, float, float], None] | None = None,
    spec: FeatureSpec | None = None,
) -> tuple[Autoencoder, dict]:
    """Train on (N × F) normal feature vectors; returns the best-validation model and history.

    ``spec`` (the features' FeatureSpec) is needed by the temporal families, which read each
    raw window as (channels × window)."""
    if not np.isfinite(features).all():
        raise ExportError("training features hold NaN or inf; clean the recording first")
    seed_everything(settings.seed)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    train_idx, val_idx = split_validation(len(x), settings.validation_fraction, settings.seed)
    if len(train_idx) < 2:
        raise ExportError("fewer than 2 training windows after the validation split")
    model = make_autoencoder(
        settings.model, x.shape[1], settings.n_layers, settings.bottleneck, spec
    )
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    loss_fn = nn.MSELoss()
    generator = torch.Generator().manual_seed(settings.seed)
    x_train, x_val = x[train_idx], x[val_idx]
    # grad_norm / grad_norm_max: per-epoch mean and max global gradient norm over batches,
    # kept for the exploding/vanishing-gradient sanity check (exporter.sanity).
    history: dict[str, list[float]] = {
        "train_loss": [],
        "val_loss": [],
        "grad_norm": [],
        "grad_norm_max": [],
    }
    stopping = EarlyStopping(history, settings.patience)
    for epoch in range(settings.epochs):
        order = torch.randperm(len(x_train), generator=generator)
        train_loss, norms = train_epoch(model, x_train, order, settings.batch_size, optimizer)
        with torch.no_grad():
            val_loss = float(loss_fn(model(x_val), x_val))
        if stopping.end_epoch(model, epoch, train_loss, val_loss, norms, progress):
            break
    best_state, best_val, best_epoch = stopping.best_state, stopping.best_val, stopping.best_epoch
    if best_state is None:
        raise ExportError("training never produced a finite validation loss")
    model.load_state_dict(best_state)
    model.eval()
    summary = {
        **history,
        "best_epoch": best_epoch,
        "best_val_loss": best_val,
        "epochs_run": len(history["train_loss"]),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "settings": settings.__dict__,
    }
    return model, summary


def plot_history(history: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.semilogy(history["train_loss"], label="train")
    ax1.semilogy(history["val_loss"], label="validation")
    ax1.axvline(history["best_epoch"], color="grey", ls="--", label="best")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("MSE")
    ax1.legend()
    ax2.semilogy(history["grad_norm"], label="mean")
    if history.get("grad_norm_max"):
        ax2.semilogy(history["grad_norm_max"], label="max")
        ax2.legend()
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("gradient norm (per batch)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class EarlyStopping:
    """Per-epoch history and the best state so far; ``end_epoch`` says when to stop."""

    def __init__(
        self,
        history: dict,
        patience: int,
        best_state: dict | None = None,
        best_val: float = float("inf"),
    ) -> None:
        self.history = history
        self.patience = patience
        self.best_state, self.best_val, self.best_epoch, self.stale = best_state, best_val, -1, 0

    def end_epoch(
        self, model: nn.Module, epoch: int, train: float, val: float, norms: list, progress
    ) -> bool:
        history = self.history
        history["train_loss"].append(train)
        history["val_loss"].append(val)
        history["grad_norm"].append(float(np.mean(norms)) if norms else 0.0)
        history["grad_norm_max"].append(float(np.max(norms)) if norms else 0.0)
        if progress:
            progress(epoch, train, val)
        if val < self.best_val - 1e-9:
            self.best_val, self.best_epoch, self.stale = val, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.stale += 1
        return self.stale >= self.patience
