"""Command line: ``python -m resnet_core {train,describe,evaluate,runs,attribute,reproduce,analyze}``.

Every invalid value exits with status 2 and one line on stderr that says what is valid; results go
to stdout as one JSON object on the last line, progress to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from resnet_core.config import (BLOCKS, INITS, SCHEDULES, SHORTCUTS, ConfigError, DataConfig, ModelConfig, RunConfig,
                     TrainConfig)


class UsageError(Exception):
    pass


def one_line_errors(work: Callable[[], int], user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a subcommand's ``work`` and keep the CLI's promise when it raises: one ``error: ...`` line on
    stderr, never a traceback. ``user_errors`` are the subcommand's own (bad input, a missing file):
    their message is the whole line. Exit status 2, or 130 after Ctrl-C."""
    try:
        return work()
    except user_errors as e:
        print(f"error: {str(e) or type(e).__name__}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"error: {e.strerror or e}: {getattr(e, 'filename', '') or ''}", file=sys.stderr)
    except RuntimeError as e:  # e.g. an unavailable --device, or out of memory
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - the promise is one line, never a traceback
        print(f"error: unexpected {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''} "
              "(please report it with the command line)", file=sys.stderr)
    return 2


class _Parser(argparse.ArgumentParser):
    # argparse prints usage plus a message and exits 2; we keep the exit code and keep it to one line.
    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--arch", choices=("resnet", "plain"), default="resnet", help="residual or plain (no shortcuts)")
    g.add_argument("--depth", type=int, default=20, help="6n+2 for basic blocks (20, 32, 44, 56, 110...), 9n+2 for bottleneck")
    g.add_argument("--shortcut", choices=SHORTCUTS, default="A", help="A zero-pad identity, B projection where shape changes, C all projections")
    g.add_argument("--block", choices=BLOCKS, default="basic")
    g.add_argument("--preact", action="store_true", help="full pre-activation blocks (He et al. 2016)")
    g.add_argument("--no-bn", action="store_true", help="no BatchNorm")
    g.add_argument("--width", type=float, default=1, help="multiplier of the stage widths 16/32/64 (0.5: 8/16/32)")
    g.add_argument("--init", choices=INITS, default="kaiming")
    g.add_argument("--zero-init-last", action="store_true", help="zero the last BN of every residual branch")


def _model_cfg(a, num_classes: int = 10) -> ModelConfig:
    return ModelConfig(depth=a.depth, residual=a.arch == "resnet", shortcut=a.shortcut, block=a.block,
                       preact=a.preact, batchnorm=not a.no_bn, width=a.width, init=a.init,
                       zero_init_last=a.zero_init_last, num_classes=num_classes)


def _add_data_flags(p: argparse.ArgumentParser, default: str | None = "synthetic") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=default, help="synthetic (embedded shapes), cifar10, or folder:PATH")
    g.add_argument("--data-dir", default=None, help="cifar10: directory holding cifar-10-batches-py (downloaded there if missing and online)")
    g.add_argument("--no-download", action="store_true", help="cifar10: never download")
    g.add_argument("--no-augment", action="store_true", help="no pad-crop-flip augmentation")
    g.add_argument("--pca-color", action="store_true", help="AlexNet-style PCA colour augmentation")
    g.add_argument("--large-objects", action="store_true",
                   help="synthetic: larger shapes (radius 0.75-0.95 of the half-width), as the quick presets use")
    g.add_argument("--n-train", type=int, default=10000, help="synthetic: training images")
    g.add_argument("--n-test", type=int, default=2000, help="synthetic: test images")
    g.add_argument("--image-size", type=int, default=None,
                   help="input side in pixels (default 32; 16 trains ~4x faster, as the quick scale does)")


def _data_cfg(a) -> DataConfig:
    name, path = a.dataset, a.data_dir
    if name.startswith("folder:"):
        name, path = "folder", name[len("folder:"):]
    elif name == "cifar10":
        path = path or "data"
    size = {} if getattr(a, "image_size", None) is None else {"image_size": a.image_size}
    return DataConfig(name=name, path=path, download=not a.no_download, augment=not a.no_augment,
                      pca_color=a.pca_color, n_train=a.n_train, n_test=a.n_test,
                      large_objects=getattr(a, "large_objects", False), **size)


def _community_names() -> list[str]:
    from resnet_core.community import NAMES
    return NAMES


