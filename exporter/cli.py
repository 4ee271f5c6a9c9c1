"""`rapp-export`: train, build, sign and push RaPP model bundles on a workstation."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent.core.atomic import write_atomic
from agent.core.bundle.manifest import AlarmDefaults
from agent.core.errors import AgentError, AgentInputError
from agent.core.features import FeatureSpec, Normalization, Segmentation
from exporter.errors import ExportError, ExportInputError, MissingExtraError
from firmware_config.cli_conventions import (
    EXIT_FAILURE,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_STATUS_EPILOG,
    CliParser,
    add_logging_flags,
    add_version_flag,
    configure_logging,
    describe_subcommands,
    report_error,
    subparsers,
)
from firmware_config.errors import FirmwareError, FirmwareInputError

if TYPE_CHECKING:  # exporter.build imports torch
    from agent.core.recording import Recording
    from exporter.build import BuiltBundle
    from exporter.selection import Selection
    from exporter.train import TrainSettings

PROG = "rapp-export"
EXIT_USAGE = EXIT_INPUT
EXIT_FAILED = EXIT_FAILURE
DEFAULT_LEVEL = "warning"


JSON_TO_STDOUT = Path("-")


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _broker(text: str) -> str:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT, e.g. 127.0.0.1:1883")
    return text


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number of seconds")
    return value


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a whole number ≥ 1")
    return int(text)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the autoencoder on normal recordings")
    p.add_argument("--data", nargs="+", required=True, type=Path, help="normal recording CSVs")
    p.add_argument("--channels", required=True, type=_csv_list, help="e.g. J1,J2,J3,J4,J5,J6")
    p.add_argument("--units", type=_csv_list, help="one per channel (default: A)")
    p.add_argument("--sample-rate", type=float, default=None,
                   help="sample rate in Hz (default: from time_s, else 1000)")  # fmt: skip
    p.add_argument("--segmentation", choices=["window", "cycle"], default="window",
                   help="fixed windows, or robot cycles resampled to --window samples")  # fmt: skip
    p.add_argument("--window", type=int, default=None,
                   help="samples per window or cycle (default: chosen; cycles 64)")  # fmt: skip
    p.add_argument("--hop", type=int, default=None, help="window hop in samples (default: chosen)")
    p.add_argument("--min-cycle", type=int, default=0, help="shortest cycle kept (samples)")
    p.add_argument("--max-cycle", type=int, default=0, help="longest cycle kept (0 = no limit)")
    p.add_argument("--features", type=_csv_list, default=None,
                   help="raw and/or stats (default: chosen; cycles raw)")  # fmt: skip
    p.add_argument("--model", choices=["mlp", "conv1d", "lstm"], default="mlp",
                   help="autoencoder family; conv1d and lstm need --features raw")  # fmt: skip
    p.add_argument("--layers", type=int, default=3,
                   help="encoder layers (pathway states h_1…h_L, the last the code)")  # fmt: skip
    p.add_argument("--bottleneck", type=int, default=None,
                   help="width of the code layer (default: chosen; cycles 8)")  # fmt: skip
    p.add_argument("--no-select", action="store_true",
                   help="no model selection: window 64, hop 32, raw, bottleneck 8 where "
                   "not given (selection trains up to 4 short candidates first)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=200, help="most training epochs")
    p.add_argument("--patience", type=int, default=20,
                   help="stop after this many epochs without a better validation loss")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=128, help="windows per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, split and shuffling")
    p.add_argument("--replay-windows", type=_at_least_one, default=4096,
                   help="training windows kept in the replay buffer (retrain)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="output model directory")


def _add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="export, quantize, calibrate and write a .rapp bundle")
    p.add_argument("--model", required=True, type=Path, help="directory written by `train`")
    p.add_argument("--calibration", nargs="+", required=True, type=Path,
                   help="held-out normal recordings (not the training files)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="bundle path, e.g. robot1.rapp")
    p.add_argument("--bundle-id", help="default: the output file name without extension")
    p.add_argument("--bundle-version", default="1", help="version written to the manifest")
    p.add_argument("--robot", default="robot", help="robot id written to the manifest")
    p.add_argument(
        "--program",
        type=int,
        action="append",
        default=[],
        help="program id the bundle serves, repeatable (default: any program no other "
        "bundle serves)",
    )
    p.add_argument(
        "--false-alarms-per-day",
        type=float,
        default=None,
        help="instead of --quantile: thresholds for this many false alarms per 24 h of "
        "operation, holding on every --calibration recording (fixed windows only; e.g. 1)",
    )
    p.add_argument(
        "--quantile",
        type=float,
        default=0.999,
        help="quantile of held-out normal scores that becomes the alarm threshold",
    )
    p.add_argument(
        "--alarm-score",
        choices=["nap", "combined", "density", "sap", "recon"],
        default="nap",
        help="score the agent alarms on (combined = NAP + latent density)",
    )
    p.add_argument("--no-int8", action="store_true", help="skip int8 quantization")
    p.add_argument("--calibration-method", default="minmax",
                   choices=["minmax", "percentile", "entropy"],
                   help="how int8 quantization picks activation ranges")  # fmt: skip
    p.add_argument(
        "--int8-activations",
        type=int,
        choices=[16, 8],
        default=16,
        help="activation bits of the int8 artifacts: 16 (the default; meets the fp32 "
        "fidelity target) or 8 (faster kernels, Spearman vs fp32 only ~0.9-0.97)",
    )
    p.add_argument(
        "--min-spearman",
        type=float,
        default=None,
        help="int8 fidelity floor (default: 0.98 with 16-bit activations, 0.90 with 8-bit)",
    )
    p.add_argument(
        "--rtol", type=float, default=None, help="NAP cut-off s_j/s_1 (default: per precision)"
    )
    p.add_argument(
        "--nap-rank",
        choices=("stable", "rtol"),
        default="stable",
        help="NAP directions kept: those whose spread holds on the held-out calibration half "
        "(stable, default) or every one above the --rtol cut-off",
    )
    p.add_argument(
        "--tflite", action="store_true", help="also write TFLite artifacts (tflite-export extra)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of sanity checks, pseudo-anomalies and canaries"
    )
    p.add_argument(
        "--sign-key",
        type=Path,
        help="Ed25519 private key from `rapp-export keygen` (unsigned if not given)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail the build (exit 1, no bundle written) when a sanity check fails",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the build report as JSON on stdout (the build log goes to stderr)",
    )


def _add_ota(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="new Ed25519 signing key (KEY, mode 0600) + KEY.pub")
    p.add_argument("--out", required=True, type=Path, help="private key file to create")
    p = sub.add_parser("sign", help="sign an existing bundle (writes manifest.sig)")
    p.add_argument("--bundle", required=True, type=Path, help="the .rapp bundle to sign")
    p.add_argument("--key", required=True, type=Path, help="private key from keygen")
    p.add_argument("--out", type=Path, help="default: overwrite --bundle (atomically)")
    p = sub.add_parser("push", help="send a bundle over the air to a device or a group")
    p.add_argument("--bundle", required=True, type=Path, help="the .rapp bundle to send")
    p.add_argument("--broker", required=True, type=_broker, help="HOST:PORT of the broker")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", help="device id (agent.device_id)")
    target.add_argument("--group", help="group id (an entry of [ota] groups)")
    p.add_argument("--expect", type=int, default=1, help="devices in the group to wait for")
    p.add_argument("--robot", help="target robot (default: the manifest's or the only one)")
    p.add_argument(
        "--url", help="https://, http:// or file:// URL devices download the bundle from"
    )
    p.add_argument(
        "--key", type=Path,
        help="release key from keygen: signs the command (agents refuse unsigned ones "
        "unless [trust] allow_unsigned = true)",
    )  # fmt: skip
    p.add_argument(
        "--rollback", action="store_true",
        help="let this bundle replace a newer version (a signed downgrade)",
    )  # fmt: skip
    p.add_argument(
        "--expires-in", type=_positive_seconds, metavar="SECONDS",
        help="devices refuse the command after this long (default: --timeout + 300)",
    )  # fmt: skip
    p.add_argument("--root", default="rapp/v1", help="topic root of the agents")
    p.add_argument("--chunk-size", type=int, default=64 * 1024, help="bytes per MQTT chunk")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for every device's final state")  # fmt: skip
    p.add_argument("--pace", type=float, default=0.0, help="seconds between chunks")
    p.add_argument("--tls-ca", type=Path, help="CA file; enables TLS")
    p.add_argument("--tls-cert", type=Path, help="client certificate (enables TLS)")
    p.add_argument("--tls-key", type=Path, help="client certificate key")
    p.add_argument("--username", help="MQTT user name (default: anonymous)")
    p.add_argument("--password-file", type=Path, help="file holding the MQTT password")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="window AUROC and alarm events of a bundle on labelled recordings"
    )
    p.add_argument("--bundle", required=True, type=Path, help="the .rapp bundle to evaluate")
    p.add_argument("--data", nargs="+", required=True, type=Path,
                   help="recording CSVs with a fault column (empty = normal)")  # fmt: skip
    p.add_argument("--calibration", nargs="+", default=[], type=Path,
                   help="held-out normal recordings the bundle was built with; fits the "
                   "IsolationForest and PCA baselines (none: no baselines)")  # fmt: skip
    p.add_argument("--group-by", choices=["label", "dir", "none"], default="label",
                   help="per-group tables: by fault kind (default), directory or none")  # fmt: skip
    p.add_argument("--tolerance", type=float, default=30.0,
                   help="seconds after a fault ends that an alarm still counts for it")  # fmt: skip
    p.add_argument("--backend", default="auto", help="onnxruntime, litert or auto")
    p.add_argument("--precision", default="int8", choices=["int8", "fp32"],
                   help="which of the bundle's artifacts to evaluate")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the baselines")
    p.add_argument("--json", type=Path, nargs="?", const=JSON_TO_STDOUT, metavar="FILE",
                   help="without FILE: print the report as JSON instead of the tables; "
                   "with FILE: also write it there")  # fmt: skip


def _add_retrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="next version of a bundle from the agent's captured windows")
    p.add_argument("--bundle", required=True, type=Path, help="the bundle the agent serves")
    p.add_argument("--model", required=True, type=Path,
                   help="model directory the bundle was built from (weights, replay)")  # fmt: skip
    p.add_argument("--capture", nargs="+", required=True, type=Path,
                   help="the agent's [robots.drift] capture_dir(s)")  # fmt: skip
    p.add_argument("--calibration", nargs="+", default=[], type=Path,
                   help="held-out normal recordings the bundle was built with (default: the "
                   "calibration.npz a previous retrain left in --model)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="the new bundle, e.g. robot1-v2.rapp")
    p.add_argument("--model-out", type=Path, help="new model directory (default: OUT-model/)")
    p.add_argument("--replay-mix", type=float, default=0.5,
                   help="share of replay windows per epoch (0: plain fine-tuning)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=100, help="most fine-tuning epochs")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience")
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate")
    p.add_argument("--max-capture-alarm-share", type=float, default=0.05,
                   help="gate: share of captured windows above the current threshold")  # fmt: skip
    p.add_argument("--max-false-alarm-increase", type=float, default=0.005,
                   help="gate: rise in old calibration windows above threshold")  # fmt: skip
    p.add_argument("--min-fit-gain", type=float, default=0.0,
                   help="gate: Recon drop needed on held-out captured windows")  # fmt: skip
    _add_output_flags(p)


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="one bundle for several programs whose normal data are close")
    p.add_argument("--member", nargs=2, action="append", required=True, type=Path,
                   metavar=("BUNDLE", "MODEL_DIR"),
                   help="a bundle of the archive and its model directory, repeatable")  # fmt: skip
    p.add_argument("--capture", nargs="+", default=[], type=Path,
                   help="the agent's capture_dir(s): more normal windows per program")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="the merged bundle")
    p.add_argument("--model-out", type=Path, help="merged model directory (default: OUT-model/)")
    p.add_argument("--bundle-id", help="default: the first member's")
    p.add_argument("--max-distance", type=float, default=None,
                   help="largest MMD of two programs' normal windows that merge")  # fmt: skip
    p.add_argument("--max-false-alarm-increase", type=float, default=0.005,
                   help="gate: rise in a program's windows above threshold")  # fmt: skip
    p.add_argument("--epochs", type=int, default=None, help="default: the first member's")
    _add_output_flags(p)


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-int8", action="store_true", help="skip int8 quantization")
    p.add_argument("--tflite", action="store_true", help="also write TFLite artifacts")
    p.add_argument("--sign-key", type=Path, help="Ed25519 private key (unsigned if not given)")
    p.add_argument("--seed", type=int, default=0, help="seed of splits, training and checks")
    p.add_argument("--replay-windows", type=_at_least_one, default=4096,
                   help="windows kept in the new model's replay buffer")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the gate report as JSON on stdout")


DESCRIPTION = "Train, build, sign, evaluate and push RaPP model bundles on a workstation."
DESCRIPTIONS = {
    "train": "Train the autoencoder on normal recordings (CSV) and write the model directory "
    "that `build` reads (needs the export extra).",
    "build": "Export the trained model to ONNX (and TFLite), quantize it to int8, fit RaPP "
    "and the alarm thresholds on held-out normal recordings, run the sanity and fidelity "
    "checks and write a .rapp bundle (needs the export extra).",
    "keygen": "Create an Ed25519 signing key KEY (mode 0600) and its public half KEY.pub "
    "for the agents' [trust] keys.",
    "sign": "Sign an existing bundle with a key from keygen (writes manifest.sig into it).",
    "push": "Send a bundle over the air through the MQTT broker to one device or a group, "
    "and wait until every device reports its final state.",
    "evaluate": "Score labelled recordings the way a device does and report window AUROC "
    "(against IsolationForest and PCA baselines) and alarm events per fault group.",
    "retrain": "Fine-tune the model on the agent's captured normal windows mixed with its "
    "replay buffer, build the next version with the same recipe, and refuse it unless it "
    "passes the regression gates against the current bundle (needs the export extra).",
    "merge": "Train one model for several programs whose normal data are close and build one "
    "bundle that replaces their bundles, if every program stays within its gate (needs the "
    "export extra).",
}


def parser() -> argparse.ArgumentParser:
    ap = CliParser(prog=PROG, description=DESCRIPTION, epilog=EXIT_STATUS_EPILOG)
    add_version_flag(ap, PROG, __version__)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_build(sub)
    _add_ota(sub)
    _add_evaluate(sub)
    _add_retrain(sub)
    _add_merge(sub)
    describe_subcommands(ap, DESCRIPTIONS)
    add_logging_flags(ap, default=DEFAULT_LEVEL)
    return ap


HEAVY = {"torch": "export", "onnx": "export", "onnxscript": "export", "tensorflow": "tflite-export"}


@contextlib.contextmanager
def needs_extra(command: str) -> Iterator[None]:
    """Turn a missing heavy dependency into an error that names the extra to install."""
    try:
        yield
    except ModuleNotFoundError as err:
        top = (err.name or "").split(".")[0]
        if top not in HEAVY:
            raise
        raise MissingExtraError(
            f"`rapp-export {command}` needs {top}, which is not installed; install the "
            f"exporter with: pip install 'rapp-edge[{HEAVY[top]}]'"
        ) from err


DEFAULT_SAMPLE_RATE_HZ = 1000.0


def _sample_rate(given: float | None, recordings: Sequence[Recording]) -> float:
    """--sample-rate, else what the recordings' time_s columns say, else the default."""
    from exporter.data import sample_rate_from_time

    if given is not None:
        return given
    found = sample_rate_from_time(recordings)
    if found is None:
        print(f"sample rate {DEFAULT_SAMPLE_RATE_HZ:g} Hz (no time_s column; set --sample-rate)")
        return DEFAULT_SAMPLE_RATE_HZ
    print(f"sample rate {found[0]:g} Hz (from time_s of {found[1]})")
    return found[0]


