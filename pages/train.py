"""Train: set up a plain or residual net, start it (alone, as a twin, or a paper preset), watch it live."""
from __future__ import annotations

import os

import streamlit as st

from dashboard import preset_groups, redraw, state, widgets
from resnet_core.figures import training as charts
from dashboard.worker import QueueFull
from resnet_core.experiments import presets as core_presets
from resnet_core.experiments import scales
from resnet_core.experiments.published import run_reference

st.title("Train plain and residual nets")
st.caption("Set up a network in the sidebar and press **Start**. A residual net adds each block's input x to "
           "what the block computes, F(x); a plain net has no such shortcut. Deep plain nets train worse than "
           "shallow ones (the *degradation* problem); residual nets do not. The charts below show why, live.")

manager = state.get_manager()
store = manager.store
scale, scale_default = widgets.scale_choice()
setup = widgets.run_setup(scale_default)


# --- starting runs ---------------------------------------------------------------------------------
def _show(run_ids: list[str]) -> None:
    # Callbacks run before the script, so the multiselect below can still take its new value.
    st.session_state["shown_runs"] = list(run_ids)


def _start(cfgs, title):
    try:
        _show(manager.start_group(cfgs, title, owner=state.session_owner()))
    except QueueFull as e:
        st.session_state["start_refused"] = str(e)


def _start_preset(key: str) -> None:
    """A paper preset as the core defines it at the chosen scale, on the sidebar's data set, seed and
    device, started as one group (the same definition ``python -m resnet_core reproduce`` runs)."""
    group = core_presets.new_group_id(key, scale)
    _start(_preset_configs(key, group), preset_groups.PRESETS[key].title)


def _preset_configs(key: str, group: str = ""):
    return core_presets.preset_configs(key, scale, dataset=cfg.data, seed=cfg.train.seed, device=cfg.train.device,
                                       group=group)


refused = st.session_state.pop("start_refused", None)
if refused:
    st.warning(f"Not started: {refused}.", icon="⏳")
if setup.errors:
    st.error("Fix the settings marked in the sidebar to start a run: " + "; ".join(setup.errors.values()), icon="🚫")
cfg = setup.config
ahead = manager.ahead()   # estimates count the runs already training or queued
start_wait = manager.start_wait_s()   # and what is left of a training process's start here
c1, c2, c3 = st.columns([1, 1.3, 3])
c1.button("Start", type="primary", key="start", disabled=not setup.ok, on_click=_start,
          args=([cfg], cfg.label if cfg else ""), help="Train the network set up in the sidebar")
c2.button("Start twin (plain + residual)", key="start_twin", disabled=not setup.ok,
          on_click=lambda: _start(preset_groups.twin(cfg), f"twin {cfg.model.depth}"),
          help="The same network as a plain and a residual net, same seed and batches, drawn side by side")
with c3.popover("Experiments from the papers"):
    st.caption(f"Each runs at the **{scale}** scale ({widgets.scale_summary(scales.preset_base(scale))}) "
               "on the sidebar's "
               "data set, seed and device, every run with the same seed and batches, as one group. "
               "`python -m resnet_core reproduce` runs the same definitions from the command line.")
    for key, preset in preset_groups.PRESETS.items():
        runs = _preset_configs(key) if setup.ok else []
        st.button(preset.title, key=f"preset_{key}", disabled=not setup.ok, help=preset.what_to_look_for,
                  on_click=_start_preset, args=(key,))
        if runs:
            st.caption(f"{len(runs)} runs ({', '.join(r.label for r in runs)}), "
                       f"{preset_groups.expected_duration(runs, cfg.train.device, ahead, start_wait, preset=True)}. "
                       f"Look for: {preset.what_to_look_for}")
        else:
            st.caption(f"Look for: {preset.what_to_look_for}")


# While a training process is still starting and nothing trains, the estimate is redrawn each second:
# it is for a click now, and the start it waits for shrinks while the user reads. Not while runs train or
# queue: the live charts' timer then looks every second for a new run's first points, and Streamlit skips
# a timer's tick while another fragment runs, so a second timer of one second could take its ticks.
ticking = bool(start_wait) and not ahead


@st.fragment(run_every=1.0 if ticking else None)
def expected_durations():
    wait = manager.start_wait_s() if ticking else start_wait
    st.caption(f"Expected duration: **Start** ({cfg.label}) "
               f"{preset_groups.expected_duration([cfg], cfg.train.device, ahead, wait)}, "
               f"**Start twin** {preset_groups.expected_duration(preset_groups.twin(cfg), cfg.train.device, ahead, wait)} "
               f"({scale} scale; runs beyond {manager.max_concurrent} at once queue; "
               f"{preset_groups.estimate_basis(cfg.train.device)}).")
    if ticking and not wait:
        st.rerun()   # the process is ready: a full rerun stops this timer