def _runs_dir(p):
    p.add_argument("--runs-dir", default=None, help="run store directory (default: $RESNET_LAB_RUNS or runs/)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m resnet_core", description="Train and analyse plain and residual CIFAR nets.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a network into the run store")
    _add_model_flags(t)
    _add_data_flags(t)
    g = t.add_argument_group("training")
    g.add_argument("--steps", type=int, default=None, help="optimizer steps (default 500 unless --epochs)")
    g.add_argument("--epochs", type=float, default=None)
    g.add_argument("--batch-size", type=int, default=128)
    g.add_argument("--lr", type=float, default=0.1)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--schedule", choices=SCHEDULES, default="step", help="step: /10 at 50%% and 75%% of the run")
    g.add_argument("--warmup-steps", type=int, default=0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    g.add_argument("--no-amp", action="store_true", help="CUDA: no bf16 autocast")
    g.add_argument("--eval-every", type=int, default=100)
    g.add_argument("--log-every", type=int, default=1)
    g.add_argument("--feature-maps-every", type=int, default=50)
    g.add_argument("--checkpoint-every", type=int, default=0)
    g.add_argument("--no-probes", action="store_true", help="log loss and accuracy only")
    g.add_argument("--name", default="", help="a label for the run")
    _runs_dir(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    from resnet_core.launch import add_launch_flags  # --sync-bn, --resume, (hidden) --config: resnet_core/launch.py
    add_launch_flags(t)

    d = sub.add_parser("describe", help="parameters, multiply-adds and layer names of a network")
    _add_model_flags(d)
    d.add_argument("--image-size", type=int, default=32, help="input side in pixels for the multiply-adds")
    d.add_argument("--json", action="store_true", help="one JSON object instead of text")

    e = sub.add_parser("evaluate", help="accuracy and loss of a checkpoint (ours or a community CIFAR-10 one)")
    e.add_argument("--checkpoint", required=True,
                   help="a .pt from runs/<id>/checkpoints, an akamaster .th file, or a community CIFAR-10 net by "
                        "name, downloaded on first use: " + ", ".join(_community_names()))
    _add_data_flags(e, default=None)
    e.add_argument("--probes", action="store_true", help="also measure branch responses and activation statistics")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--limit", type=int, default=None, help="evaluate at most this many test images")
    e.add_argument("--device", default="auto")

    est = sub.add_parser("estimate", help="how long the default Start and each preset take on this machine "
                                          "(from timed training steps, measured once and cached)")
    est.add_argument("--calibrate", action="store_true", help="time the training steps again, even if cached")
    est.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    est.add_argument("--scale", default="quick", choices=["quick", "paper"])
    est.add_argument("--parallel", type=int, default=None,
                     help="runs trained at once (default: $RESNET_LAB_MAX_RUNS or 2, as the dashboard)")

    r = sub.add_parser("runs", help="list stored runs")
    _runs_dir(r)
    r.add_argument("--json", action="store_true")

    from resnet_core.reproduce_cli import add_reproduce_parser  # the papers' experiments: resnet_core/reproduce_cli.py
    add_reproduce_parser(sub)
    from resnet_core.analyze_cli import add_analyze_parser  # why residual nets work: resnet_core/analyze_cli.py
    add_analyze_parser(sub)

    try:
        from resnet_core.attribute_cli import add_attribute_parser
    except ImportError:  # attribution needs captum; the rest of the CLI works without it
        pass
    else:
        add_attribute_parser(sub)
    return parser


# The progress bar per run (tqdm, on stderr, with ETA) is shared with ``reproduce``: resnet_core/progress.py
from resnet_core.progress import RunProgress as _Progress  # noqa: E402


def cmd_train(a) -> int:
    from resnet_core.data import load_dataset
    from resnet_core.launch import run_saved, run_training

    if a.resume or a.config:  # the configuration is the stored run's or the file's, not the flags'
        return run_saved(a, on_event=_Progress(not a.quiet))

    steps = a.steps if (a.steps is not None or a.epochs is not None) else 500
    tc = TrainConfig(steps=steps, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
                     weight_decay=a.weight_decay, schedule=a.schedule, warmup_steps=a.warmup_steps, seed=a.seed,
                     device=a.device, amp=not a.no_amp, eval_every=a.eval_every, log_every=a.log_every,
                     feature_maps_every=a.feature_maps_every, checkpoint_every=a.checkpoint_every,
                     probes=not a.no_probes)
    data_cfg = _data_cfg(a)
    _model_cfg(a)  # validate the model flags before loading any data
    from resnet_core.train import resolve_device
    resolve_device(tc.device)
    ds = load_dataset(data_cfg)
    cfg = RunConfig(model=_model_cfg(a, num_classes=len(ds.classes)), data=data_cfg, train=tc, name=a.name)
    # One process or a torchrun rank, signals and the STOP file, the JSON summary: resnet_core/launch.py
    return run_training(cfg, ds, a.runs_dir, on_event=_Progress(not a.quiet), sync_bn=a.sync_bn)


def cmd_describe(a) -> int:
    from resnet_core.models import build_model, count_macs, count_params

    cfg = _model_cfg(a)
    size = DataConfig(image_size=a.image_size).image_size  # validated like a run's
    model = build_model(cfg)
    out = {"name": cfg.name, "config": cfg.to_dict(), "image_size": size, "params": count_params(model),
           "macs": count_macs(model, (size, size)),
           "layers": model.layer_names, "blocks": [n for n, _ in model.named_blocks()],
           "feature_info": [fi.__dict__ for fi in model.feature_info]}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{cfg.name}: {out['params']:,} parameters, {out['macs'] / 1e6:.2f}M multiply-adds per {size}x{size} image, "
              f"{len(out['layers'])} weight layers, {len(out['blocks'])} blocks")
        print("layers: " + ", ".join(out["layers"]))
    return 0


def cmd_evaluate(a) -> int:
    from resnet_core import community
    from resnet_core.checkpoints import load_checkpoint
    from resnet_core.evaluate import evaluate_checkpoint, reference_line

    if community.is_community(a.checkpoint):  # downloaded on first use, with a bar on stderr
        community.ensure_with_bar(a.checkpoint)
        loaded = community.load(a.checkpoint)
    else:
        loaded = load_checkpoint(a.checkpoint)
    data_cfg = None
    if a.dataset is not None:
        if a.image_size is None:  # a run's checkpoint is evaluated at the size it was trained at
            a.image_size = ((loaded.meta.get("run_config") or {}).get("data") or {}).get("image_size")
        data_cfg = _data_cfg(a)
    out = evaluate_checkpoint(loaded, data_cfg, batch_size=a.batch_size, limit=a.limit, device=a.device,
                              with_probes=a.probes)
    line = reference_line(loaded, out)
    if line:  # the published figures beside the measured one, for a person; the JSON carries them too
        print(line, file=sys.stderr)
    print(json.dumps(out))
    return 0


def cmd_estimate(a) -> int:
    from resnet_core import costmodel
    from resnet_core.presets import PRESETS, estimate_seconds, preset_configs, runs_at_once, scale_config
    from resnet_core.train import resolve_device

    resolve_device(a.device)
    if a.parallel is not None and not 1 <= a.parallel <= 16:
        raise ConfigError(f"parallel must be from 1 to 16; got {a.parallel}")
    cal = None if a.calibrate else costmodel.load_calibration(a.device)
    if cal is None:
        print(f"timing training steps on this machine ({a.device}); cached in {costmodel.cache_path(a.device)}",
              file=sys.stderr)
        cal = costmodel.calibrate(a.device)
    parallel = a.parallel or runs_at_once()
    out = {"machine": cal.machine, "basis": cal.basis, "parallel": parallel, "startup_s": round(cal.startup_s, 3),
           "coefficients": {str(t): {"fixed_s": round(c[0], 5), "per_layer_s": round(c[1], 6),
                                     "per_gmac_s": round(c[2], 5)} for t, c in cal.coefficients.items()},
           "samples": cal.samples,
           "estimates_s": {"start": round(estimate_seconds([scale_config(a.scale, device=a.device)], a.device,
                                                           parallel), 1),
                           **{key: round(estimate_seconds(preset_configs(key, a.scale, device=a.device), a.device,
                                                          parallel), 1) for key in PRESETS}}}
    print(json.dumps(out))
    return 0


def cmd_runs(a) -> int:
    from resnet_core.runs import RunStore

    infos = RunStore(a.runs_dir).list()
    rows = [{"run_id": r.run_id, "label": r.label, "status": r.status, "steps": r.summary.get("steps", r.summary.get("step")),
             "train_loss": r.summary.get("train_loss"), "train_acc": r.summary.get("train_acc"),
             "test_acc": r.summary.get("test_acc"), "error": r.error or None} for r in infos]
    if a.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print(f"no runs in {RunStore(a.runs_dir).root}")
        return 0
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    print(f"{'run_id':<48} {'status':<11} {'steps':>6} {'loss':>7} {'train_acc':>9} {'test_acc':>8}")
    for r in rows:
        print(f"{r['run_id']:<48} {r['status']:<11} {fmt(r['steps']):>6} {fmt(r['train_loss']):>7} "
              f"{fmt(r['train_acc']):>9} {fmt(r['test_acc']):>8}" + (f"  {r['error']}" if r["error"] else ""))
    return 0


COMMANDS = {"train": cmd_train, "describe": cmd_describe, "evaluate": cmd_evaluate, "runs": cmd_runs,
            "estimate": cmd_estimate}


def main(argv: list[str] | None = None) -> int:
    from resnet_core.checkpoints import CheckpointError
    from resnet_core.data import DataError

    def work() -> int:
        args = build_parser().parse_args(argv)
        if args.command == "attribute":
            from resnet_core.attribute_cli import run_attribute
            return run_attribute(args)
        if args.command == "reproduce":
            from resnet_core.reproduce_cli import run_reproduce
            return run_reproduce(args)
        if args.command == "analyze":
            from resnet_core.analyze_cli import run_analyze
            return run_analyze(args)
        return COMMANDS[args.command](args)

    return one_line_errors(work, (UsageError, ConfigError, DataError, CheckpointError, FileNotFoundError,
                                  ValueError))
