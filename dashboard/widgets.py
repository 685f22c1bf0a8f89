"""The sidebar that sets up a run. Every value is checked by the core's config dataclasses and an
invalid one is reported right under its section, with Start disabled, instead of failing later."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
import torch

from resnet_core.experiments import scales
from resnet_core import memory
from resnet_core.config import (INITS, MAX_CLASSES, SCHEDULES, ConfigError, DataConfig, ModelConfig, RunConfig,
                                TrainConfig, valid_depths)
from resnet_core.data import DataError
from resnet_core.data import folder_classes as core_folder_classes
from resnet_core.files import OutsideRoots, browser_path, data_roots
from resnet_core.training.runs import ACTIVE

from dashboard import downloads

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


WIDTHS = (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16)   # stage widths 16/32/64 x this
IMAGE_SIDES = (8, 12, 16, 24, 32, 48, 64)                    # input side in pixels (32: CIFAR's)
BATCH_SIZES = (16, 32, 64, 128, 256, 512)


def widget_values(cfg: RunConfig) -> dict:
    """The sidebar's widget values (by key) that describe ``cfg``: what choosing a scale writes into
    the sidebar. Values a menu lacks are left out, so the widget keeps what it shows."""
    m, d, t = cfg.model, cfg.data, cfg.train
    values = {"model_kind": "Residual" if m.residual else "Plain", "block": m.block, f"depth_{m.block}": m.depth,
              "shortcut": m.shortcut, "preact": m.preact, "batchnorm": m.batchnorm, "init": m.init,
              "zero_init_last": m.zero_init_last, "data_name": d.name, "augment": d.augment,
              "large_objects": d.large_objects,
              "image_size": d.image_size, "n_train": d.n_train, "n_test": d.n_test,
              "length_unit": "steps" if t.steps is not None else "epochs", "lr": float(t.lr),
              "schedule": t.schedule, "warmup_steps": t.warmup_steps, "seed": t.seed,
              "eval_every": t.eval_every, "features_every": t.feature_maps_every, "log_every": t.log_every,
              "eval_batches": t.eval_batches}
    if t.steps is not None:
        values["steps"] = t.steps
    else:
        values["epochs"] = float(t.epochs)
    if m.width in WIDTHS:
        values["width"] = m.width
    if t.batch_size in BATCH_SIZES:
        values["batch_size"] = t.batch_size
    if d.name == "folder":
        values["data_path"] = d.path or ""
    return values


def scale_summary(cfg: RunConfig) -> str:
    """What a scale's default run is, in its own numbers: "16x16 inputs, widths 8/16/32, batch 32, 1,200 steps"."""
    t = cfg.train
    length = f"{t.steps:,} steps" if t.steps is not None else f"{t.epochs:g} epochs"
    return (f"{cfg.data.image_size}x{cfg.data.image_size} inputs, widths {'/'.join(map(str, cfg.model.stage_widths))}, "
            f"batch {t.batch_size}, {length}" + (", large objects" if cfg.data.large_objects else "")
            + ("" if cfg.data.augment else ", no augmentation"))


def _sidebar_data() -> DataConfig | None:
    """The data set the sidebar shows, for a new scale's defaults; None: the scale's own default set."""
    name = st.session_state.get("data_name", "synthetic")
    try:
        if name == "cifar10" and cifar_root():
            return DataConfig(name="cifar10", path=cifar_root(), download=False)
        if name == "folder" and st.session_state.get("data_path"):
            return DataConfig(name="folder", path=st.session_state["data_path"].strip())
    except ConfigError:
        pass
    return None


def _scale_config(scale: str) -> RunConfig:
    return scales.scale_config(scale, _sidebar_data(), device=st.session_state.get("device", "auto"),
                                     seed=int(st.session_state.get("seed", 0)))


def _apply_scale() -> None:
    """The Scale radio's callback (runs before the script): the sidebar takes the scale's defaults.
    (Streamlit logs once per process that these widgets also have defaults: the defaults are the
    same scale's, for a widget shown again after it was hidden.)"""
    for key, value in widget_values(_scale_config(st.session_state["scale"])).items():
        st.session_state[key] = value


def scale_choice() -> tuple[str, RunConfig]:
    """The Scale radio at the top of the sidebar: (scale, its default run). Defaults to the core's
    ``default_scale`` of the chosen device (quick on a CPU, paper on a CUDA GPU) and says why."""
    device = st.session_state.get("device", "auto")
    picked = scales.default_scale(device)
    _, found = available_devices()
    choices = list(scales.SCALES)
    with st.sidebar:
        scale = st.radio("Scale", choices, index=choices.index(picked), horizontal=True, key="scale",
                         on_change=_apply_scale,
                         help="quick: sized so the papers' findings show on a laptop CPU in minutes; paper: the "
                              "paper's setting (CIFAR-10 when present, full width, batch 128, 64k steps), for a "
                              "GPU. Choosing one sets the defaults below; every setting stays editable.")
        base = _scale_config(scale)
        why = (f"a CUDA GPU is here ({found})" if picked == "paper" else f"no CUDA GPU here, {found}")
        lead = (f"**{picked}** picked: {why}." if scale == picked
                else f"**{scale}** chosen ({picked} is the default: {why}).")
        st.caption(f"{lead} Default run: {scale_summary(base)}; paper presets: "
                   f"{scale_summary(scales.preset_base(scale))}.")
    return scale, base