if setup.ok:
    expected_durations()


# --- which runs this page shows -------------------------------------------------------------------
infos = store.list()
by_id = {i.run_id: i for i in infos}
if "shown_runs" not in st.session_state:
    group = manager.last_group()
    if group:
        default = group[1]
    elif infos:  # a fresh server: the newest run and those created with it (a twin or a preset)
        default = [i.run_id for i in infos if infos[0].created - i.created < 5.0]
    else:
        default = []
    st.session_state["shown_runs"] = default
st.session_state["shown_runs"] = [r for r in st.session_state["shown_runs"] if r in by_id]
# Labels without the status: this widget is outside the live fragment, so a status here would go stale.
c1, c2 = st.columns([3, 2])
c1.multiselect("Runs shown", list(by_id), key="shown_runs", format_func=lambda r: f"{by_id[r].label} · {r}",
               placeholder="Start a run, or pick stored runs to look at")
# Outside the fragment on purpose: a new interval needs a full rerun to redefine the fragment's timer.
REFRESH = redraw.redraw_choices(os.cpu_count())
refresh = c2.segmented_control(
    "Redraw every", list(REFRESH), default=next(iter(REFRESH)), key="refresh",
    help="How often the charts below are redrawn while runs train. Each redraw costs CPU, mostly in the "
         "browser: with the browser on the same small machine as training, a 1 s redraw took a third of "
         "the training speed on 2 cores, a 5 s one under a tenth. *auto* picks the shortest interval that "
         "keeps this cost to about 5% of this machine's CPU (or the host's shortest interval, if longer). "
         "Until a new run's first points show, the page looks every second whatever is chosen."
) or next(iter(REFRESH))


def _pair_order(series):
    """Twins side by side: by depth then plain before residual, so plain sits left of its residual twin."""
    return sorted(series, key=lambda s: (s.depth or 0, bool(s.residual), s.label))


def _eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _progress(info, s) -> None:
    live = manager.live(info.run_id)
    total = (live.total_steps if live else None) or s.total_steps or info.summary.get("total_steps")
    step = max(live.step if live else 0, int(s.step[-1]) if len(s) else 0)
    ips = (live.images_per_s if live else None) or (float(s.scalars["images_per_s"][-1]) if len(s) else None)
    batch = (info.config or {}).get("train", {}).get("batch_size", 1)
    status = info.status
    if live and live.state == "stopping":
        status = "stopping"
    elif live and live.paused:
        status = "paused"
    elif live and live.state == "loading" and not step:
        status = "loading data"
    parts = [f"**{info.label}** · {status}"]
    if total:
        parts.append(f"step {step}/{total}")
    if ips:
        parts.append(f"{ips:,.0f} images/s")
        if info.status == "running" and total:
            parts.append(f"ETA {_eta((total - step) * batch / ips)}")
    cols = st.columns([6, 1, 1])
    cols[0].progress(min(1.0, step / total) if total else 0.0, text=" · ".join(parts))
    if manager.is_active(info.run_id):
        if live and live.state != "queued":
            paused = live.paused
            cols[1].button("Resume" if paused else "Pause", key=f"pause_{info.run_id}",
                           on_click=manager.resume if paused else manager.pause, args=(info.run_id,))
        cols[2].button("Stop", key=f"stop_{info.run_id}", on_click=manager.stop, args=(info.run_id,))
    if info.status == "finished":  # the paper's figure beside a CIFAR-10 run of one of its nets
        reference = run_reference(info.config, info.summary)
        if reference:
            st.caption(f"{info.label}: {reference}")
    if info.status == "failed":
        st.error(f"{info.label} failed: {info.error or info.summary.get('message', 'unknown error')}", icon="❌")
    elif info.status == "diverged":
        where = f" at step {s.diverged['step']} (loss {s.diverged['loss']})" if s.diverged else ""
        st.warning(f"{info.label} diverged{where}; its curves up to there are kept. Try a lower learning rate.",
                   icon="💥")
    elif info.status == "interrupted":
        st.warning(f"{info.label} was interrupted: the process training it ended (server restart?). "
                   "Its curves up to there are kept.", icon="⚠️")
    elif info.status == "damaged":
        st.error(f"{info.run_id} cannot be read: {info.error}", icon="🚫")