def _choose_model(
    args: argparse.Namespace,
    base: FeatureSpec,
    recordings: Sequence[Recording],
    normalization: Normalization,
    settings: TrainSettings,
) -> tuple[FeatureSpec, TrainSettings, Selection | None]:
    """The flags, and model selection on the normal data for what they leave open."""
    from exporter.selection import Fixed, select_model

    features = tuple(args.features) if args.features else None
    fixed = Fixed(args.window, args.hop, features, args.bottleneck)
    if args.segmentation != "window" or args.no_select or fixed.everything:
        return base, settings, None
    open_dims = [name for name, v in vars(fixed).items() if v is None]
    print(f"model selection on the normal data for: {', '.join(open_dims)} (flags fix them)")
    log = (lambda _m: None) if args.quiet else print
    selection = select_model(recordings, base, normalization, fixed, settings, log)
    print("\n".join(selection.table()))
    chosen = selection.chosen
    print(f"chose {chosen.label()}: {selection.reason} ({selection.seconds:.0f} s)")
    return chosen.spec(base), replace(settings, bottleneck=chosen.bottleneck), selection


def cmd_train(args: argparse.Namespace) -> int:
    with needs_extra("train"):
        from exporter.data import fit_normalization, load_recordings, segment_all
        from exporter.model import TrainedModel
        from exporter.replay import ReplayBuffer, save_replay
        from exporter.selection import FIXED_DEFAULTS, SELECTION_JSON
        from exporter.train import TrainSettings, plot_history, train_autoencoder

    units = args.units or ["A"] * len(args.channels)
    recordings = load_recordings(args.data, tuple(args.channels))
    base = FeatureSpec(
        channels=tuple(args.channels),
        units=tuple(units),
        sample_rate_hz=_sample_rate(args.sample_rate, recordings),
        segmentation=Segmentation(
            kind=args.segmentation,
            length=args.window or FIXED_DEFAULTS.window,
            hop=args.hop or FIXED_DEFAULTS.hop,
            min_samples=args.min_cycle,
            max_samples=args.max_cycle,
        ),
        features=tuple(args.features or FIXED_DEFAULTS.features),
    )
    normalization = fit_normalization(recordings)
    settings = TrainSettings(
        n_layers=args.layers,
        bottleneck=args.bottleneck or FIXED_DEFAULTS.bottleneck,
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        model=args.model,
    )
    spec, settings, selection = _choose_model(args, base, recordings, normalization, settings)
    segmented = segment_all(spec, normalization, recordings)
    print(
        f"{len(segmented.features)} training windows × {spec.feature_dim} features "
        f"from {len(recordings)} file(s); skipped: {vars(segmented.stats)}"
    )
    progress = None
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=settings.epochs, desc="training", unit="epoch", file=sys.stderr)

        def progress(epoch: int, train: float, val: float) -> None:
            bar.update(1)
            bar.set_postfix(train=f"{train:.4g}", val=f"{val:.4g}")

    model, history = train_autoencoder(segmented.features, settings, progress, spec)
    if bar is not None:
        bar.close()
    trained = TrainedModel(model, spec, normalization, history)
    trained = trained.with_latent_reference(segmented.features, seed=args.seed)
    trained.save(args.out)
    replay = ReplayBuffer.from_normalized(segmented.segments, normalization, segmented.program)
    save_replay(args.out, replay.bounded(args.replay_windows, seed=args.seed))
    plot_history(history, str(args.out / "training_curve.png"))
    if selection is not None:
        write_atomic(args.out / SELECTION_JSON, json.dumps(selection.to_json(), indent=1).encode())
    print(
        f"best epoch {history['best_epoch']} of {history['epochs_run']}: "
        f"validation MSE {history['best_val_loss']:.5g}; model written to {args.out}/"
    )
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    with needs_extra("build"):
        from exporter.build import BuildSettings, build_bundle
        from exporter.data import load_recordings, segment_grouped
        from exporter.model import TrainedModel
    from agent.progress import progress_bar

    # --json keeps stdout for the report: the build log goes to stderr then.
    log_to = sys.stderr if args.json else sys.stdout
    with progress_bar(total=None, desc="build: reading", quiet=args.quiet) as bar:

        def log(message: str) -> None:
            bar.write(message, file=log_to)
            if not message.startswith(" "):
                bar.stage(f"build: {message}")

        trained = TrainedModel.load(args.model)
        recordings = load_recordings(args.calibration, trained.spec.channels)
        segmented, groups = segment_grouped(trained.spec, trained.normalization, recordings)
        settings = BuildSettings(
            bundle_id=args.bundle_id or args.out.stem,
            bundle_version=args.bundle_version,
            robot=args.robot,
            programs=tuple(args.program),
            alarm=AlarmDefaults(threshold_quantile=args.quantile, score=args.alarm_score),
            false_alarms_per_day=args.false_alarms_per_day,
            quantize=not args.no_int8,
            calibration_method=args.calibration_method,
            int8_activations=args.int8_activations,
            min_spearman=args.min_spearman,
            rtol=args.rtol,
            nap_stable=args.nap_rank == "stable",
            seed=args.seed,
            strict=args.strict,
            int8_fallback=not args.strict,
        )
        extra = None
        if args.tflite:
            from exporter.tflite_export import tflite_artifacts

            extra = tflite_artifacts(int8=not args.no_int8, activations=args.int8_activations)
        sign = None
        if args.sign_key is not None:
            from exporter.keys import signer

            sign = signer(args.sign_key)
        built = build_bundle(
            trained,
            segmented.segments,
            settings,
            extra_artifacts=extra,
            sign=sign,
            log=log,
            calib_groups=groups,
        )
    write_atomic(args.out, built.data)
    if args.json:
        _print_sanity(built.report["sanity"], summary=False)
        print(json.dumps(_build_summary(args.out, built), indent=1))
        return 0
    print(f"wrote {args.out} ({len(built.data) / 1024:.0f} KiB)")
    for artifact in built.manifest["artifacts"]:
        th = artifact["thresholds"]
        levels = "  ".join(f"{name} {value:.4g}" for name, value in th.items())
        print(f"  {artifact['id']:<11} NAP k={artifact['nap_k']:<4} thresholds {levels}")
    for line in _fidelity_lines(built.report["fidelity"]):
        print(line)
    _print_sanity(built.report["sanity"])
    return 0


