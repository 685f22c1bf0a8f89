"""The experiments from the papers, defined once for the dashboard and the CLI (``reproduce``).

A *scale* sizes a run: ``quick`` shows the finding on a 2-core CPU in minutes (16x16 shapes, half
width, small batches, few steps), ``paper`` is the paper's setting (CIFAR-10 when present, widths
16/32/64, batch 128, 64k iterations with lr 0.1 divided by 10 at 32k and 48k). A *preset* turns a
base config at a scale into the runs of one experiment (same seed, hence the same batches, and the
same ``group`` so the dashboard shows them together) and reads a verdict from their curves.

Every figure here comes from ``resnet_core.curves``, so the page and the CLI's JSON agree.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from resnet_core.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from resnet_core.curves import final_test_error, final_train_error
from resnet_core.published import paper_reference

SCALES = ("quick", "paper")

# ----------------------------------------------------------------------------------------------------
# Scales
#
# quick, measured on a 2-core x86-64 CPU (README, "Findings in minutes"):
# * the default Start is ResNet-8 on the presets' 16x16 data (below), batch 128, 300 steps: it leaves
#   the initial plateau (about 90% error) within ~50 steps and passes 80% test accuracy by step ~150.
# * the presets train 16x16 inputs at widths 8/16/32 (1/16 of the paper net's multiply-adds per
#   image), batch 64, 1,000 steps at a constant lr 0.1 after a 50-step warm-up, probes every 5th step
#   and feature maps every 100 (their fixed cost weighs more on a 16x16 step). On the shapes set they
#   use its large-object variant and no pad-crop-flip: the findings are about training error, and
#   with the standard set and augmentation ResNet-56 sat on the initial plateau (~90% error) for
#   500-700 steps, longer on some seeds, so 1,300 steps were needed and the depth sweep's verdict
#   still failed on 2 of 3 seeds. With both changes ResNet-56 ends 800 steps at 6-20% error while
#   plain-56 stays at 89% (3 seeds); the large variant alone left ResNet-56 at 22-34%, no
#   augmentation alone left even ResNet-20 at 12-32%.
#   The constant rate is what a short run needs: the paper's drops at 50%/75% stopped ResNet-56
#   while it was still on the plateau. The depth sweep's ten runs get 500 steps to stay within
#   the quick scale's minutes (172 s per seed; at 600 it took 216 s): ResNet-56 then ends 33-78
#   points below plain-56 over 3 seeds, the slowest seed still leaving the plateau.
# paper: He et al. 2015 §4.2: batch 128, lr 0.1, /10 at 32k and 48k of 64k iterations, weight decay
# 1e-4, momentum 0.9, 4-pixel pad-and-crop, widths 16/32/64 at 32x32; no warm-up below 110 layers.
# ----------------------------------------------------------------------------------------------------

QUICK_START_MODEL = dict(depth=8, width=1)
# The default Start trains on the quick presets' data (16x16 large-object shapes, no augmentation):
# measured one-thread CPU-seconds to test accuracy on a 2-core AMD EPYC (README, "Findings in
# minutes"): 80% at step ~150 (6.5 CPU-s) and 95% at step 300 (11 CPU-s), where the former default
# (32x32 standard shapes with pad-crop-flip) took 500 steps and 58 CPU-s to reach 78%. That is what
# lets the slower 2-core machines the dashboard is for show a trained net within a minute.
QUICK_START_IMAGE_SIZE = 16
# Periodic checkpoints (weights, optimizer and loader state: a few MB for these nets, milliseconds to
# write) so that a run the server or a crash killed can be resumed (resnet_core/resume.py) losing at
# most one interval, not the whole run.
QUICK_START_TRAIN = dict(steps=300, batch_size=128, lr=0.1, warmup_steps=0, schedule="cosine", eval_every=50,
                         eval_batches=4, log_every=1, feature_maps_every=25, checkpoint_every=100)
QUICK_IMAGE_SIZE = 16
QUICK_WIDTH = 0.5
QUICK_TRAIN = dict(steps=1000, batch_size=64, lr=0.1, warmup_steps=50, schedule="constant", eval_every=200,
                   eval_batches=4, log_every=5, feature_maps_every=100, checkpoint_every=250)
QUICK_SWEEP_STEPS = 500
# The Degradation preset at quick scale: 600 steps. Its verdict held on 3 of 3 seeds at 600 (plain-56
# 63-80 points above plain-20, ResNet-56 51-77 points below plain-56; bench/paper_findings.py), and it
# has to end within 3 minutes on the slower 2-core machines (at 1,000 steps it took 247 s there).
QUICK_FIG6_STEPS = 600
# The presets' data at quick scale: no pad-crop-flip (the findings are about training error, and
# augmentation slowed every net's first phase) and, on the shapes set, the large-object variant (at
# 16x16 a standard shape keeps only 4-6 pixels of radius).
QUICK_AUGMENT = False
QUICK_LARGE_OBJECTS = True
PAPER_TRAIN = dict(steps=64000, batch_size=128, lr=0.1, warmup_steps=0, schedule="step", eval_every=1000,
                   eval_batches=8, log_every=10, feature_maps_every=2000, checkpoint_every=2000)
# The paper warms ResNet-110 up at lr 0.01 "until the training error is below 80% (about 400 iterations)".
PAPER_WARMUP_DEPTH, PAPER_WARMUP_STEPS = 110, 400
DEFAULT_CIFAR_DIR = "data"


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ConfigError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")


def default_scale(device: str = "auto") -> str:
    """``paper`` when ``device`` resolves to a CUDA GPU, else ``quick`` (a CPU or an Apple GPU)."""
    from resnet_core.train import resolve_device  # late: importing torch's device probing is not free

    try:
        return "paper" if resolve_device(device).type == "cuda" else "quick"
    except RuntimeError:  # cuda asked for but absent: the run itself will say so
        return "quick"


def cifar10_present(data_dir: str | Path = DEFAULT_CIFAR_DIR) -> bool:
    from resnet_core.data import CIFAR10_DIRNAME

    root = Path(data_dir).expanduser()
    return (root / CIFAR10_DIRNAME).is_dir() or (root.name == CIFAR10_DIRNAME and root.is_dir())


def scale_data(scale: str, dataset: DataConfig | None = None, image_size: int | None = None) -> DataConfig:
    """The data at a scale: the given set (else CIFAR-10 at paper scale when present, else the shapes)
    at ``image_size`` (default: the presets' size at that scale, 16 quick, 32 paper)."""
    _check_scale(scale)
    if dataset is None:
        if scale == "paper" and cifar10_present():
            dataset = DataConfig(name="cifar10", path=DEFAULT_CIFAR_DIR, download=False)
        else:
            dataset = DataConfig()
    size = image_size or (QUICK_IMAGE_SIZE if scale == "quick" else 32)
    return dataclasses.replace(dataset, image_size=size)


def _quick_data(data: DataConfig) -> DataConfig:
    return dataclasses.replace(data, augment=QUICK_AUGMENT, large_objects=QUICK_LARGE_OBJECTS and data.name == "synthetic")


def scale_config(scale: str, dataset: DataConfig | None = None, device: str = "auto", seed: int = 0) -> RunConfig:
    """The default single run at ``scale``: quick, the dashboard's default Start (ResNet-8 on the quick
    presets' 16x16 data, which trains to over 80% test accuracy within a minute on a 2-core CPU);
    paper, ResNet-20 in the paper's setting."""
    _check_scale(scale)
    if scale == "quick":
        return RunConfig(model=ModelConfig(**QUICK_START_MODEL),
                         data=_quick_data(scale_data(scale, dataset, QUICK_START_IMAGE_SIZE)),
                         train=TrainConfig(**QUICK_START_TRAIN, seed=seed, device=device))
    return RunConfig(model=ModelConfig(depth=20), data=scale_data(scale, dataset),
                     train=TrainConfig(**PAPER_TRAIN, seed=seed, device=device))


def preset_base(scale: str, dataset: DataConfig | None = None, device: str = "auto", seed: int = 0) -> RunConfig:
    """The config every preset's runs start from at ``scale`` (ResNet-20; the preset sets the rest)."""
    _check_scale(scale)
    width, settings = (QUICK_WIDTH, QUICK_TRAIN) if scale == "quick" else (1, PAPER_TRAIN)
    data = scale_data(scale, dataset)
    if scale == "quick":
        data = _quick_data(data)
    return RunConfig(model=ModelConfig(depth=20, width=width), data=data,
                     train=TrainConfig(**settings, seed=seed, device=device))


def scale_of(cfg: RunConfig) -> str | None:
    """Which scale's preset base a config was built from (by size, width and batch), or None."""
    for scale in SCALES:
        ref = preset_base(scale)
        if (cfg.data.image_size, cfg.model.width, cfg.train.batch_size) == (
                ref.data.image_size, ref.model.width, ref.train.batch_size):
            return scale
    return None


# ----------------------------------------------------------------------------------------------------
# Presets: base config -> runs
# ----------------------------------------------------------------------------------------------------

def _variant(base: RunConfig, **model_changes) -> RunConfig:
    model = dataclasses.replace(base.model, **model_changes)
    train = base.train
    if (scale_of(base) == "paper" and model.depth >= PAPER_WARMUP_DEPTH and train.warmup_steps == 0):
        train = dataclasses.replace(train, warmup_steps=PAPER_WARMUP_STEPS)
    return dataclasses.replace(base, model=model, train=train, name="")


def build_twin(base: RunConfig) -> list[RunConfig]:
    """The same configuration as a plain net and as a residual net: plain first, drawn on the left."""
    return [_variant(base, residual=False), _variant(base, residual=True)]


def build_fig6(base: RunConfig) -> list[RunConfig]:
    """He et al. 2015, Fig. 6: plain-20, plain-56, ResNet-20, ResNet-56 (basic blocks, post-activation)."""
    runs = [_variant(base, block="basic", preact=False, depth=d, residual=r) for r in (False, True) for d in (20, 56)]
    if scale_of(base) == "quick":
        runs = [dataclasses.replace(c, train=dataclasses.replace(c.train, steps=QUICK_FIG6_STEPS)) for c in runs]
    return runs


def build_options(base: RunConfig) -> list[RunConfig]:
    """He et al. 2015, Table 3: shortcut option A (zero-pad identity), B (projections where the shape
    changes), C (all projections), on ResNet-20 of the base's width."""
    runs = [_variant(base, residual=True, block="basic", depth=20, shortcut=s) for s in ("A", "B", "C")]
    return [dataclasses.replace(c, name=f"{c.label} option {c.model.shortcut}") for c in runs]


def build_preact(base: RunConfig) -> list[RunConfig]:
    """He et al. 2016: the original post-activation block against full pre-activation, at the base's depth."""
    return [_variant(base, residual=True, preact=p) for p in (False, True)]


SWEEP_DEPTHS = (8, 20, 32, 44, 56)


def build_depth_sweep(base: RunConfig) -> list[RunConfig]:
    """Plain and residual nets at depths 8..56: final training error against depth is the degradation
    problem in one chart (plain rises with depth, residual does not)."""
    runs = [_variant(base, block="basic", preact=False, depth=d, residual=r) for r in (False, True)
            for d in SWEEP_DEPTHS]
    if scale_of(base) == "quick":  # ten runs: fewer steps each to fit in the quick scale's minutes
        runs = [dataclasses.replace(c, train=dataclasses.replace(c.train, steps=QUICK_SWEEP_STEPS)) for c in runs]
    return runs


# ----------------------------------------------------------------------------------------------------
# Summaries and verdicts
# ----------------------------------------------------------------------------------------------------

def run_summary(config: RunConfig, records: list[dict]) -> dict:
    """The end-of-run figures the verdicts read, from a run's config and its metrics records."""
    steps = [r for r in records if r.get("type") == "step"]
    branch = None
    if config.model.residual:
        stds = [r["branch_std"] for r in steps if r.get("branch_std")]
        if stds:
            last = [v for v in stds[-1] if v is not None and math.isfinite(v)]
            branch = sum(last) / len(last) if last else None
    # Fig. 7's quantity: the std of every BN output after a 3x3 conv (probes' layer_response_std), plain and
    # residual alike, from the last logged step
    responses = [r["layer_response_std"] for r in steps if r.get("layer_response_std")]
    last = [v for v in (responses[-1] if responses else []) if v is not None and math.isfinite(v)]
    summary = {"label": config.label, "arch": "resnet" if config.model.residual else "plain",
               "depth": config.model.depth, "shortcut": config.model.shortcut, "preact": config.model.preact,
               "seed": config.train.seed, "steps": steps[-1]["step"] if steps else 0,
               "final_train_error": final_train_error(records), "final_test_error": final_test_error(records),
               "branch_std_mean": branch, "response_std_mean": sum(last) / len(last) if last else None}
    reference = paper_reference(config.to_dict())  # a CIFAR-10 run of one of the paper's nets
    if reference is not None:  # as a fraction like the errors beside it; None: the paper states none
        summary["paper_test_error"] = None if reference.error is None else reference.error / 100
    return summary


def _pts(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _find(summaries: list[dict], **match) -> dict | None:
    for s in summaries:
        if all(s.get(k) == v for k, v in match.items()):
            return s
    return None


def _by_seed(summaries: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for s in summaries:
        out.setdefault(s["seed"], []).append(s)
    return dict(sorted(out.items()))


def _check(name: str, seed: int, value: float | None, threshold: float, holds: bool | None, reported=False) -> dict:
    """One separation: ``value`` in points (percentage points of training error) against ``threshold``."""
    return {"name": name, "seed": seed, "value": None if value is None else round(value, 4),
            "threshold": threshold, "holds": bool(holds) if value is not None else False,
            **({"reported_only": True} if reported else {})}


def _err(s: dict | None) -> float | None:
    return None if s is None or s.get("final_train_error") is None else 100.0 * s["final_train_error"]


def _combine(checks: list[dict], lines: list[str], seeds: int) -> dict:
    required = [c for c in checks if not c.get("reported_only")]
    holds = bool(required) and all(c["holds"] for c in required)
    per_seed = {}
    for c in required:
        per_seed.setdefault(c["seed"], []).append(c["holds"])
    n_ok = sum(all(v) for v in per_seed.values())
    line = "; ".join(lines)
    if seeds > 1:
        line += f" ({n_ok}/{len(per_seed)} seeds hold)"
    return {"holds": holds, "checks": checks, "line": line, "seeds_holding": n_ok, "seeds": len(per_seed)}


def verdict_fig6(summaries: list[dict]) -> dict:
    """The issue's separations, per seed, in points of final smoothed training error:
    plain-56 above plain-20 by >= 10; ResNet-56 below plain-56 by >= 20; ResNet-20 no worse than
    plain-20 + 1. Fig. 7 is reported, not required: residual nets' layer responses (std of every BN output
    after a 3x3 conv) smaller than plain nets' of the same depth, and the deeper ResNet's smaller."""
    checks, lines = [], []
    groups = _by_seed(summaries)
    for seed, runs in groups.items():
        p20, p56 = _err(_find(runs, arch="plain", depth=20)), _err(_find(runs, arch="plain", depth=56))
        r20, r56 = _err(_find(runs, arch="resnet", depth=20)), _err(_find(runs, arch="resnet", depth=56))
        gap_plain = None if None in (p20, p56) else p56 - p20
        gap_deep = None if None in (p56, r56) else p56 - r56
        gap_20 = None if None in (p20, r20) else r20 - p20
        checks += [
            _check("plain-56 minus plain-20", seed, gap_plain, 10.0, gap_plain is not None and gap_plain >= 10.0),
            _check("plain-56 minus ResNet-56", seed, gap_deep, 20.0, gap_deep is not None and gap_deep >= 20.0),
            _check("ResNet-20 minus plain-20", seed, gap_20, 1.0, gap_20 is not None and gap_20 <= 1.0),
        ]
        # Fig. 7 (He et al. 2015): residual nets respond less than plain nets of the same depth (the main
        # claim), and the deeper ResNet less than the shallower. The mean over layers of the std of every BN
        # output after a 3x3 conv, at the last logged training step (training batches, BN in training mode;
        # the Why it works page's Fig. 7 view measures test images in eval mode, as the paper does).
        resp = {(a, d): (_find(runs, arch=a, depth=d) or {}).get("response_std_mean")
                for a in ("plain", "resnet") for d in (20, 56)}
        for d in (20, 56):
            p_, r_ = resp[("plain", d)], resp[("resnet", d)]
            if p_ is not None and r_ is not None:
                checks.append(_check(f"Fig. 7: plain-{d} minus ResNet-{d} mean layer response std", seed, p_ - r_,
                                     0.0, r_ < p_, reported=True))
        b20, b56 = resp[("resnet", 20)], resp[("resnet", 56)]
        if b20 is None or b56 is None:  # runs recorded before the per-layer record: the per-block branch std
            b20 = (_find(runs, arch="resnet", depth=20) or {}).get("branch_std_mean")
            b56 = (_find(runs, arch="resnet", depth=56) or {}).get("branch_std_mean")
            name = "Fig. 7: ResNet-20 minus ResNet-56 mean branch std"
        else:
            name = "Fig. 7: ResNet-20 minus ResNet-56 mean layer response std"
        if b20 is not None and b56 is not None:
            checks.append(_check(name, seed, b20 - b56, 0.0, b56 < b20, reported=True))
        if gap_plain is None:
            lines.append(f"seed {seed}: runs missing")
            continue
        shown = "degradation shown" if gap_plain >= 10 else "no degradation"
        fixed = (f"ResNet-56 {abs(gap_deep):.0f} points {'below' if gap_deep >= 0 else 'above'} plain-56"
                 if gap_deep is not None else "ResNet-56 missing")
        if len(groups) == 1 or not lines:
            lines.append(f"plain-56 ends {abs(gap_plain):.0f} points {'above' if gap_plain >= 0 else 'below'} "
                         f"plain-20: {shown}; {fixed}" + (f" (seed {seed})" if len(groups) > 1 else ""))
    return _combine(checks, lines, len(groups))


def verdict_options(summaries: list[dict]) -> dict:
    """Table 3's finding: the three shortcut options end close together (projections are not what makes
    residual learning work). Holds when the spread of final training errors is at most 5 points."""
    checks, lines = [], []
    for seed, runs in _by_seed(summaries).items():
        errs = {s: _err(_find(runs, shortcut=s)) for s in ("A", "B", "C")}
        known = [e for e in errs.values() if e is not None]
        spread = max(known) - min(known) if len(known) == 3 else None
        checks.append(_check("spread of options A/B/C", seed, spread, 5.0, spread is not None and spread <= 5.0))
        if not lines:
            lines.append(f"option A ends at {_fmt(errs['A'])}, B at {_fmt(errs['B'])}, C at {_fmt(errs['C'])} "
                         f"training error: " + ("all within 5 points, shortcuts need no projections"
                                                if spread is not None and spread <= 5 else "apart by more than 5 points"))
    return _combine(checks, lines, len(_by_seed(summaries)))


def _fmt(pts: float | None) -> str:
    return "n/a" if pts is None else f"{pts:.1f}%"


def verdict_preact(summaries: list[dict]) -> dict:
    """He et al. 2016: full pre-activation trains at least as well as the original block. Holds when the
    pre-activation net ends no more than 1 point above the post-activation one."""
    checks, lines = [], []
    for seed, runs in _by_seed(summaries).items():
        post, pre = _err(_find(runs, preact=False)), _err(_find(runs, preact=True))
        diff = None if None in (post, pre) else pre - post
        checks.append(_check("pre- minus post-activation", seed, diff, 1.0, diff is not None and diff <= 1.0))
        if not lines and diff is not None:
            lines.append(f"pre-activation ends {abs(diff):.1f} points {'below' if diff <= 0 else 'above'} "
                         f"post-activation ({_fmt(pre)} vs {_fmt(post)})")
    return _combine(checks, lines, len(_by_seed(summaries)))


def verdict_depth_sweep(summaries: list[dict]) -> dict:
    """Degradation against depth: the deepest plain net ends >= 10 points above the shallowest, and the
    deepest ResNet >= 20 points below the deepest plain net."""
    checks, lines = [], []
    for seed, runs in _by_seed(summaries).items():
        plain = sorted((s["depth"], _err(s)) for s in runs if s["arch"] == "plain" and _err(s) is not None)
        res = sorted((s["depth"], _err(s)) for s in runs if s["arch"] == "resnet" and _err(s) is not None)
        rise = plain[-1][1] - plain[0][1] if len(plain) >= 2 else None
        gap = plain[-1][1] - res[-1][1] if plain and res and plain[-1][0] == res[-1][0] else None
        checks += [
            _check(f"plain-{plain[-1][0] if plain else '?'} minus plain-{plain[0][0] if plain else '?'}", seed,
                   rise, 10.0, rise is not None and rise >= 10.0),
            _check("deepest plain minus deepest ResNet", seed, gap, 20.0, gap is not None and gap >= 20.0),
        ]
        if not lines and rise is not None and res:
            lines.append(f"plain error grows with depth from {_fmt(plain[0][1])} to {_fmt(plain[-1][1])} "
                         f"while ResNet stays at or below {_fmt(max(e for _, e in res))}")
    return _combine(checks, lines, len(_by_seed(summaries)))


@dataclass(frozen=True)
class Preset:
    key: str
    title: str
    what_to_look_for: str
    build: Callable[[RunConfig], list[RunConfig]]
    verdict: Callable[[list[dict]], dict]


PRESETS: dict[str, Preset] = {p.key: p for p in (
    Preset("fig6", "Degradation (Fig. 6)",
           "The deeper plain net (plain-56) ends with a higher training error than plain-20: depth hurts "
           "without shortcuts. With shortcuts it does not: ResNet-56 ends far below plain-56.",
           build_fig6, verdict_fig6),
    Preset("options", "Shortcut options A/B/C (Table 3)",
           "All three ResNet-20s train about equally well: identity shortcuts (A) need no projections (B, C).",
           build_options, verdict_options),
    Preset("preact", "Post- vs pre-activation (2016)",
           "Full pre-activation (BN and ReLU before each conv) trains at least as well as the original block.",
           build_preact, verdict_preact),
    Preset("depth-sweep", "Depth sweep: error against depth",
           "Plain nets' final training error rises with depth; residual nets' stays low: the degradation "
           "problem, and its cure, in one chart.",
           build_depth_sweep, verdict_depth_sweep),
)}


def get_preset(key: str) -> Preset:
    if key not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}; got {key!r}")
    return PRESETS[key]


def new_group_id(key: str, scale: str) -> str:
    """A run group's id, stored as every member run's ``RunConfig.group``: preset, scale and start time."""
    return f"{key}/{scale}/{time.strftime('%Y%m%d-%H%M%S')}"


def preset_configs(key: str, scale: str, *, dataset: DataConfig | None = None, seed: int = 0,
                   device: str = "auto", group: str = "") -> list[RunConfig]:
    """The runs of preset ``key`` at ``scale``, all with ``seed`` (hence identical batches) and ``group``."""
    preset = get_preset(key)
    base = preset_base(scale, dataset, device=device, seed=seed)
    return [dataclasses.replace(c, group=group) for c in preset.build(base)]


def verdict(key: str, summaries: list[dict]) -> dict:
    return get_preset(key).verdict(summaries)


# ----------------------------------------------------------------------------------------------------
# Expected duration: resnet_core/costmodel.py, calibrated on the machine at hand
# ----------------------------------------------------------------------------------------------------

def forward_macs(model: ModelConfig, image_size: int) -> int:
    """Multiply-adds of one image's forward pass, from the config (no model is built)."""
    from resnet_core.costmodel import config_macs

    return config_macs(model, image_size)


def longest_first(cfgs: list[RunConfig], device_type: str = "cpu") -> list[int]:
    """Indices of ``cfgs`` in the order to start them when several train at once: the longest first
    (Graham's LPT rule), so the last run to start is a short one and no core idles at the end. For the
    quick Degradation preset on two cores (at 1,300 steps) this was ~155 s instead of ~198 s in the
    preset's own order (plain-20, plain-56, ResNet-20, ResNet-56), where ResNet-56 started last and
    ran alone. The order needs relative costs only: this machine's calibrated step cost when there is
    one, else the work (weight layers and multiply-adds) per step."""
    from resnet_core.costmodel import load_calibration, step_gmacs, weight_layers

    cal = load_calibration(device_type)

    def per_step(c: RunConfig) -> float:
        return cal.step_seconds(c, 1) if cal is not None else weight_layers(c.model) * 1e-3 + step_gmacs(c)

    cost = [per_step(c) * (c.train.steps if c.train.steps is not None else c.train.epochs) for c in cfgs]
    return sorted(range(len(cfgs)), key=lambda i: -cost[i])


def runs_at_once() -> int:
    """How many runs the dashboard trains at once (RESNET_LAB_MAX_RUNS, default 2)."""
    try:
        return max(1, int(os.environ.get("RESNET_LAB_MAX_RUNS", "2")))
    except ValueError:
        return 2


def estimate_seconds(cfgs: list[RunConfig], device: str = "auto", parallel: int | None = None,
                     n_train: int | None = None, n_test: int | None = None,
                     ahead: list[tuple[RunConfig, int]] | None = None) -> float | None:
    """Expected wall time of training ``cfgs``, ``parallel`` at a time (default: as the dashboard does,
    ``runs_at_once()``), on ``device``, behind the runs ``ahead`` (config, steps done), from this
    machine's calibrated step costs (resnet_core/costmodel.py). None while this machine and device
    have not been measured yet: no figure is better than one from another machine."""
    from resnet_core.costmodel import load_calibration, schedule_seconds
    from resnet_core.train import resolve_device

    if not cfgs:
        return 0.0
    try:
        kind = resolve_device(device).type
    except RuntimeError:
        kind = "cpu"
    cal = load_calibration(kind)
    if cal is None:
        return None
    return schedule_seconds(cal, cfgs, parallel or runs_at_once(), ahead=ahead, n_train=n_train, n_test=n_test)
