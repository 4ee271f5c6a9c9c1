"""TensorFlow rebuilds of the folded pathway, one per family that TFLite export supports.

Each builder takes the TensorFlow module and a *folded* model (``Autoencoder.folded()``:
BatchNorm already inside the weights) and returns ``(encode, decode)``: ``encode`` maps the
flat (N × F) input to ``[h_1 … h_L]``, ``decode`` maps the code to the flat x̂, exactly as
the PyTorch family does. Every weight becomes one ``tf.constant`` created here, before the
traced function, so both encoder passes close over the same constant and the flatbuffer
stores one buffer per layer.

TensorFlow convolutions are channels-last (N × time × channels) where PyTorch's are
channels-first; the conv1d rebuild transposes at the input, at each flattened pathway state
and at the output so the flat layouts stay channel-major like the features. Explicit padding
(``tf.pad`` + ``VALID``) reproduces PyTorch's symmetric padding: TensorFlow's ``SAME`` pads
stride-2 convolutions one sample later.

The LSTM family has no rebuild: see :data:`UNSUPPORTED`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from exporter.errors import ExportInputError
from exporter.families_base import NEGATIVE_SLOPE, Autoencoder
from exporter.families_conv1d import KERNEL, Conv1dAutoencoder

Layer = Callable[[Any], Any]

UNSUPPORTED = {
    "lstm": (
        "TFLite export supports the mlp and conv1d models, not lstm (no TensorFlow rebuild "
        "of its recurrent pathway, so nothing measured to ship); build the lstm model "
        "without --tflite: it runs on onnxruntime (fp32)"
    ),
}


def _array(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32).copy()


def _dense(tf: Any, linear: nn.Linear, activate: bool) -> Layer:
    w, b = tf.constant(_array(linear.weight).T.copy()), tf.constant(_array(linear.bias))

    def layer(x: Any) -> Any:
        y = tf.matmul(x, w) + b
        return tf.nn.leaky_relu(y, alpha=NEGATIVE_SLOPE) if activate else y

    return layer


def _activates(block: nn.Module) -> bool:
    return isinstance(block, nn.Sequential) and any(isinstance(m, nn.LeakyReLU) for m in block)


def _first(block: nn.Module) -> nn.Module:
    return block[0] if isinstance(block, nn.Sequential) else block


def mlp_layers(tf: Any, model: Any) -> tuple[Layer, Layer]:
    encoder = [_dense(tf, _first(b), _activates(b)) for b in model.encoder]
    decoder = [_dense(tf, _first(b), _activates(b)) for b in model.decoder]

    def encode(x: Any) -> list[Any]:
        hidden = []
        for layer in encoder:
            x = layer(x)
            hidden.append(x)
        return hidden

    def decode(code: Any) -> Any:
        for layer in decoder:
            code = layer(code)
        return code

    return encode, decode


def _conv(tf: Any, block: nn.Module, stride: int) -> Layer:
    conv = _first(block)
    # PyTorch (out, in, k) → TensorFlow (k, in, out).
    w = tf.constant(_array(conv.weight).transpose(2, 1, 0).copy())
    b = tf.constant(_array(conv.bias))
    pad = KERNEL // 2
    activate = _activates(block)

    def layer(h: Any) -> Any:
        y = tf.nn.conv1d(tf.pad(h, [[0, 0], [pad, pad], [0, 0]]), w, stride, "VALID") + b
        return tf.nn.leaky_relu(y, alpha=NEGATIVE_SLOPE) if activate else y

    return layer


def conv1d_layers(tf: Any, model: Conv1dAutoencoder) -> tuple[Layer, Layer]:
    n_channels, length, lengths = model.n_channels, model.length, model.lengths
    last_channels = model.channels[-1]
    encoder = [_conv(tf, block, 2) for block in model.encoder]
    code = _dense(tf, _first(model.code), False)
    expand = _dense(tf, _first(model.expand), True)
    decoder = [_conv(tf, block, 1) for block in model.decoder]
    pool = model.pathway_mode == "pool"

    def channel_major(h: Any) -> Any:
        return tf.reshape(tf.transpose(h, [0, 2, 1]), [-1, h.shape[1] * h.shape[2]])

    def encode(x: Any) -> list[Any]:
        h = tf.transpose(tf.reshape(x, [-1, n_channels, length]), [0, 2, 1])
        hidden = []
        for layer in encoder:
            h = layer(h)
            hidden.append(tf.reduce_mean(h, axis=1) if pool else channel_major(h))
        hidden.append(code(channel_major(h)))
        return hidden

    def decode(z: Any) -> Any:
        h = tf.reshape(expand(z), [-1, last_channels, lengths[-1]])
        h = tf.transpose(h, [0, 2, 1])
        for layer, target in zip(decoder, lengths[-2::-1], strict=True):
            steps, channels = h.shape[1], h.shape[2]
            doubled = tf.reshape(tf.stack([h, h], axis=2), [-1, 2 * steps, channels])
            h = layer(doubled[:, :target])
        return channel_major(h)

    return encode, decode


BUILDERS: dict[str, Callable[[Any, Any], tuple[Layer, Layer]]] = {
    "mlp": mlp_layers,
    "conv1d": conv1d_layers,
}


def check_tflite_support(model: Autoencoder) -> None:
    """Raise a clear error naming the family when TFLite export does not cover it."""
    if model.family in BUILDERS:
        return
    reason = UNSUPPORTED.get(model.family, f"TFLite export does not cover {model.family}")
    raise ExportInputError(reason)


def tf_layers(tf: Any, model: Autoencoder) -> tuple[Layer, Layer]:
    """(encode, decode) of the folded ``model`` in TensorFlow."""
    check_tflite_support(model)
    return BUILDERS[model.family](tf, model.folded())