def _build_summary(out: Path, built: BuiltBundle) -> dict:
    """`build --json`: where the bundle went, what it holds, and the full build report."""
    manifest = built.manifest
    return {
        "bundle": str(out),
        "bytes": len(built.data),
        "bundle_id": manifest["bundle_id"],
        "bundle_version": manifest["bundle_version"],
        "artifacts": [
            {"id": a["id"], "nap_k": a["nap_k"], "thresholds": a["thresholds"]}
            for a in manifest["artifacts"]
        ],
        "report": built.report,
    }


def _fidelity_lines(fidelity: dict) -> list[str]:
    """int8 vs fp32, one line per int8 artifact, instead of the report's raw dict."""
    if not fidelity:
        return ["  fidelity: no int8 artifact to compare with fp32"]
    lines = []
    for aid, f in fidelity.items():
        shifted = f.get("spearman_nap_shifted_normal")
        lines.append(
            f"  fidelity {aid} vs {f['reference']}: NAP Spearman {f['spearman_nap']:.4f} "
            f"(floor {f['floor_spearman']:g}; normal windows only "
            f"{f['spearman_nap_normal_only']:.4f}"
            + (f", shifted normal {shifted:.4f}" if shifted is not None else "")
            + f"), pseudo-anomaly AUROC drop {f['pseudo_auroc_drop_nap']:+.4f} "
            f"(at most {f['max_auroc_drop']:g}), {f['int8_activations']}-bit activations"
        )
        if "note" in f:
            lines.append(f"  NOTE {f['note']}")
    return lines