def _index(options, value, fallback: int = 0) -> int:
    return list(options).index(value) if value in options else fallback


def run_setup(base: RunConfig | None = None) -> Setup:
    """Draws the sidebar and returns the configuration it describes (or the errors). ``base`` gives
    the defaults a widget shows until it is changed (the chosen scale's default run)."""
    base = base or RunConfig()
    errors: dict[str, str] = {}
    with st.sidebar:
        model = network_section(base.model, errors)
        data, folder_classes = data_section(base.data, errors)
        train = training_section(base.train, errors)
    if errors or model is None or data is None or train is None:
        return Setup(None, errors)
    try:
        if folder_classes is not None:  # the model takes the folder's number of classes, as the CLI does
            model = dataclasses.replace(model, num_classes=len(folder_classes))
        cfg = RunConfig(model=model, data=data, train=train)
        memory.check_training(cfg)   # from the config alone: nothing is built or allocated
        return Setup(cfg)
    except ConfigError as e:   # cross-field checks and the memory budget
        with st.sidebar:
            st.error(str(e), icon="🚫")
        return Setup(None, {"run": str(e)})


def network_section(bm: ModelConfig, errors: dict) -> ModelConfig | None:
    """The sidebar's Network section: the model it describes, or None with its error in ``errors``."""
    st.header("Network")
    kind = st.radio("Kind", ["Residual", "Plain"], index=0 if bm.residual else 1, horizontal=True,
                    key="model_kind", help="A plain net is the same net without the shortcut additions.")
    residual = kind == "Residual"
    block = st.radio("Block", ["basic", "bottleneck"], index=_index(("basic", "bottleneck"), bm.block),
                     horizontal=True, key="block",
                     help="basic: two 3x3 convs (depth 6n+2); bottleneck: 1x1-3x3-1x1 (depth 9n+2)")
    depths = valid_depths(block, MAX_MENU_DEPTH)
    # One widget per block type: the valid depths differ, and a kept value must stay valid.
    depth = st.selectbox("Depth (weight layers)", depths,
                         index=_index(depths, bm.depth, depths.index(20) if 20 in depths else 1),
                         key=f"depth_{block}",
                         help="Only depths the architecture allows: 6n+2 for basic, 9n+2 for bottleneck blocks.")
    shortcut = st.radio("Shortcut", ["A", "B", "C"], index=_index("ABC", bm.shortcut), horizontal=True,
                        key="shortcut", disabled=not residual,
                        help="A: identity, zero-padded where channels grow; B: projection where the shape "
                             "changes; C: projections everywhere")
    preact = st.toggle("Pre-activation (BN-ReLU-conv, 2016)", value=bm.preact, key="preact")
    batchnorm = st.toggle("BatchNorm", value=bm.batchnorm, key="batchnorm")
    width = st.select_slider("Width multiplier", WIDTHS, value=bm.width if bm.width in WIDTHS else 1, key="width",
                             format_func=lambda w: f"{w:g}",
                             help="Stage widths 16/32/64 times this: 0.5 gives 8/16/32 channels, about 4x "
                                  "fewer multiply-adds than 1")
    init = st.selectbox("Initialisation", INITS, index=_index(INITS, bm.init), key="init",
                        help="kaiming: He et al. 2015 (the paper's); xavier; normal: N(0, 0.02)")
    zero_init = st.toggle("Zero-init last BN of each branch", value=bm.zero_init_last,
                          key="zero_init_last",
                          help="Each residual block starts as the identity (Goyal et al. 2017)")
    return _build("model", errors, lambda: dataclasses.replace(
        bm, depth=int(depth), residual=residual, shortcut=shortcut, block=block, preact=preact,
        batchnorm=batchnorm, width=width, init=init, zero_init_last=zero_init))


