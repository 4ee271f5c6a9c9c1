"""The paper's MLP autoencoder, the family registry and the exported projection pathway.

MLP layer sizes are linearly spaced from the input to the bottleneck; every encoder layer is
Linear → BatchNorm → LeakyReLU except the bottleneck, which has no activation; the decoder
mirrors it and ends in a plain Linear. The temporal families (``conv1d``, ``lstm``) live in
``exporter.families_*`` behind the same :class:`~exporter.families_base.Autoencoder`
contract. :class:`PathwayModule` is what gets exported for every family: one input, outputs
h_1…h_L, x̂ and ĥ_1…ĥ_L, with the encoder weights shared by both passes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agent.core.atomic import write_atomic
from agent.core.features import FeatureSpec, Normalization
from exporter.errors import ExportError, ExportInputError
from exporter.families_base import NEGATIVE_SLOPE, Autoencoder
from exporter.families_conv1d import Conv1dAutoencoder, conv_channels
from exporter.families_lstm import LstmAutoencoder

MODEL_JSON = "model.json"
WEIGHTS_NPZ = "weights.npz"
LATENT_NPY = "latent_reference.npy"
# Training windows whose latent codes are kept for the density fit: 20 bins per dimension
# are well filled, and the model directory stays small (20,000 × bottleneck float32).
LATENT_REFERENCE_ROWS = 20_000


def linspace_sizes(input_dim: int, bottleneck: int, n_layers: int) -> list[int]:
    """Encoder sizes [input, …, bottleneck], linearly spaced, as the paper does."""
    if n_layers < 1 or bottleneck < 1:
        raise ExportError(f"need n_layers ≥ 1 and bottleneck ≥ 1 (got {n_layers}, {bottleneck})")
    return np.rint(np.linspace(input_dim, bottleneck, n_layers + 1)).astype(int).tolist()


def _block(n_in: int, n_out: int, activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out)]
    if activation:
        layers.append(nn.LeakyReLU(NEGATIVE_SLOPE))
    return nn.Sequential(*layers)


class MlpAutoencoder(Autoencoder):
    family = "mlp"

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        self.sizes = list(sizes)
        n = len(self.sizes) - 1
        self.encoder = nn.ModuleList(
            _block(self.sizes[i], self.sizes[i + 1], activation=i < n - 1) for i in range(n)
        )
        rev = self.sizes[::-1]
        decoder: list[nn.Module] = [_block(rev[i], rev[i + 1], True) for i in range(n - 1)]
        decoder.append(nn.Linear(rev[n - 1], rev[n]))
        self.decoder = nn.Sequential(*decoder)

    def encode_path(self, x: torch.Tensor) -> list[torch.Tensor]:
        hidden = []
        h = x
        for layer in self.encoder:
            h = layer(h)
            hidden.append(h)
        return hidden

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)

    def config(self) -> dict[str, Any]:
        return {"layer_sizes": self.sizes}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MlpAutoencoder:
        return cls([int(s) for s in config["layer_sizes"]])


FAMILIES: dict[str, type[Autoencoder]] = {
    "mlp": MlpAutoencoder,
    "conv1d": Conv1dAutoencoder,
    "lstm": LstmAutoencoder,
}


def make_autoencoder(
    family: str, feature_dim: int, n_layers: int, bottleneck: int, spec: FeatureSpec | None
) -> Autoencoder:
    """A fresh model of ``family`` for ``feature_dim`` inputs with ``n_layers`` pathway states
    (h_1 … h_L, h_L the ``bottleneck``-wide code). The temporal families need the feature
    spec: they read raw windows as (channels × window) and need ≥ 1 block before the code."""
    if family not in FAMILIES:
        raise ExportInputError(f"model family {family!r}: choose one of {', '.join(FAMILIES)}")
    if family == "mlp":
        return MlpAutoencoder(linspace_sizes(feature_dim, bottleneck, n_layers))
    if spec is None or tuple(spec.features) != ("raw",):
        got = "no feature spec" if spec is None else f"features {','.join(spec.features)}"
        raise ExportInputError(
            f"the {family} model reads each window as a sequence: train it on --features raw "
            f"only ({got})"
        )
    if n_layers < 2 or bottleneck < 1:
        raise ExportInputError(
            f"the {family} model needs --layers ≥ 2 (≥ 1 {family} block before the linear "
            f"bottleneck) and --bottleneck ≥ 1 (got {n_layers}, {bottleneck})"
        )
    n_channels, length = spec.n_channels, spec.segmentation.length
    if family == "conv1d":
        return Conv1dAutoencoder(n_channels, length, conv_channels(n_layers - 1), bottleneck)
    return LstmAutoencoder(n_channels, length, n_layers - 1, bottleneck)


def model_from_json(meta: Mapping[str, Any]) -> Autoencoder:
    """The architecture model.json describes (directories from before families: MLP)."""
    family = meta.get("family", "mlp")
    if family not in FAMILIES:
        raise ExportInputError(
            f"{MODEL_JSON}: model family {family!r} is unknown to this exporter "
            f"(it knows {', '.join(FAMILIES)})"
        )
    return FAMILIES[family].from_config(meta.get("architecture") or meta)


class PathwayModule(nn.Module):
    """Export wrapper for any family: forward returns (h_1…h_L, x̂, ĥ_1…ĥ_L).

    BatchNorm is folded into the preceding Linear or Conv1d (eval mode), so the MLP's deployed
    graph is Gemm + LeakyRelu only: fewer ops to quantize, and the two encoder passes share
    exactly one weight tensor per layer.
    """

    def __init__(self, model: Autoencoder) -> None:
        super().__init__()
        self.model = model.folded()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = self.model.encode_path(x)
        x_hat = self.model.decode(hidden[-1])
        return (*hidden, x_hat, *self.model.encode_path(x_hat))


def pathway_names(n_layers: int) -> tuple[list[str], str, list[str]]:
    hidden = [f"h_{i}" for i in range(1, n_layers + 1)]
    return hidden, "x_hat", [f"h_hat_{i}" for i in range(1, n_layers + 1)]


@dataclass
class TrainedModel:
    """A trained model with everything the bundle needs to reproduce its inputs."""

    model: Autoencoder
    spec: FeatureSpec
    normalization: Normalization
    history: dict[str, Any] = field(default_factory=dict)
    # Latent codes of (a sample of) the training windows: the latent density is fitted on
    # them (agent.core.density). None: the build fits it on calibration windows instead.
    latent_reference: np.ndarray | None = None

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def n_layers(self) -> int:
        return len(self.model.sizes) - 1

    def encode(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Latent codes h_L (N × bottleneck) of feature vectors, in eval mode."""
        self.model.eval()
        parts = []
        with torch.no_grad():
            for i in range(0, len(x), batch):
                chunk = torch.as_tensor(np.asarray(x[i : i + batch], dtype=np.float32))
                parts.append(self.model.encode_path(chunk)[-1].numpy())
        return np.concatenate(parts) if parts else np.zeros((0, self.model.sizes[-1]))

    def with_latent_reference(
        self, x: np.ndarray, limit: int = LATENT_REFERENCE_ROWS, seed: int = 0
    ) -> TrainedModel:
        """This model with the latent codes of up to ``limit`` training windows."""
        rows = np.arange(len(x))
        if len(rows) > limit:
            rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
        return replace(self, latent_reference=self.encode(x[rows]).astype(np.float32))

    def save(self, directory: Path) -> None:
        """model.json + weights.npz (plain arrays: no pickle, unlike torch.save)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "family": self.model.family,
            "layer_sizes": self.model.sizes,
            "architecture": self.model.config(),
            "input": self.spec.to_json(),
            "normalization": {
                "mean": self.normalization.mean.tolist(),
                "std": self.normalization.std.tolist(),
            },
            "history": self.history,
        }
        write_atomic(out / MODEL_JSON, json.dumps(meta, indent=1).encode())
        arrays = {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        tmp = out / f".{WEIGHTS_NPZ}.tmp"
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        write_atomic(out / WEIGHTS_NPZ, tmp.read_bytes())
        tmp.unlink()
        if self.latent_reference is not None:
            buffer = io.BytesIO()
            np.save(buffer, self.latent_reference, allow_pickle=False)
            write_atomic(out / LATENT_NPY, buffer.getvalue())

    @classmethod
    def load(cls, directory: Path) -> TrainedModel:
        root = Path(directory)
        try:
            meta = json.loads((root / MODEL_JSON).read_text())
            with np.load(root / WEIGHTS_NPZ, allow_pickle=False) as weights:
                state = {k: torch.from_numpy(weights[k].copy()) for k in weights.files}
        except (OSError, ValueError, KeyError) as err:
            raise ExportError(
                f"{root}: not a trained model directory ({MODEL_JSON} + {WEIGHTS_NPZ}): {err}"
            ) from err
        model = model_from_json(meta)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ExportError(
                f"{root}: {WEIGHTS_NPZ} does not fit the {model.family} model {MODEL_JSON} "
                f"describes: {err}"
            ) from err
        model.eval()
        norm = meta["normalization"]
        reference = None
        if (root / LATENT_NPY).exists():
            try:
                reference = np.load(root / LATENT_NPY, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise ExportError(f"{root / LATENT_NPY}: unreadable ({err}); retrain") from err
        return cls(
            model=model,
            spec=FeatureSpec.from_json(meta["input"]),
            normalization=Normalization(
                mean=np.asarray(norm["mean"], dtype=np.float32),
                std=np.asarray(norm["std"], dtype=np.float32),
            ),
            history=meta.get("history", {}),
            latent_reference=reference,
        )
