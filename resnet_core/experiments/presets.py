"""The experiments from the papers, defined once for the dashboard and the CLI (``reproduce``).

A *preset* turns a base config at a scale (scales.py) into the runs of one experiment (same seed,
hence the same batches, and the same ``group`` so the dashboard shows them together) and reads a
verdict from their summaries (verdicts.py). Adding a preset is a builder here and a verdict there.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from resnet_core.config import ConfigError, DataConfig, RunConfig
from resnet_core.experiments.scales import (PAPER_WARMUP_DEPTH, PAPER_WARMUP_STEPS, QUICK_FIG6_STEPS, QUICK_SWEEP_STEPS,
                                            preset_base, scale_of)
from resnet_core.experiments.verdicts import (verdict_depth_sweep, verdict_fig6, verdict_options,
                                              verdict_preact)


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