def data_section(bd: DataConfig, errors: dict) -> tuple[DataConfig | None, list[str] | None]:
    """The sidebar's Data section: (the data set it describes or None, a folder's class names or None);
    problems go to ``errors``."""
    st.header("Data")
    cifar = cifar_root()
    names = {"synthetic": "Shapes (embedded, 10 classes)",
             "cifar10": f"CIFAR-10 ({cifar})" if cifar else "CIFAR-10 (not downloaded yet)",
             "folder": "Image folder"}
    data_name = st.selectbox("Data set", list(names), index=_index(list(names), bd.name), format_func=names.get,
                             key="data_name", help="CIFAR-10 is read from data/cifar-10-batches-py (or "
                             "$RESNET_LAB_DATA); when it is not there, a Download button fetches it")
    # Fields the sidebar does not show (e.g. the synthetic set's seed) keep the base config's values.
    data_kwargs: dict = {"name": data_name, "path": None}
    if data_name == "synthetic":
        data_kwargs["n_train"] = int(st.number_input("Training images", 10, 100_000, bd.n_train, 1000,
                                                     key="n_train"))
        data_kwargs["n_test"] = int(st.number_input("Test images", 10, 20_000, bd.n_test, 500, key="n_test"))
        data_kwargs["large_objects"] = st.toggle(
            "Large objects", value=bd.large_objects, key="large_objects",
            help="Shapes of radius 0.75-0.95 of the half-width instead of 0.55-0.8: at 16x16 a shape keeps "
                 "6-8 pixels of radius, and deep nets leave the initial plateau sooner (the quick presets' set)")
    elif data_name == "cifar10":
        data_kwargs.update(path=cifar or str(downloads.cifar_download_root()), download=False)
        if not cifar:
            errors["data"] = "CIFAR-10 is not on this machine yet: download it below"
            downloads.cifar_download("data_cifar_download")
    else:
        path = st.text_input("Folder (one sub-folder per class)", key="data_path").strip()
        data_kwargs["path"] = path or None
    if data_name != "synthetic":  # a shapes-only option: keep it out of other sets' configs
        data_kwargs["large_objects"] = False
    data_kwargs["image_size"] = st.select_slider(
        "Input size (pixels)", IMAGE_SIDES, value=bd.image_size if bd.image_size in IMAGE_SIDES else 32,
        key="image_size", format_func=lambda p: f"{p}x{p}",
        help="Images are resized to this side. 32 is CIFAR's; 16 makes every step about 4x cheaper "
             "(the quick scale's choice on a CPU)")
    data_kwargs["augment"] = st.toggle("Augment (pad 4, crop, flip)", value=bd.augment, key="augment")
    data = _build("data", errors, lambda: dataclasses.replace(bd, **data_kwargs))
    folder_classes = None
    if data is not None and data.name == "folder":
        folder_classes, problem = check_folder(data.path)
        if problem:
            errors["data"] = problem
            st.error(problem, icon="🚫")
        else:
            st.caption(f"{len(folder_classes)} classes: {', '.join(folder_classes[:10])}"
                       + (" ..." if len(folder_classes) > 10 else ""))
    return data, folder_classes


def training_section(bt: TrainConfig, errors: dict) -> TrainConfig | None:
    """The sidebar's Training section (length, optimiser, seed, probes, device): the training settings it
    describes, or None with its error in ``errors``."""
    st.header("Training")
    unit = st.radio("Length in", ["steps", "epochs"], index=0 if bt.steps is not None else 1,
                    horizontal=True, key="length_unit")
    if unit == "steps":
        steps = int(st.number_input("Steps", 1, 10_000_000, bt.steps or 300, 50, key="steps"))
        epochs = None
    else:
        steps, epochs = None, float(st.number_input("Epochs", 0.0, 10_000.0, float(bt.epochs or 2.0), 0.5,
                                                    key="epochs"))
    batch = st.select_slider("Batch size", BATCH_SIZES,
                             value=bt.batch_size if bt.batch_size in BATCH_SIZES else 128, key="batch_size")
    lr = st.number_input("Learning rate", 0.0, 100.0, float(bt.lr), 0.01, format="%.4f", key="lr",
                         help="SGD with momentum 0.9; the paper uses 0.1 at batch 128")
    schedule = st.selectbox("Schedule", SCHEDULES, index=_index(SCHEDULES, bt.schedule), key="schedule",
                            help="step: divide by 10 at 50% and 75% of the run (the paper's)")
    warmup = int(st.number_input("Warm-up steps", 0, 1_000_000, bt.warmup_steps, 10, key="warmup_steps",
                                 help="Linear warm-up of the learning rate from a tenth of it over these "
                                      "first steps: deep nets start more reliably"))
    seed = int(st.number_input("Seed", 0, 2**31 - 1, bt.seed, 1, key="seed",
                               help="Same seed, same batches: twins and presets compare like with like"))
    with st.expander("Probes and evaluation"):
        eval_every = int(st.number_input("Evaluate every (steps)", 0, 100_000, bt.eval_every, 10,
                                         key="eval_every"))
        features_every = int(st.number_input("Feature maps every (steps)", 0, 100_000, bt.feature_maps_every, 5,
                                             key="features_every"))
        log_every = int(st.number_input(
            "Record probes every (steps)", 1, 10_000, bt.log_every, 1, key="log_every",
            help="Loss, accuracy, gradient norms and branch statistics are recorded on these steps; the "
                 "quick scale records every 5th, so the probes cost little next to a small step"))
        eval_batches = int(st.number_input(
            "Test batches per evaluation", 1, 1_000, bt.eval_batches, 1, key="eval_batches",
            help="Periodic evaluations use this many test batches; the final one uses the whole test set"))
    devices, found = available_devices()
    device = st.selectbox("Device", devices, key="device", help="auto picks a GPU when there is one")
    st.caption(f"auto → {found}")
    return _build("train", errors, lambda: dataclasses.replace(
        bt, steps=steps, epochs=epochs, batch_size=int(batch), lr=float(lr), schedule=schedule,
        warmup_steps=warmup, seed=seed, device=device, eval_every=eval_every, feature_maps_every=features_every,
        log_every=log_every, eval_batches=eval_batches))


