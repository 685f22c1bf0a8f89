"""``python -m resnet_core train``: one network into the run store, in one process or as a torchrun rank.

The flags make a RunConfig; launch.py runs it (signals, the STOP file, resume, DDP, the JSON summary)
and progress.py draws the bar (tqdm on stderr, shared with ``reproduce``).
"""
from __future__ import annotations

from resnet_core.cli.common import add_data_flags, add_model_flags, add_runs_dir_flag, data_config, model_config
from resnet_core.cli.launch import add_launch_flags, run_saved, run_training
from resnet_core.cli.progress import RunProgress
from resnet_core.config import SCHEDULES, RunConfig, TrainConfig


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a network into the run store")
    add_model_flags(t)
    add_data_flags(t)
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
    add_runs_dir_flag(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    add_launch_flags(t)  # --sync-bn, --resume, (hidden) --config: launch.py

    t.set_defaults(subcommand=run)


def run(a) -> int:
    from resnet_core.data import load_dataset

    if a.resume or a.config:  # the configuration is the stored run's or the file's, not the flags'
        return run_saved(a, on_event=RunProgress(not a.quiet))

    steps = a.steps if (a.steps is not None or a.epochs is not None) else 500
    tc = TrainConfig(steps=steps, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
                     weight_decay=a.weight_decay, schedule=a.schedule, warmup_steps=a.warmup_steps, seed=a.seed,
                     device=a.device, amp=not a.no_amp, eval_every=a.eval_every, log_every=a.log_every,
                     feature_maps_every=a.feature_maps_every, checkpoint_every=a.checkpoint_every,
                     probes=not a.no_probes)
    data_cfg = data_config(a)
    model_config(a)  # validate the model flags before loading any data
    from resnet_core.device import resolve_device

    resolve_device(tc.device)
    ds = load_dataset(data_cfg)
    cfg = RunConfig(model=model_config(a, num_classes=len(ds.classes)), data=data_cfg, train=tc, name=a.name)
    # One process or a torchrun rank, signals and the STOP file, the JSON summary: resnet_core/cli/launch.py
    return run_training(cfg, ds, a.runs_dir, on_event=RunProgress(not a.quiet), sync_bn=a.sync_bn)