def _side_by_side(series, draw):
    """One chart per run, two to a row, in twin order."""
    for i in range(0, len(series), 2):
        cols = st.columns(2)
        for col, s in zip(cols, series[i:i + 2]):
            with col:
                draw(s)


def _features(s):
    steps = s.feature_steps
    if not steps:
        st.info(f"{s.label}: no feature maps yet (they are taken every few steps).")
        return
    got = state.read_features(state.runs_dir(), s.run_id, steps[-1])
    if got is None:
        st.info(f"{s.label}: feature maps not readable yet.")
        return
    step, maps = got
    widgets.plot(charts.feature_stage_figure(maps, step, f"({s.label})"), f"fm_{s.run_id}")
    blocks = [k[:-2] for k in maps if k.endswith("/x")]
    if blocks:
        default = next((b for b in blocks if b.startswith("layer2")), blocks[0])
        block = st.selectbox("Block", blocks, index=blocks.index(default), key=f"fmblock_{s.run_id}")
        widgets.plot(charts.feature_block_figure(maps, block, step), f"fmb_{s.run_id}")


def _preset_results(fresh, series, x_axis: str) -> None:
    """For each paper preset among the shown runs: what to look for, its one-line verdict once all
    its runs have ended, and its own chart (Fig. 6, or error against depth for the depth sweep)."""
    shown_groups = preset_groups.groups(fresh)
    if not shown_groups:
        return
    # The whole group from the store, not only the runs shown: the verdict needs every run of it.
    whole = preset_groups.groups(store.list())
    by_id = {s.run_id: s for s in series}
    for group in shown_groups:
        result = preset_groups.group_result(group, whole.get(group, shown_groups[group]))
        if result is None:
            continue
        widgets.preset_verdict(result)
        group_series = [by_id[i.run_id] for i in result.runs if i.run_id in by_id]
        if result.key == "depth-sweep":
            widgets.plot(charts.depth_sweep_figure(result.summaries), f"sweep_{group}")
            st.caption("Each run's training error over its last 10% of steps, once it has ended: the plain line "
                       "rising with depth is the degradation problem; the residual line stays low.")
        if result.key in ("fig6", "depth-sweep") and group_series:
            fig6_smoothing, _ = widgets.curve_controls(f"train_fig6_{group}", widgets.FIG6_SMOOTHING,
                                                       "Fig. 6 smoothing", x_axis=False)
            widgets.plot(charts.fig6_figure(group_series, fig6_smoothing, x_axis), f"fig6_{group}")
            st.caption("Training error (smoothed; faint: raw), dashed plain and solid residual, colour by depth; "
                       "diamonds: test error.")


VIEWS = ["Gradients", "Branch responses", "Feature maps", "Activations"]


def _run_states(infos, series) -> list[tuple[str, int]]:
    """(status, points on the page) of each shown run: what the live panel's timer depends on."""
    return [(i.status, len(s)) for i, s in zip(infos, series)]