def check_folder(text: str) -> tuple[list[str] | None, str]:
    """(class names, "") for a folder path typed in the browser, or (None, the one line to show). A path
    outside the server's data roots gets the same line whether or not it exists."""
    try:
        path = browser_path(text, data_roots(), "folder")
        if not path.is_dir():
            return None, (f"no folder {text!r} under the data folders: give a folder inside "
                          f"{', '.join(str(r) for r in data_roots())}")
        classes = core_folder_classes(path)
    except OutsideRoots as e:
        return None, str(e)
    except (OSError, DataError) as e:
        return None, f"cannot read the folder {text!r}: {getattr(e, 'strerror', None) or e}"
    if len(classes) < 2:
        return None, (f"the folder {text!r} has {len(classes)} class folder(s) with images; a data set needs at "
                      "least two: ROOT/CLASS_NAME/IMAGE")
    if len(classes) > MAX_CLASSES:
        return None, f"the folder {text!r} has {len(classes):,} class folders; at most {MAX_CLASSES:,}"
    return classes, ""


X_AXIS_NAMES = {"step": "step", "epoch": "epoch", "time": "wall time"}
TENSORBOARD_SMOOTHING = 0.6   # TensorBoard's default slider position
FIG6_SMOOTHING = 0.9          # per-batch training error moves ±5 points; 0.9 (about 19 steps) shows the gap
SMOOTHING_HELP = ("Exponential moving average of each training curve, as in TensorBoard (debiased, so the first "
                  "points are not pulled towards zero): 0 draws the raw per-batch values, 0.99 is very smooth. "
                  "The raw curve stays faint behind the smoothed one. Test points are never smoothed.")


def curve_controls(key: str, default_smoothing: float = TENSORBOARD_SMOOTHING, label: str = "Smoothing",
                   x_axis: bool = True) -> tuple[float, str]:
    """A smoothing slider and (unless ``x_axis`` is False) an x-axis choice for curves over training
    time: (weight, axis)."""
    if not x_axis:
        return float(st.slider(label, 0.0, 0.99, default_smoothing, 0.01, key=f"{key}_smoothing",
                               help=SMOOTHING_HELP)), "step"
    c1, c2 = st.columns([3, 2])
    smoothing = c1.slider(label, 0.0, 0.99, default_smoothing, 0.01, key=f"{key}_smoothing", help=SMOOTHING_HELP)
    axis = c2.segmented_control("x-axis", list(X_AXIS_NAMES), format_func=X_AXIS_NAMES.get, default="step",
                                key=f"{key}_x_axis",
                                help="Optimizer steps, epochs (passes over the training set) or seconds since "
                                     "the run started: runs of different batch sizes or speeds compare "
                                     "differently on each.") or "step"
    return float(smoothing), axis


def preset_verdict(result) -> None:
    """A preset group's heading, what to look for and its verdict (``dashboard.preset_groups.GroupResult``);
    until all its runs have ended, how many have."""
    st.subheader(result.title)
    st.caption(f"Look for: {result.what_to_look_for}")
    if result.verdict is not None:
        line = f"**Verdict:** {result.verdict['line']}"
        if result.verdict["holds"]:
            st.success(line, icon=":material/check_circle:")
        else:
            st.warning(line, icon=":material/error:")
    else:
        ended = sum(i.status not in ACTIVE for i in result.runs)
        st.info(f"The verdict appears when all {len(result.runs)} runs have ended ({ended} so far).",
                icon=":material/hourglass_top:")


def plot(fig, key: str) -> None:
    """A Plotly chart at full width. ``theme=None`` keeps the figure's own template: Streamlit's theme
    is otherwise re-applied in the browser on every redraw (in one measurement of the live Train page,
    0.32 -> 0.24 browser cores at a 1 s redraw)."""
    st.plotly_chart(fig, width="stretch", key=key, theme=None, config={"displaylogo": False})
