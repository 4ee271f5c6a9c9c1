"""`rapp-export`: train, build, sign and push RaPP model bundles on a workstation."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from agent.core.atomic import write_atomic
from agent.core.bundle.manifest import AlarmDefaults
from agent.core.errors import AgentError
from agent.core.errors import exit_code as agent_exit_code
from agent.core.features import FeatureSpec, Segmentation
from exporter.errors import ExportError, MissingExtraError
from firmware_config.errors import FirmwareError
from firmware_config.errors import exit_code as firmware_exit_code

EXIT_USAGE = 2
EXIT_FAILED = 1


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the autoencoder on normal recordings")
    p.add_argument("--data", nargs="+", required=True, type=Path, help="normal recording CSVs")
    p.add_argument("--channels", required=True, type=_csv_list, help="e.g. J1,J2,J3,J4,J5,J6")
    p.add_argument("--units", type=_csv_list, help="one per channel (default: A)")
    p.add_argument("--sample-rate", type=float, default=1000.0, help="Hz (default 1000)")
    p.add_argument("--segmentation", choices=["window", "cycle"], default="window")
    p.add_argument("--window", type=int, default=64, help="window or resampled cycle length")
    p.add_argument("--hop", type=int, default=32, help="window hop in samples")
    p.add_argument("--min-cycle", type=int, default=0, help="shortest cycle kept (samples)")
    p.add_argument("--max-cycle", type=int, default=0, help="longest cycle kept (0 = no limit)")
    p.add_argument("--features", type=_csv_list, default=["raw"], help="raw and/or stats")
    p.add_argument("--layers", type=int, default=3, help="encoder layers (default 3)")
    p.add_argument("--bottleneck", type=int, default=8)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="export, quantize, calibrate and write a .rapp bundle")
    p.add_argument("--model", required=True, type=Path, help="directory written by `train`")
    p.add_argument("--calibration", nargs="+", required=True, type=Path,
                   help="held-out normal recordings (not the training files)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="bundle path, e.g. robot1.rapp")
    p.add_argument("--bundle-id", help="default: the output file name without extension")
    p.add_argument("--bundle-version", default="1")
    p.add_argument("--robot", default="robot")
    p.add_argument("--program", type=int, action="append", default=[], help="program served")
    p.add_argument("--quantile", type=float, default=0.999, help="threshold quantile")
    p.add_argument("--no-int8", action="store_true", help="skip int8 quantization")
    p.add_argument("--calibration-method", default="minmax",
                   choices=["minmax", "percentile", "entropy"])  # fmt: skip
    p.add_argument(
        "--int8-activations",
        type=int,
        choices=[16, 8],
        default=16,
        help="activation bits of the int8 artifacts: 16 (default; meets the fp32 fidelity "
        "target) or 8 (faster kernels, Spearman vs fp32 only ~0.9-0.97)",
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sign-key", type=Path, help="Ed25519 private key (rapp-export keygen)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail the build (exit 1, no bundle written) when a sanity check fails",
    )


def _add_ota(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="new Ed25519 signing key (KEY, mode 0600) + KEY.pub")
    p.add_argument("--out", required=True, type=Path, help="private key file to create")
    p = sub.add_parser("sign", help="sign an existing bundle (writes manifest.sig)")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--key", required=True, type=Path, help="private key from keygen")
    p.add_argument("--out", type=Path, help="default: overwrite --bundle (atomically)")
    p = sub.add_parser("push", help="send a bundle over the air to a device or a group")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--broker", required=True, help="HOST:PORT")
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
        "--expires-in", type=float, metavar="SECONDS",
        help="devices refuse the command after this long (default: --timeout + 300)",
    )  # fmt: skip
    p.add_argument("--root", default="rapp/v1", help="topic root (default rapp/v1)")
    p.add_argument("--chunk-size", type=int, default=64 * 1024)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--pace", type=float, default=0.0, help="seconds between chunks (default 0)")
    p.add_argument("--tls-ca", type=Path, help="CA file; enables TLS")
    p.add_argument("--tls-cert", type=Path, help="client certificate (enables TLS)")
    p.add_argument("--tls-key", type=Path, help="client certificate key")
    p.add_argument("--username")
    p.add_argument("--password-file", type=Path)


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
    p.add_argument("--precision", default="int8", choices=["int8", "fp32"])
    p.add_argument("--seed", type=int, default=0, help="seed of the baselines")
    p.add_argument("--json", type=Path, help="also write the report as JSON")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rapp-export", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_build(sub)
    _add_ota(sub)
    _add_evaluate(sub)
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
        from exporter.data import load_recordings, segment_all
        from exporter.model import TrainedModel

    trained = TrainedModel.load(args.model)
    recordings = load_recordings(args.calibration, trained.spec.channels)
    segmented = segment_all(trained.spec, trained.normalization, recordings)
    settings = BuildSettings(
        bundle_id=args.bundle_id or args.out.stem,
        bundle_version=args.bundle_version,
        robot=args.robot,
        programs=tuple(args.program),
        alarm=AlarmDefaults(threshold_quantile=args.quantile),
        quantize=not args.no_int8,
        calibration_method=args.calibration_method,
        int8_activations=args.int8_activations,
        min_spearman=args.min_spearman,
        rtol=args.rtol,
        seed=args.seed,
        strict=args.strict,
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
        trained, segmented.segments, settings, extra_artifacts=extra, sign=sign, log=print
    )
    write_atomic(args.out, built.data)
    print(f"wrote {args.out} ({len(built.data) / 1024:.0f} KiB)")
    for artifact in built.manifest["artifacts"]:
        th = artifact["thresholds"]
        print(
            f"  {artifact['id']:<10} NAP k={artifact['nap_k']:<4} thresholds "
            f"recon {th['recon']:.4g}  sap {th['sap']:.4g}  nap {th['nap']:.4g}"
        )
    print(f"  fidelity: {json.dumps(built.report['fidelity'])}")
    _print_sanity(built.report["sanity"])
    return 0


def _print_sanity(sanity: dict) -> None:
    """Sanity verdicts after a build; without --strict a failure is only a warning."""
    bad = [c for c in sanity["checks"] if c["status"] != "pass"]
    print(f"  sanity: {sanity['status']} ({len(bad)} of {len(sanity['checks'])} checks flagged)")
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
    report = evaluate(args.bundle, settings)
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
    from exporter.push import BrokerOptions, PushError, parse_broker, push

    key = load_private_key(args.key) if args.key is not None else None
    if key is None:
        print(
            "rapp-export push: warning: no --key; the command is unsigned and only agents "
            "with [trust] allow_unsigned = true act on it",
            file=sys.stderr,
        )
    try:
        host, port = parse_broker(args.broker)
        data = args.bundle.read_bytes()
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
    except (PushError, OSError) as err:
        print(f"rapp-export push: {err}", file=sys.stderr)
        return EXIT_FAILED
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (AgentError, FirmwareError) as err:
        code = agent_exit_code(err) if isinstance(err, AgentError) else firmware_exit_code(err)
        what = "bad input: " if code == EXIT_USAGE else ""
        print(f"rapp-export {args.command}: {what}{err}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
