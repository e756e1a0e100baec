"""The ``emotune`` command (also ``python -m emotune``).

Each subcommand imports its part lazily, so ``emotune config check`` works without torch and the
streaming parts never pull in training code. A part that is not built says so and exits 3.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emotune.config import PROJECT_ROOT, EmotuneConfig, load_config
from emotune.errors import ConfigError, EmotuneError, NotBuiltError
from emotune.reference import config_reference_markdown

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_NOT_BUILT = 0, 1, 2, 3
DEFAULT_CONFIG = PROJECT_ROOT / "config.yml"


def _target(dotted: str) -> Callable[..., Any]:
    """Resolve ``package.module:function``; NotBuiltError if that part does not exist yet."""
    module_name, _, func_name = dotted.partition(":")
    if importlib.util.find_spec(module_name.split(".")[0]) is None or _missing(module_name):
        raise NotBuiltError(f"'{module_name}' is not built yet")
    module = importlib.import_module(module_name)
    func = getattr(module, func_name, None)
    if func is None:
        raise NotBuiltError(f"'{module_name}.{func_name}' is not built yet")
    return func  # type: ignore[no-any-return]


def _missing(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is None
    except ModuleNotFoundError:
        return True


def _load(args: argparse.Namespace) -> EmotuneConfig:
    return load_config(args.config)


def _cmd_config_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    print(f"{args.config}: OK (profile={cfg.profile}, model={cfg.model_path()}, rasa={cfg.rasa.url})")
    if args.show:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    return EXIT_OK


def _cmd_config_reference(args: argparse.Namespace) -> int:
    text = config_reference_markdown()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(text)
    return EXIT_OK


def _cmd_config_reload(args: argparse.Namespace) -> int:
    reload = _target("connectors.gateway:request_reload")
    return int(reload(_load(args)))


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = _load(args)
    run = _target("emotion_models.train:run")
    training = cfg.training
    overrides: dict[str, Any] = {
        "data_sources": [src.model_copy(update={"path": cfg.resolve(src.path)}) for src in training.sources],
        "output_folder": str(cfg.resolve(training.output_dir)),
        "classes": list(training.classes),
        "min_examples_per_class": training.min_examples_per_class,
    }
    epochs = args.epochs or training.epochs
    if epochs:
        overrides["number_of_epochs"] = epochs
    results = run(cfg.resolve(args.hparams or training.hparams), overrides)
    print(json.dumps(_headline(results), indent=2))
    return EXIT_OK


def _headline(results: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.items() if not isinstance(v, dict | list)}


def _cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune -> export -> parity check -> int8 -> reports, in one command."""
    cfg = _load(args)
    base_model = Path(args.base) if args.base else cfg.model_path()
    if base_model.is_dir():
        return _finetune_v2(args, cfg, base_model)
    finetune = _target("emotion_models.finetune:run")
    export = _target("export_onnx.export:run")
    calibration_from_manifest = _target("export_onnx.quantize:calibration_from_manifest")
    output = Path(args.output)
    base = Path(args.base) if args.base else cfg.resolve(cfg.model.path).with_name("model.ckpt")
    print(f"[finetune] 1/3 fine-tuning {base} on {args.data}", file=sys.stderr)
    report = finetune(
        Path(args.data), base, output, epochs=args.epochs or cfg.training.epochs or 10,
        min_examples_per_class=cfg.training.min_examples_per_class,
    )  # fmt: skip
    print("[finetune] 2/3 exporting to ONNX with a parity check against PyTorch", file=sys.stderr)
    print("[finetune] 3/3 static int8 quantization calibrated on your recordings", file=sys.stderr)
    exported = export(output / "model.ckpt", output, calibration=calibration_from_manifest(Path(args.data)))
    summary = {
        "model": str(output / "emotion.onnx"),
        "int8_model": str(output / "emotion.int8.onnx"),
        "sidecar": str(output / "emotion.json"),
        "parity_max_abs_diff": exported["parity_max_abs_diff"],
        "validation_before": report.get("before"),
        "validation_after": report.get("after"),
        "use_it": f"set model.path: {output / 'emotion.onnx'} in config.yml",
    }
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _finetune_v2(args: argparse.Namespace, cfg: Any, base_model: Path) -> int:
    """v2: the encoder stays, the head is fine-tuned and exported with its parity check, in one step."""
    finetune = _target("emotion_models.finetune_v2:run")
    output = Path(args.output)
    print(f"[finetune] fine-tuning the head of {base_model} on {args.data} (encoder frozen)", file=sys.stderr)
    report = finetune(
        Path(args.data), base_model, output, args.epochs or cfg.training.epochs,
        min_examples_per_class=cfg.training.min_examples_per_class, data_licence=args.data_licence,
        speed_perturb=cfg.training.speed_perturb,
    )  # fmt: skip
    calibration = report.get("calibration") or {}
    summary = {
        "model": str(output),
        "sidecar": str(output / "emotion.json"),
        "report": str(output / "finetune_report.json"),
        "held_out_speakers_before": report.get("before"),
        "held_out_speakers_after": report.get("after"),
        "temperature": calibration.get("temperature"),
        "temperature_from": calibration.get("temperature_from"),
        "wall_seconds": report.get("wall_seconds"),
        "use_it": f"set model.path: {output} in config.yml",
    }
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    run = _target("export_onnx.export:run")
    run(Path(args.checkpoint), Path(args.output))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    serve = _target("connectors.gateway:main")
    return int(serve(["--config", str(args.config), *args.rest]) or 0)


