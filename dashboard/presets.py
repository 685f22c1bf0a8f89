"""One-click experiments from the papers, as lists of RunConfigs built from the user's settings.

The data and training settings (steps, batch, learning rate, seed, device) come from the sidebar; a
preset only varies the architecture, and every run of a preset shares the seed, hence the batches
(the core's BatchLoader draws its order from its own seeded generator).
"""
from __future__ import annotations

import dataclasses

from resnet_core.config import ModelConfig, RunConfig


def _with_model(base: RunConfig, **model_changes) -> RunConfig:
    model = dataclasses.replace(base.model, **model_changes)
    return dataclasses.replace(base, model=model, name="")


def twin(base: RunConfig) -> list[RunConfig]:
    """The same configuration as a plain net and as a residual net: plain first, drawn on the left."""
    return [_with_model(base, residual=False), _with_model(base, residual=True)]


def degradation(base: RunConfig) -> list[RunConfig]:
    """He et al. 2015, Fig. 6 (left vs right): plain-20, plain-56, ResNet-20, ResNet-56. The deeper
    plain net trains worse than the shallower one; the deeper ResNet trains better."""
    return [_with_model(base, block="basic", depth=d, residual=r)
            for r in (False, True) for d in (20, 56)]


def shortcut_options(base: RunConfig) -> list[RunConfig]:
    """He et al. 2015, Table 3: option A (zero-padding identity), B (projections where the shape
    changes), C (all projections), on ResNet-20."""
    return [_with_model(base, residual=True, block="basic", depth=20, shortcut=s) for s in ("A", "B", "C")]


def pre_vs_post_activation(base: RunConfig) -> list[RunConfig]:
    """He et al. 2016 ("Identity mappings"): the original post-activation block vs full pre-activation,
    at the sidebar's depth."""
    return [_with_model(base, residual=True, preact=p) for p in (False, True)]


PRESETS = {
    "Degradation": (degradation, "plain-20, plain-56, ResNet-20, ResNet-56 (the paper's Fig. 6)"),
    "Shortcut options A/B/C": (shortcut_options, "ResNet-20 with shortcut option A, B and C (Table 3)"),
    "Post- vs pre-activation": (pre_vs_post_activation, "the original block vs full pre-activation (2016 paper)"),
}

# Defaults that give a first point within about two seconds on a 2-core CPU and a readable run in
# a few minutes: ResNet-20 on the embedded shapes, 300 steps of 128 images.
DEFAULT_MODEL = ModelConfig()
