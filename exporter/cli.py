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
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent.core.atomic import write_atomic
from agent.core.bundle.manifest import AlarmDefaults
from agent.core.errors import AgentError, AgentInputError
from agent.core.features import FeatureSpec, Segmentation
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
    from exporter.build import BuiltBundle

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


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the autoencoder on normal recordings")
    p.add_argument("--data", nargs="+", required=True, type=Path, help="normal recording CSVs")
    p.add_argument("--channels", required=True, type=_csv_list, help="e.g. J1,J2,J3,J4,J5,J6")
    p.add_argument("--units", type=_csv_list, help="one per channel (default: A)")
    p.add_argument("--sample-rate", type=float, default=1000.0, help="sample rate in Hz")
    p.add_argument("--segmentation", choices=["window", "cycle"], default="window",
                   help="fixed windows, or robot cycles resampled to --window samples")  # fmt: skip
    p.add_argument("--window", type=int, default=64, help="samples per window or resampled cycle")
    p.add_argument("--hop", type=int, default=32, help="window hop in samples")
    p.add_argument("--min-cycle", type=int, default=0, help="shortest cycle kept (samples)")
    p.add_argument("--max-cycle", type=int, default=0, help="longest cycle kept (0 = no limit)")
    p.add_argument("--features", type=_csv_list, default=["raw"], help="raw and/or stats")
    p.add_argument("--layers", type=int, default=3, help="encoder layers")
    p.add_argument("--bottleneck", type=int, default=8, help="width of the code layer")
    p.add_argument("--epochs", type=int, default=200, help="most training epochs")
    p.add_argument("--patience", type=int, default=20,
                   help="stop after this many epochs without a better validation loss")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=128, help="windows per training step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, split and shuffling")
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
}


def parser() -> argparse.ArgumentParser:
    ap = CliParser(prog=PROG, description=DESCRIPTION, epilog=EXIT_STATUS_EPILOG)
    add_version_flag(ap, PROG, __version__)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_build(sub)
    _add_ota(sub)
    _add_evaluate(sub)
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


def cmd_train(args: argparse.Namespace) -> int:
    with needs_extra("train"):
        from exporter.data import fit_normalization, load_recordings, segment_all
        from exporter.model import TrainedModel
        from exporter.train import TrainSettings, plot_history, train_autoencoder

    units = args.units or ["A"] * len(args.channels)
    spec = FeatureSpec(
        channels=tuple(args.channels),
        units=tuple(units),
        sample_rate_hz=args.sample_rate,
        segmentation=Segmentation(
            kind=args.segmentation,
            length=args.window,
            hop=args.hop,
            min_samples=args.min_cycle,
            max_samples=args.max_cycle,
        ),
        features=tuple(args.features),
    )
    recordings = load_recordings(args.data, spec.channels)
    normalization = fit_normalization(recordings)
    segmented = segment_all(spec, normalization, recordings)
    print(
        f"{len(segmented.features)} training windows × {spec.feature_dim} features "
        f"from {len(recordings)} file(s); skipped: {vars(segmented.stats)}"
    )
    settings = TrainSettings(
        n_layers=args.layers,
        bottleneck=args.bottleneck,
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
    )
    progress = None
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=settings.epochs, desc="training", unit="epoch", file=sys.stderr)

        def progress(epoch: int, train: float, val: float) -> None:
            bar.update(1)
            bar.set_postfix(train=f"{train:.4g}", val=f"{val:.4g}")

    model, history = train_autoencoder(segmented.features, settings, progress)
    if bar is not None:
        bar.close()
    trained = TrainedModel(model, spec, normalization, history)
    trained = trained.with_latent_reference(segmented.features, seed=args.seed)
    trained.save(args.out)
    plot_history(history, str(args.out / "training_curve.png"))
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
