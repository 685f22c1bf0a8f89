"""The CIFAR-10 numbers the papers and the community checkpoints publish, each with where it is stated,
so that a measured error can be shown beside the one it should be compared with.

Errors are test errors in percent. A figure the source only draws (a curve in a plot) and never states
is recorded as ``None`` with the sentence the source does state: reading numbers off a plot would be a
guess.
"""
from __future__ import annotations

from dataclasses import dataclass

HE_2015 = "He, Zhang, Ren, Sun 2015, Deep Residual Learning for Image Recognition (arXiv:1512.03385)"
AKAMASTER = ("Idelbayev, akamaster/pytorch_resnet_cifar10, README table \"Test err(this impl.)\" "
             "(https://github.com/akamaster/pytorch_resnet_cifar10)")

# The paper's CIFAR-10 schedule (Sec. 4.2): batch 128, lr 0.1 divided by 10 at 32k and 48k iterations,
# stopped at 64k; 45k/5k train/val split; the 110-layer net warms up at 0.01 until 80% training
# accuracy (about 400 iterations).
PAPER_STEPS = 64_000


@dataclass(frozen=True)
class Published:
    error: float | None   # test error in percent; None where the source states no number
    source: str           # where the figure is stated: publication and table, figure or section
    note: str = ""        # what the figure is (best of n runs, ...) or what the source says instead

    def text(self) -> str:
        """``8.75% (He et al. 2015, Table 6)``, ``8.27% (akamaster's README)``, or what the source says when it gives no number."""
        where = self.source.replace(HE_2015, "He et al. 2015").replace(AKAMASTER, "akamaster's README")
        if self.error is None:
            return f"not stated ({where}: {self.note})" if self.note else f"not stated ({where})"
        return f"{self.error:.2f}% ({where}{', ' + self.note if self.note else ''})"


_T6 = f"{HE_2015}, Table 6"

# He et al. 2015, Table 6 ("Classification error on the CIFAR-10 test set"): ResNets with option A
# shortcuts, post-activation basic blocks, widths 16/32/64. ResNet-110 is "best (mean±std)" of 5 runs.
PAPER_TABLE6: dict[int, Published] = {
    20: Published(8.75, _T6),
    32: Published(7.51, _T6),
    44: Published(7.17, _T6),
    56: Published(6.97, _T6),
    110: Published(6.43, _T6, "best of 5 runs; mean 6.61 ± 0.16"),
    1202: Published(7.93, _T6),
}

# Table 6's parameter counts, in millions (checked against our option-A nets by tests/unit/test_published.py).
PAPER_TABLE6_PARAMS_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}

# He et al. 2015, Fig. 6 (left): plain-20/32/44/56 on CIFAR-10. The paper draws their training and test
# error curves but states no final number for them; Sec. 4.2 says only how they are ordered.
_FIG6 = f"{HE_2015}, Fig. 6 (left) and Sec. 4.2"
_FIG6_SAYS = ("the curves are drawn, no number is given; \"the deep plain nets suffer from increased depth, "
              "and exhibit higher training error when going deeper\"")
PAPER_FIG6_PLAIN: dict[int, Published] = {d: Published(None, _FIG6, _FIG6_SAYS) for d in (20, 32, 44, 56)}

# He et al. 2015, Sec. 4.2 "Exploring Over 1000 layers": ResNet-1202 reaches training error < 0.1%
# and test error 7.93% (the Table 6 figure above); the paper puts the gap down to overfitting.
PAPER_RESNET1202_TRAIN_ERROR_BELOW = 0.1

# The community checkpoints (akamaster/pytorch_resnet_cifar10, pretrained_models/): the README's test
# errors of the very files ``resnet_core.nets.community`` downloads.
COMMUNITY: dict[int, Published] = {
    20: Published(8.27, AKAMASTER),
    32: Published(7.37, AKAMASTER),
    44: Published(6.90, AKAMASTER),
    56: Published(6.61, AKAMASTER),
    110: Published(6.32, AKAMASTER),
    1202: Published(6.18, AKAMASTER),
}


def is_paper_architecture(model: dict) -> bool:
    """The CIFAR-10 nets of the paper's Sec. 4.2: basic post-activation blocks with BN, widths 16/32/64,
    10 classes, and (for ResNets) option A shortcuts. ``model`` is a ``ModelConfig`` as a dict."""
    return (model.get("block", "basic") == "basic" and not model.get("preact", False)
            and model.get("batchnorm", True) and float(model.get("width", 1)) == 1.0
            and int(model.get("num_classes", 10)) == 10
            and (not model.get("residual", True) or model.get("shortcut", "A") == "A"))


def paper_reference(run_config: dict) -> Published | None:
    """The paper's figure for a run's architecture when the run is the paper's experiment: CIFAR-10
    at 32x32 and one of the architectures of Table 6 or Fig. 6. None otherwise (a figure for another
    data set or architecture would compare nothing)."""
    model, data = run_config.get("model") or {}, run_config.get("data") or {}
    if data.get("name") != "cifar10" or int(data.get("image_size", 32)) != 32:
        return None
    if not is_paper_architecture(model):
        return None
    depth = int(model.get("depth", 0))
    table = PAPER_TABLE6 if model.get("residual", True) else PAPER_FIG6_PLAIN
    return table.get(depth)


def reference_line(run_config: dict, test_error: float | None, steps: int | None = None) -> str | None:
    """One line to show beside a run's test error (``test_error`` in percent), or None when the paper
    has no experiment like the run. Says when the run trained for fewer steps than the paper."""
    ref = paper_reference(run_config)
    if ref is None:
        return None
    ours = "no test error yet" if test_error is None else f"{test_error:.2f}% test error"
    line = f"{ours}; paper: {ref.text()}"
    if steps is not None and steps < PAPER_STEPS:
        line += f"; this run trained {steps:,} of the paper's {PAPER_STEPS:,} steps"
    return line


def run_reference(run_config: dict | None, summary: dict) -> str | None:
    """``reference_line`` for a stored run, from its config and summary (``test_acc``, ``steps``)."""
    acc = summary.get("test_acc")
    steps = summary.get("steps", summary.get("step"))
    return reference_line(run_config or {}, None if acc is None else 100 * (1 - float(acc)),
                          None if steps is None else int(steps))