def _print_sanity(sanity: dict, summary: bool = True) -> None:
    """Sanity verdicts after a build; without --strict a failure is only a warning."""
    bad = [c for c in sanity["checks"] if c["status"] != "pass"]
    if summary:
        n = len(sanity["checks"])
        print(f"  sanity: {sanity['status']} ({len(bad)} of {n} checks flagged)")
    for check in bad:
        print(
            f"rapp-export build: warning: sanity check {check['name']} {check['status']}: "
            f"{check['message']}",
            file=sys.stderr,
        )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from exporter.evaluate import EvalSettings, evaluate, format_report

    settings = EvalSettings(
        data=tuple(args.data),
        calibration=tuple(args.calibration),
        group_by=args.group_by,
        tolerance_s=args.tolerance,
        backend=args.backend,
        precision=args.precision,
        seed=args.seed,
    )
    from agent.progress import progress_bar

    with progress_bar(total=0, desc="evaluate", unit="sample", quiet=args.quiet) as bar:
        report = evaluate(args.bundle, settings, progress=bar.advance_to)
    if args.json == JSON_TO_STDOUT:
        print(json.dumps(report, indent=1))
        return 0
    print(format_report(report))
    if args.json is not None:
        write_atomic(args.json, json.dumps(report, indent=1).encode())
        print(f"wrote {args.json}")
    return 0


