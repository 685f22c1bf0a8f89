"""The sidebar that sets up a run. Every value is checked by the core's config dataclasses and an
invalid one is reported right under its section, with Start disabled, instead of failing later."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
import torch

from resnet_core.config import INITS, SCHEDULES, ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig, valid_depths
from resnet_core.runs import ACTIVE

MAX_MENU_DEPTH = 218   # deeper nets exist (up to 1202) but train at a few images per second on a CPU
CIFAR_DIRNAME = "cifar-10-batches-py"


@dataclass
class Setup:
    config: RunConfig | None
    errors: dict[str, str] = field(default_factory=dict)   # section -> message

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors


def cifar_root() -> str | None:
    """The directory holding cifar-10-batches-py, when CIFAR-10 is on this machine."""
    for root in (os.environ.get("RESNET_LAB_DATA"), "data", "."):
        if root and (Path(root) / CIFAR_DIRNAME).is_dir():
            return root
    return None


def available_devices() -> tuple[list[str], str]:
    """Device choices and what ``auto`` resolves to here."""
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        found = f"cuda ({torch.cuda.get_device_name(0)})"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
        found = "mps (Apple GPU)"
    else:
        found = f"cpu ({os.cpu_count()} cores)"
    return devices, found


def _build(section: str, errors: dict, make):
    try:
        return make()
    except ConfigError as e:
        errors[section] = str(e)
        st.error(str(e), icon="🚫")
        return None


def run_setup() -> Setup:
    """Draws the sidebar and returns the configuration it describes (or the errors)."""
    sb = st.sidebar
    errors: dict[str, str] = {}
    with sb:
        st.header("Network")
        kind = st.radio("Kind", ["Residual", "Plain"], horizontal=True, key="model_kind",
                        help="A plain net is the same net without the shortcut additions.")
        residual = kind == "Residual"
        block = st.radio("Block", ["basic", "bottleneck"], horizontal=True, key="block",
                         help="basic: two 3x3 convs (depth 6n+2); bottleneck: 1x1-3x3-1x1 (depth 9n+2)")
        depths = valid_depths(block, MAX_MENU_DEPTH)
        # One widget per block type: the valid depths differ, and a kept value must stay valid.
        depth = st.selectbox("Depth (weight layers)", depths, index=depths.index(20) if 20 in depths else 1,
                             key=f"depth_{block}",
                             help="Only depths the architecture allows: 6n+2 for basic, 9n+2 for bottleneck blocks.")
        shortcut = st.radio("Shortcut", ["A", "B", "C"], horizontal=True, key="shortcut", disabled=not residual,
                            help="A: identity, zero-padded where channels grow; B: projection where the shape "
                                 "changes; C: projections everywhere")
        preact = st.toggle("Pre-activation (BN-ReLU-conv, 2016)", key="preact")
        batchnorm = st.toggle("BatchNorm", value=True, key="batchnorm")
        width = st.number_input("Width multiplier", min_value=1, max_value=16, value=1, step=1, key="width",
                                help="Stage widths 16/32/64 times this")
        init = st.selectbox("Initialisation", INITS, key="init",
                            help="kaiming: He et al. 2015 (the paper's); xavier; normal: N(0, 0.02)")
        zero_init = st.toggle("Zero-init last BN of each branch", key="zero_init_last",
                              help="Each residual block starts as the identity (Goyal et al. 2017)")
        model = _build("model", errors, lambda: ModelConfig(
            depth=int(depth), residual=residual, shortcut=shortcut, block=block, preact=preact,
            batchnorm=batchnorm, width=int(width), init=init, zero_init_last=zero_init))

        st.header("Data")
        cifar = cifar_root()
        names = {"synthetic": "Shapes (embedded, 10 classes)", "folder": "Image folder"}
        if cifar:
            names = {"synthetic": names["synthetic"], "cifar10": f"CIFAR-10 ({cifar})", "folder": names["folder"]}
        data_name = st.selectbox("Data set", list(names), format_func=names.get, key="data_name",
                                 help="CIFAR-10 is listed when data/cifar-10-batches-py exists")
        data_kwargs: dict = {"name": data_name}
        if data_name == "synthetic":
            data_kwargs["n_train"] = int(st.number_input("Training images", 10, 100_000, 10_000, 1000, key="n_train"))
            data_kwargs["n_test"] = int(st.number_input("Test images", 10, 20_000, 2000, 500, key="n_test"))
        elif data_name == "cifar10":
            data_kwargs.update(path=cifar, download=False)
        else:
            path = st.text_input("Folder (one sub-folder per class)", key="data_path").strip()
            data_kwargs["path"] = path or None
        data_kwargs["augment"] = st.toggle("Augment (pad 4, crop, flip)", value=True, key="augment")
        data = _build("data", errors, lambda: DataConfig(**data_kwargs))
        if data is not None and data.name == "folder" and not Path(data.path).is_dir():
            errors["data"] = f"no folder {data.path!r} on the server"
            st.error(errors["data"], icon="🚫")

        st.header("Training")
        unit = st.radio("Length in", ["steps", "epochs"], horizontal=True, key="length_unit")
        if unit == "steps":
            steps, epochs = int(st.number_input("Steps", 1, 10_000_000, 300, 50, key="steps")), None
        else:
            steps, epochs = None, float(st.number_input("Epochs", 0.0, 10_000.0, 2.0, 0.5, key="epochs"))
        batch = st.select_slider("Batch size", [16, 32, 64, 128, 256, 512], value=128, key="batch_size")
        lr = st.number_input("Learning rate", 0.0, 100.0, 0.1, 0.01, format="%.4f", key="lr",
                             help="SGD with momentum 0.9; the paper uses 0.1 at batch 128")
        schedule = st.selectbox("Schedule", SCHEDULES, key="schedule",
                                help="step: divide by 10 at 50% and 75% of the run (the paper's)")
        seed = int(st.number_input("Seed", 0, 2**31 - 1, 0, 1, key="seed",
                                   help="Same seed, same batches: twins and presets compare like with like"))
        with st.expander("Probes and evaluation"):
            eval_every = int(st.number_input("Evaluate every (steps)", 0, 100_000, 50, 10, key="eval_every"))
            features_every = int(st.number_input("Feature maps every (steps)", 0, 100_000, 25, 5, key="features_every"))
        devices, found = available_devices()
        device = st.selectbox("Device", devices, key="device", help="auto picks a GPU when there is one")
        st.caption(f"auto → {found}")
        train = _build("train", errors, lambda: TrainConfig(
            steps=steps, epochs=epochs, batch_size=int(batch), lr=float(lr), schedule=schedule, seed=seed,
            device=device, eval_every=eval_every, feature_maps_every=features_every))

    if errors or model is None or data is None or train is None:
        return Setup(None, errors)
    try:
        return Setup(RunConfig(model=model, data=data, train=train))
    except ConfigError as e:   # cross-field checks, if the core adds any
        return Setup(None, {"run": str(e)})


def plot(fig, key: str) -> None:
    """A Plotly chart at full width. ``theme=None`` keeps the figure's own template: Streamlit's theme
    is otherwise re-applied in the browser on every redraw (in one measurement of the live Train page,
    0.32 -> 0.24 browser cores at a 1 s redraw)."""
    st.plotly_chart(fig, width="stretch", key=key, theme=None, config={"displaylogo": False})


# What one redraw of the Train page's live charts costs, in CPU seconds, browser and server together,
# with the browser on the machine that trains. On a 2-core CPU bench/redraw_floor.py measures 0.37
# for a page of 4 Plotly charts with nothing training, and the browser alone used 0.33-0.40 cores
# during bench/dashboard_overhead.py's 1 s runs (README, "Benchmarks").
REDRAW_CPU_S = 0.4
REDRAW_BUDGET = 0.05          # of the machine's CPU; training slows by about twice that (its threads sync)
REDRAW_CHOICES = (1.0, 2.0, 5.0)


def auto_redraw_seconds(cpu_count: int | None) -> float:
    """The shortest redraw interval whose cost stays within REDRAW_BUDGET of the CPU: 1 s from 8
    cores up, 2 s on 4, 5 s on 2, where a 1 s redraw took a third of the training speed."""
    cores = max(1, cpu_count or 1)
    for every in REDRAW_CHOICES:
        if REDRAW_CPU_S / every <= REDRAW_BUDGET * cores:
            return every
    return REDRAW_CHOICES[-1]


def live_period(busy: bool, runs: list[tuple[str, int]], chosen: float) -> float | None:
    """The live panel's timer, from whether the manager has work and the shown runs' (status, points):
    none when nothing is active (no polling when idle); 1 s while a shown run trains but has no point
    yet, so a Start answers fast; else the chosen interval."""
    if not (busy or any(status in ACTIVE for status, _ in runs)):
        return None
    if any(status == "running" and not points for status, points in runs):
        return 1.0
    return chosen