def _live_body(shown: list[str]) -> list[tuple[str, int]]:
    """Draws the shown runs; returns their states, read once per rerun for the timer too."""
    fresh = [store.get(r) for r in shown if (store.root / r).is_dir()]
    series = [state.get_series(i) for i in fresh]
    states = _run_states(fresh, series)
    queued = manager.queued()
    if queued:
        st.info(f"{len(queued)} run(s) queued: at most {manager.max_concurrent} train at once on this machine "
                "(set RESNET_LAB_MAX_RUNS to change it); the next starts when one ends.", icon="⏳")
    for info, s in zip(fresh, series):
        _progress(info, s)
    if not series:
        # The two charts a run fills, empty until one is shown. They also have the browser load its chart
        # library now, while the page is read: loaded during the first Start instead, it took a core-second
        # from that run on 2 cores (6.5 s of training against 5.3 s once loaded).
        c1, c2 = st.columns(2)
        with c1:
            widgets.plot(charts.loss_figure([], empty_note="no run shown"), "loss")
        with c2:
            widgets.plot(charts.accuracy_figure([], empty_note="no run shown"), "acc")
        st.caption("Start a run, or pick stored runs above: their loss and accuracy are drawn here as they train.")
        return states
    ordered = _pair_order(series)

    smoothing, x_axis = widgets.curve_controls("train_curves")
    _preset_results(fresh, series, x_axis)
    c1, c2 = st.columns(2)
    with c1:
        widgets.plot(charts.loss_figure(series, smoothing, x_axis), "loss")
        st.caption("Loss should fall. Solid: training batches (smoothed; faint: raw); dashed with dots: "
                   "held-out test images.")
    with c2:
        widgets.plot(charts.accuracy_figure(series, smoothing, x_axis), "acc")
        st.caption("Share of images classified right. A deep plain net climbs slower than its residual twin.")

    view = st.segmented_control("Look inside the networks", VIEWS, default="Gradients", key="view") or "Gradients"
    if view == "Gradients":
        zrange = charts.grad_norm_range(ordered)
        _side_by_side(ordered, lambda s: widgets.plot(charts.grad_norm_heatmap(s, zrange, x_axis), f"gh_{s.run_id}"))
        st.caption("How strongly each layer is being updated (colour, log scale, same scale for all runs). "
                   "In a deep plain net the layers near the input (top rows) go dark: their gradients vanish.")
        widgets.plot(charts.grad_profile_figure(ordered), "gprofile")
        st.caption("The latest step's gradient norm per layer, input on the left. Dashed: plain nets. A plain net's "
                   "curve drops towards the input; a residual net's stays level, because shortcuts carry the gradient.")
    elif view == "Branch responses":
        widgets.plot(charts.branch_std_figure(ordered), "bstd")
        st.caption("How much each block's own computation F(x) outputs (std, Fig. 7 of the paper). Residual blocks "
                   "respond less than plain ones: they only learn a small correction to their input.")
        _side_by_side(ordered, lambda s: widgets.plot(charts.branch_ratio_figure(s, smoothing, x_axis),
                                                      f"br_{s.run_id}"))
        st.caption("‖F(x)‖/‖x‖ for each block over time: below 1, a block nudges its input rather than replacing it.")
    elif view == "Feature maps":
        _side_by_side(ordered, _features)
        st.caption("What the network computes for one fixed test image, refreshed as it trains: the first channels "
                   "after the stem and each stage (grey, each channel scaled on its own), and for one block its "
                   "input x, its branch F(x) and their sum on one colour scale: a faint F(x) is a small correction.")
    else:
        c1, c2 = st.columns(2)
        with c1:
            widgets.plot(charts.activation_figure(ordered, "act_std", smoothing, x_axis), "actstd")
            st.caption("Spread of activations at each stage's output (solid stage 1, dashed 2, dotted 3): "
                       "exploding or collapsing values mean the signal is not passing through the depth.")
        with c2:
            widgets.plot(charts.dead_relu_figure(ordered, smoothing, x_axis), "dead")
            st.caption("Channels whose ReLU outputs zero for every image of the batch. They no longer learn; "
                       "a rising share is a sign of a too high learning rate or a bad initialisation.")
    return states


def _period(states: list[tuple[str, int]]) -> float | None:
    return redraw.live_period(manager.busy(), states, REFRESH.get(refresh, 1.0))


def _read_states(shown: list[str]) -> list[tuple[str, int]]:
    infos = [store.get(r) for r in shown if (store.root / r).is_dir()]
    return _run_states(infos, [state.get_series(i) for i in infos])


shown = list(st.session_state["shown_runs"])
shown_states = _read_states(shown)   # read once: the timers below depend on the same moment
period = _period(shown_states)


@st.fragment(run_every=period)
def live_panel():
    try:
        states = _live_body(shown)
    except Exception as e:  # noqa: BLE001 - a run's odd data must not put a traceback on the page
        st.error(f"Could not draw the runs ({type(e).__name__}: {e}); the runs themselves are unaffected.", icon="⚠️")
        states = _read_states(shown)
    if _period(states) != period:
        st.rerun()  # a full rerun redefines this fragment with the new timer, or none when idle


live_panel()


def _statuses(runs: list[str]) -> tuple[str, ...]:
    return tuple(store.get(r).status for r in runs if (store.root / r).is_dir())


if period is not None and period > 1.0:
    # The statuses the period was chosen from, not read anew: a run that went from queued to running while
    # this script drew the charts must still rerun the page (to look every second for its first points).
    watched = tuple(status for status, _ in shown_states)

    @st.fragment(run_every=1.0)
    def end_watch():
        # The charts redraw every few seconds (5 s on 2 cores: a redraw costs CPU the runs need), but a
        # run that starts, ends or fails shows within a second: reading the shown runs' status files
        # costs next to nothing, and only a change reruns the page.
        if _statuses(shown) != watched:
            st.rerun()

    end_watch()