def _outputs(args: argparse.Namespace):
    """TFLite artifacts and signer of `retrain` and `merge`, as `build` makes them."""
    extra = sign = None
    if args.tflite:
        from exporter.tflite_export import tflite_artifacts

        extra = tflite_artifacts(int8=not args.no_int8)
    if args.sign_key is not None:
        from exporter.keys import signer

        sign = signer(args.sign_key)
    return extra, sign


def _write_result(args: argparse.Namespace, result, log_to) -> int:
    model_out = args.model_out or args.out.with_name(f"{args.out.stem}-model")
    result.save_model(model_out)
    write_atomic(args.out, result.built.data)
    if args.json:
        print(json.dumps(result.report, indent=1))
        return 0
    print(
        f"wrote {args.out} ({result.report['bundle_id']} version {result.report['version']}, "
        f"{len(result.built.data) / 1024:.0f} KiB) and {model_out}/",
        file=log_to,
    )
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    with needs_extra("retrain"):
        from exporter.model import TrainedModel
        from exporter.replay import load_replay
        from exporter.retrain import (
            FineTuneSettings,
            GateLimits,
            RetrainSettings,
            read_calibration,
            read_captures,
            retrain,
        )
    from agent.core.bundle import load_bundle

    log_to = sys.stderr if args.json else sys.stdout
    old = load_bundle(args.bundle)
    trained = TrainedModel.load(args.model)
    replay = load_replay(args.model)
    generation = int(replay.generation.max(initial=0)) + 1
    settings = RetrainSettings(
        fine_tune=FineTuneSettings(
            epochs=args.epochs, patience=args.patience, learning_rate=args.lr,
            replay_mix=args.replay_mix, seed=args.seed,
        ),
        gates=GateLimits(
            args.max_capture_alarm_share, args.max_false_alarm_increase, args.min_fit_gain
        ),
        replay_limit=args.replay_windows,
        quantize=False if args.no_int8 else None,
        seed=args.seed,
    )  # fmt: skip
    extra, sign = _outputs(args)
    result = retrain(
        old,
        trained,
        replay,
        read_captures(args.capture, generation),
        read_calibration(args.calibration, args.model, trained),
        settings,
        extra_artifacts=extra,
        sign=sign,
        log=lambda message: print(message, file=log_to),
    )
    return _write_result(args, result, log_to)