def _cmd_pilot(args: argparse.Namespace) -> int:
    pilot = _target("connectors.tools.pilot:main")
    return int(pilot(["--config", str(args.config), *args.rest]) or 0)


def _cmd_demo(args: argparse.Namespace) -> int:
    demo = _target("connectors.tools.demo:main")
    return int(demo(["--config", str(args.config), *args.rest]) or 0)


def _cmd_bench(args: argparse.Namespace) -> int:
    bench_path = PROJECT_ROOT / "benchmarks" / "bench_runtime.py"
    if not bench_path.exists():
        raise NotBuiltError("benchmarks/bench_runtime.py is not built yet")
    spec = importlib.util.spec_from_file_location("emotune_bench_runtime", bench_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(list(args.rest)) or 0)


def _cmd_report(args: argparse.Namespace) -> int:
    report = _target("connectors.tools.report:main")
    return int(report([args.call, *args.rest]) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotune", description="Emotion-aware voice bots.")
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="operator config (default: config.yml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="check, document or reload the operator config")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("file", nargs="?", type=Path, help="config file (default: --config)")
    check.add_argument("--show", action="store_true", help="print the effective config")
    check.set_defaults(func=_cmd_config_check)
    ref = config_sub.add_parser("reference", help="print the field reference (Markdown)")
    ref.add_argument("--output", help="write to this file instead of stdout")
    ref.set_defaults(func=_cmd_config_reference)
    reload = config_sub.add_parser("reload", help="make the running gateway re-read its config")
    reload.set_defaults(func=_cmd_config_reload)

    train = sub.add_parser("train", help="train the emotion model with the SpeechBrain recipe")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--hparams", default=None, help="hparams YAML (default: training.hparams)")
    train.set_defaults(func=_cmd_train)

    finetune = sub.add_parser("finetune", help="fine-tune the shipped model on your own recordings")
    finetune.add_argument("--data", required=True, help="CSV manifest: path,label[,speaker]")
    finetune.add_argument("--output", default="results/finetune", help="output directory")
    finetune.add_argument("--epochs", type=int, default=None)
    finetune.add_argument("--base", default=None, help="checkpoint to start from (default: shipped model)")
    finetune.add_argument("--data-licence", default=None,
                          help="the terms of your clips, written into the model card (v2 models)")
    finetune.set_defaults(func=_cmd_finetune)

    export = sub.add_parser("export", help="export a checkpoint to ONNX (+ int8) with parity check")
    export.add_argument("checkpoint")
    export.add_argument("--output", default="results/export")
    export.set_defaults(func=_cmd_export)

    serve = sub.add_parser(
        "serve", help="run the websocket gateway (--port, --log-format, --log-level, --log-dir, --config)",
        add_help=False,
    )
    serve.set_defaults(func=_cmd_serve, passthrough=True)

    pilot = sub.add_parser(
        "pilot", help="a pilot stack: gateway + Rasa + action server, with the bot model named explicitly",
        add_help=False,
    )
    pilot.set_defaults(func=_cmd_pilot, passthrough=True)

    demo = sub.add_parser("demo", help="play the bundled sample call through the whole system")
    demo.add_argument("rest", nargs=argparse.REMAINDER)
    demo.set_defaults(func=_cmd_demo)

    bench = sub.add_parser("bench", help="streaming runtime benchmark (JSON report + plot)")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=_cmd_bench)

    report = sub.add_parser("report", help="emotion timeline report of a recorded call or event log")
    report.add_argument("call")
    report.add_argument("rest", nargs=argparse.REMAINDER)
    report.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # serve and pilot hand their options to the part that owns them (its --help lists them).
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = [*getattr(args, "rest", []), *rest] if getattr(args, "passthrough", False) else getattr(args, "rest", [])
    if getattr(args, "file", None) is not None:
        args.config = args.file
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except NotBuiltError as exc:
        print(f"emotune {args.command}: not built yet ({exc})", file=sys.stderr)
        return EXIT_NOT_BUILT
    except EmotuneError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
