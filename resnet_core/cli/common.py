"""What every subcommand shares: the model and data flags, their configs, one-line errors."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from resnet_core.config import BLOCKS, INITS, SHORTCUTS, DataConfig, ModelConfig


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


class OneLineParser(argparse.ArgumentParser):
    # argparse prints usage plus a message and exits 2; we keep the exit code and keep it to one line.
    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def add_model_flags(p: argparse.ArgumentParser) -> None:
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


def model_config(a, num_classes: int = 10) -> ModelConfig:
    return ModelConfig(depth=a.depth, residual=a.arch == "resnet", shortcut=a.shortcut, block=a.block,
                       preact=a.preact, batchnorm=not a.no_bn, width=a.width, init=a.init,
                       zero_init_last=a.zero_init_last, num_classes=num_classes)


def add_data_flags(p: argparse.ArgumentParser, default: str | None = "synthetic") -> None:
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


def dataset_name_and_path(dataset: str, data_dir: str | None) -> tuple[str, str | None]:
    """``--dataset`` and ``--data-dir`` as DataConfig's name and path: folder:PATH names its folder,
    cifar10 lives in data/ unless told otherwise."""
    if dataset.startswith("folder:"):
        return "folder", dataset[len("folder:"):]
    if dataset == "cifar10":
        return dataset, data_dir or "data"
    return dataset, data_dir


def data_config(a) -> DataConfig:
    name, path = dataset_name_and_path(a.dataset, a.data_dir)
    size = {} if getattr(a, "image_size", None) is None else {"image_size": a.image_size}
    return DataConfig(name=name, path=path, download=not a.no_download, augment=not a.no_augment,
                      pca_color=a.pca_color, n_train=a.n_train, n_test=a.n_test,
                      large_objects=getattr(a, "large_objects", False), **size)


def community_names() -> list[str]:
    from resnet_core.nets.community import NAMES
    return NAMES


def add_runs_dir_flag(p):
    p.add_argument("--runs-dir", default=None, help="run store directory (default: $RESNET_LAB_RUNS or runs/)")