def cmd_merge(args: argparse.Namespace) -> int:
    with needs_extra("merge"):
        from exporter.merge import MAX_DISTANCE, Member, MergeSettings, merge
        from exporter.model import TrainedModel
        from exporter.replay import load_replay
        from exporter.retrain import GateLimits, read_captures
    from agent.core.bundle import load_bundle

    log_to = sys.stderr if args.json else sys.stdout
    members = [
        Member(load_bundle(bundle), TrainedModel.load(model), load_replay(model))
        for bundle, model in args.member
    ]
    settings = MergeSettings(
        bundle_id=args.bundle_id,
        max_distance=MAX_DISTANCE if args.max_distance is None else args.max_distance,
        gates=GateLimits(max_false_alarm_increase=args.max_false_alarm_increase),
        epochs=args.epochs,
        replay_limit=args.replay_windows,
        quantize=False if args.no_int8 else None,
        seed=args.seed,
    )
    captures = read_captures(args.capture, 0) if args.capture else None
    extra, sign = _outputs(args)
    result = merge(
        members,
        settings,
        captures,
        extra_artifacts=extra,
        sign=sign,
        log=lambda message: print(message, file=log_to),
    )
    return _write_result(args, result, log_to)


def cmd_keygen(args: argparse.Namespace) -> int:
    from exporter.keys import keygen

    key, pub = keygen(args.out)
    print(f"wrote {key} (private, mode 0600) and {pub}; add {pub} to the agents' [trust] keys")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from exporter.keys import load_private_key, sign_bundle

    key = load_private_key(args.key)
    try:
        data = args.bundle.read_bytes()
    except OSError as err:
        raise ExportError(f"{args.bundle}: cannot read ({err.strerror})") from err
    out = args.out or args.bundle
    write_atomic(out, sign_bundle(data, key))
    print(f"signed {args.bundle} → {out}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from exporter.keys import load_private_key
    from exporter.push import BrokerOptions, parse_broker, push

    key = load_private_key(args.key) if args.key is not None else None
    if key is None:
        print(
            "rapp-export push: warning: no --key; the command is unsigned and only agents "
            "with [trust] allow_unsigned = true act on it",
            file=sys.stderr,
        )
    # PushError and OSError go to main(), which tells bad input (exit 2) from failures (1)
    host, port = parse_broker(args.broker)
    try:
        data = args.bundle.read_bytes()
    except OSError as err:
        raise ExportInputError(f"{args.bundle}: cannot read ({err.strerror})") from err
    result = push(
        data,
        BrokerOptions(
            host, port, args.root, args.tls_ca, args.tls_cert, args.tls_key,
            args.username, args.password_file,
        ),
        device=args.device,
        group=args.group,
        expect=args.expect,
        robot=args.robot,
        url=args.url,
        chunk_size=args.chunk_size,
        timeout=args.timeout,
        pace_s=args.pace,
        key=key,
        rollback=args.rollback,
        expires_in=args.expires_in,
    )  # fmt: skip
    print(result.summary())
    if not result.ok:
        print(f"rapp-export push {result.transfer_id}: not committed everywhere", file=sys.stderr)
        return EXIT_FAILED
    print(f"push {result.transfer_id}: committed on {len(result.final)} device(s)")
    return 0


COMMANDS = {
    "train": cmd_train,
    "build": cmd_build,
    "keygen": cmd_keygen,
    "sign": cmd_sign,
    "push": cmd_push,
    "evaluate": cmd_evaluate,
    "retrain": cmd_retrain,
    "merge": cmd_merge,
}


# What a caller did wrong, also when it surfaces wrapped in another error (`raise … from`): a
# wrong-kind bundle given to `sign`, a model directory or key file that does not exist.
_INPUT_CAUSES = (
    AgentInputError, FirmwareInputError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
)  # fmt: skip


def exit_status(err: BaseException) -> int:
    """2 when ``err`` or any error in its ``__cause__`` chain is bad input, else 1."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, _INPUT_CAUSES):
            return EXIT_INPUT
        seen = seen.__cause__
    return EXIT_FAILURE


def silence_third_party_noise() -> None:
    """Known, harmless output of the heavy dependencies (shown again with -v):

    - torch.onnx logs "torchvision is not installed. Skipping torchvision::nms" (×4) while
      registering operators the pathway never uses;
    - torch's pytree FutureWarning about ``LeafSpec`` and torch.onnx's DeprecationWarning
      about exporting into a BytesIO (the pathway export does that on purpose);
    - TensorFlow's C++ log (cuInit failing on a machine without a GPU, oneDNN notices):
      TF_CPP_MIN_LOG_LEVEL must be set before TensorFlow is imported; errors that matter
      still surface as Python exceptions.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )
    warnings.filterwarnings(
        "ignore", message="Saving ONNX model to a BytesIO object", category=DeprecationWarning
    )
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    if _not_a_torchvision_note not in registration.filters:
        registration.addFilter(_not_a_torchvision_note)


def _not_a_torchvision_note(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("torchvision is not installed")


def _checked(ap: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args = ap.parse_args(argv)
    if args.command == "push" and args.rollback and args.key is None:
        dict(subparsers(ap))["push"].error(
            "--rollback needs --key: agents act on a signed rollback only"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _checked(parser(), argv)
    configure_logging(args.log_level or DEFAULT_LEVEL)
    if args.log_level != "debug":
        silence_third_party_noise()
    try:
        return COMMANDS[args.command](args)
    except (AgentError, FirmwareError, OSError) as err:
        code = exit_status(err)
        report_error(PROG, args.command, err, code)
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
