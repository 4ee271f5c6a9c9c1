"""Append the fused scoring step (:mod:`agent.core.backends.fusion`) to an ONNX pathway graph.

Built in the agent at load time from the bundle's own arrays, so every bundle — old ones and
the shipped default included — runs the whole step in one ``session.run`` without a new
bundle format. Measured against the alternatives (benchmarks/scoring_speed.py): a second
small graph run after the pathway pays the runtime's per-run overhead twice, and appending
the step at export time would give the same graph as this, only for new bundles.

Nodes use the default domain's Concat, Sub, MatMul, Mul, Gemm and Relu, whose semantics
here are the same in every opset the exporter writes (18 for fp32, 21 for 16-bit QDQ int8).
"""

from __future__ import annotations

from agent.core.backends import onnx_wire as wire
from agent.core.backends.fusion import StepMatrices
from agent.core.bundle.manifest import PathwayIO

PREFIX = "rapp_edge_step/"
OUTPUT = PREFIX + "scores"


def append_step(model: bytes, io: PathwayIO, step: StepMatrices) -> bytes:
    """``model`` with the step's nodes added and one more output, :data:`OUTPUT`
    (N × (3 + attribution width [+ latent width]))."""
    hidden = [io.input, *io.hidden]
    hidden_hat = [io.x_hat, *io.hidden_hat]
    nodes: list[bytes] = []
    initializers: list[bytes] = []

    def add(op: str, inputs: list[str], name: str, *attributes: bytes) -> str:
        out = PREFIX + name
        nodes.append(wire.node(op, inputs, [out], out, attributes))
        return out

    def const(name: str, array) -> str:
        initializers.append(wire.tensor(PREFIX + name, array))
        return PREFIX + name

    axis = wire.int_attribute("axis", 1)
    h = add("Concat", [hidden[i] for i in step.layers], "h", axis)
    h_hat = add("Concat", [hidden_hat[i] for i in step.layers], "h_hat", axis)
    d = add("Sub", [h_hat, h], "d")
    centred = add("Sub", [d, const("nap_mean", step.nap_mean)], "d_centred")
    z = add("MatMul", [centred, const("nap_projection", step.nap_projection)], "z")
    blocks = [d]
    if step.separate_recon:
        blocks.append(add("Sub", [io.x_hat, io.input], "error"))
    if step.feature_mean is not None:
        blocks.append(add("Sub", [io.input, const("feature_mean", step.feature_mean)], "dev"))
    blocks.append(z)
    # Y = Σ_blocks squares · reduce[rows] − offset, as a chain of Gemm(A, B, C) = A·B + C.
    y = const("neg_offset", -step.offset)
    for i, (block, rows) in enumerate(zip(blocks, step.block_rows(), strict=True)):
        squares = add("Mul", [block, block], f"squares_{i}")
        y = add("Gemm", [squares, const(f"reduce_{i}", step.reduce[rows]), y], f"y_{i}")
    if step.latent_width:
        scores = add("Relu", [y], "y")
        nodes.append(wire.node("Concat", [scores, hidden[-1]], [OUTPUT], OUTPUT, (axis,)))
    else:
        nodes.append(wire.node("Relu", [y], [OUTPUT], OUTPUT))
    return model + wire.graph_extension(
        nodes, initializers, [wire.float_output(OUTPUT, (None, step.width))]
    )
